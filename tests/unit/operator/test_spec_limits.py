"""spec.limits: parsed into runnerq's Limits, every problem reported with its field path."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from runnerq_operator.redis_queues import limits_json
from runnerq_operator.spec import SpecError, parse_limits, parse_spec

from runnerq.limits import KeyLimit, Limits, Rate, TypeLimit
from tests.unit.operator.test_crd import apply_defaults, version


def minimal(**extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "redis": {"url": "redis://redis.default:6379/0"},
        "worker": {"image": "registry.example/app:1", "app": "myapp.tasks:engine"},
    }
    spec.update(extra)
    return spec


FULL = {
    "rate": {"limit": 50, "periodSeconds": 1, "burst": 10},
    "concurrency": 20,
    "types": {"email": {"rate": {"limit": 10, "periodSeconds": 60}}, "pdf": {"concurrency": 2}},
    "keys": {"concurrency": 1, "rate": {"limit": 5}},
}


def test_every_part_becomes_runnerqs_limits() -> None:
    spec = parse_spec(minimal(limits=FULL), "q")
    assert spec.queue_config.limits == Limits(
        rate=Rate(50, 1.0, burst=10),
        concurrency=20,
        types={"email": TypeLimit(rate=Rate(10, 60.0)), "pdf": TypeLimit(concurrency=2)},
        keys=KeyLimit(rate=Rate(5, 1.0), concurrency=1),
    )


def test_absent_or_empty_limits_are_none_and_written_as_no_field() -> None:
    assert parse_spec(minimal(), "q").queue_config.limits is None
    assert parse_spec(minimal(limits={}), "q").queue_config.limits is None
    assert limits_json(None) is None
    assert limits_json(Limits()) is None
    limits = parse_limits({"concurrency": 3})
    assert limits_json(limits) == '{"concurrency":3}'


@pytest.mark.parametrize(
    ("limits", "problem"),
    [
        ({"rate": {"limit": -1}}, "spec.limits.rate.limit must be >= 1, not -1"),
        ({"rate": {"limit": 5, "periodSeconds": 0}}, "spec.limits.rate.periodSeconds must be >= 1"),
        ({"rate": {"periodSeconds": 2}}, "spec.limits.rate.limit is required"),
        ({"rate": {"limit": 5, "burst": 0}}, "spec.limits.rate.burst must be >= 1, not 0"),
        ({"concurrency": 0}, "spec.limits.concurrency must be >= 1, not 0"),
        ({"concurrency": "5"}, "spec.limits.concurrency must be an integer"),
        ({"ceiling": 5}, "spec.limits.ceiling is not a field"),
        ({"rate": {"limit": 5, "period": 2}}, "spec.limits.rate.period is not a field"),
        ({"types": {"a.b": {"concurrency": -2}}}, "spec.limits.types['a.b'].concurrency must"),
        ({"types": {"a": {"rate": {"limit": 0}}}}, "spec.limits.types['a'].rate.limit must be"),
        ({"types": {"a": 3}}, "spec.limits.types['a'] must be an object"),
        ({"keys": {"rate": {"limit": 1, "periodSeconds": -5}}}, "spec.limits.keys.rate.period"),
        ({"keys": {"tenant": 1}}, "spec.limits.keys.tenant is not a field"),
        ([1], "spec.limits must be an object"),
    ],
)
def test_bad_limits_are_refused_with_their_field_path(limits: Any, problem: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(minimal(limits=limits), "q")
    assert any(p.startswith(problem) for p in caught.value.problems), caught.value.problems


def test_every_problem_is_listed() -> None:
    bad = {"concurrency": 0, "rate": {"limit": 0}, "keys": {"concurrency": -1}}
    with pytest.raises(SpecError) as caught:
        parse_limits(bad)
    assert len(caught.value.problems) == 3


def test_crd_defaults_agree_with_the_operators() -> None:
    """The CRD defaults periodSeconds to 1, as the parser does when it is left out."""
    schema = version()["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec = minimal(limits=copy.deepcopy(FULL))
    del spec["limits"]["keys"]["rate"]  # no periodSeconds anywhere below
    defaulted = apply_defaults(schema, spec)
    assert defaulted["limits"]["keys"] == {"concurrency": 1}
    assert parse_spec(defaulted, "q") == parse_spec(spec, "q")
    rate = schema["properties"]["limits"]["properties"]["rate"]
    assert rate["properties"]["periodSeconds"]["default"] == 1
    assert "Default: 1." in rate["properties"]["periodSeconds"]["description"]


def test_crd_limits_are_described_with_units_and_defaults_and_cel_checked() -> None:
    """Also the parts below ``types`` (a map: additionalProperties, which test_crd's walk
    does not enter): every field described, with its unit and default."""
    limits = version()["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["limits"]
    parts = [
        ("limits", limits),
        ("keys", limits["properties"]["keys"]),
        ("types{}", limits["properties"]["types"]["additionalProperties"]),
    ]
    for where, part in parts:
        props = part["properties"]
        for name in ("rate", "concurrency"):
            text = " ".join(props[name]["description"].split())
            assert "Default:" in text, (where, name)
            assert props[name].get("x-kubernetes-validations"), (where, name)
        assert "Unit: activities." in " ".join(props["concurrency"]["description"].split())
        for name, field in props["rate"]["properties"].items():
            text = " ".join(field["description"].split())
            assert "Unit:" in text, (where, name)
            if name != "limit":
                assert "Default:" in text, (where, name)
        rule = props["rate"]["x-kubernetes-validations"][0]
        assert "self.limit > 0" in rule["rule"] and "periodSeconds > 0" in rule["rule"]
    assert limits["properties"]["types"]["maxProperties"] == 1000  # bounds the CEL cost


def _rates() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"limit": st.integers(1, 10**6)},
        optional={"periodSeconds": st.integers(1, 86400), "burst": st.integers(1, 10**6)},
    )


def _parts() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {}, optional={"rate": _rates(), "concurrency": st.integers(1, 10**4)}
    )


@given(
    st.fixed_dictionaries(
        {},
        optional={
            "rate": _rates(),
            "concurrency": st.integers(1, 10**4),
            "types": st.dictionaries(st.text(min_size=1, max_size=20), _parts(), max_size=5),
            "keys": _parts(),
        },
    )
)
def test_valid_spec_limits_become_the_same_limits(doc: dict[str, Any]) -> None:
    """What the CRD lets through becomes runnerq's Limits with the same numbers (periods in
    seconds, bursts defaulting to the limit), and the JSON the operator writes reads back."""

    def rate(r: dict[str, Any]) -> dict[str, Any]:
        return {
            "limit": r["limit"],
            "period": float(r.get("periodSeconds", 1)),
            "burst": r.get("burst", r["limit"]),
        }

    def part(p: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if "rate" in p:
            out["rate"] = rate(p["rate"])
        if "concurrency" in p:
            out["concurrency"] = p["concurrency"]
        return out

    expected = part(doc)
    types = {name: part(p) for name, p in doc.get("types", {}).items() if part(p)}
    if types:
        expected["types"] = types
    if doc.get("keys") and part(doc["keys"]):
        expected["keys"] = part(doc["keys"])
    limits = parse_limits(doc)
    if not expected:
        assert limits is None
        return
    assert limits is not None and limits.to_dict() == expected
    text = limits_json(limits)
    assert text is not None and Limits.from_json(text) == limits


_junk = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 5)
    | st.floats(allow_nan=True)
    | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(
    st.dictionaries(
        st.sampled_from(["rate", "concurrency", "types", "keys", "other"]), _junk, max_size=4
    )
)
def test_any_spec_limits_parse_or_raise_a_spec_error(doc: dict[str, Any]) -> None:
    """Whatever an object stored under an older CRD holds: Limits, None or SpecError (with
    field paths), never another exception."""
    problems: list[str] = []
    try:
        parse_limits(doc)
    except SpecError as exc:
        problems = exc.problems or ["(none)"]
    assert all(p.startswith("spec.limits") for p in problems), problems
