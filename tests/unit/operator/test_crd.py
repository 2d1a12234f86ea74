"""The CRD file: names, subresources, printer columns, and defaults that agree with the
operator's own (the API server validates the schema itself in the e2e tests)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from runnerq_operator.naming import GROUP, KIND, PLURAL, VERSION
from runnerq_operator.spec import parse_spec

CRD_PATH = Path(__file__).parents[3] / "operator" / "crd" / "activityqueues.runnerq.io.yaml"


def load_crd() -> dict[str, Any]:
    crd = yaml.safe_load(CRD_PATH.read_text())
    assert isinstance(crd, dict)
    return crd


def version() -> dict[str, Any]:
    (v,) = load_crd()["spec"]["versions"]
    assert isinstance(v, dict)
    return v


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """What the API server's defaulting does: fill absent properties with their defaults."""
    if not isinstance(value, dict) or schema.get("type") != "object":
        return value
    out = dict(value)
    for name, prop in (schema.get("properties") or {}).items():
        if name not in out and "default" in prop:
            out[name] = copy.deepcopy(prop["default"])
        if name in out:
            out[name] = apply_defaults(prop, out[name])
    return out


def test_names_match_the_operator() -> None:
    crd = load_crd()
    assert crd["metadata"]["name"] == f"{PLURAL}.{GROUP}"
    assert crd["spec"]["group"] == GROUP
    assert crd["spec"]["names"]["kind"] == KIND
    assert crd["spec"]["names"]["shortNames"] == ["aq"]
    assert crd["spec"]["scope"] == "Namespaced"
    assert version()["name"] == VERSION


def test_subresources() -> None:
    sub = version()["subresources"]
    assert sub["status"] == {}
    assert sub["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }


def test_printer_columns() -> None:
    columns = [c["name"] for c in version()["additionalPrinterColumns"] if not c.get("priority")]
    assert columns == ["Queue", "Ready", "Running", "Replicas", "Desired", "Age"]


def test_schema_defaults_agree_with_the_operators_defaults() -> None:
    schema = version()["schema"]["openAPIV3Schema"]["properties"]["spec"]
    minimal = {
        "redis": {"url": "redis://r:6379"},
        "worker": {"image": "i:1", "app": "a.b:c"},
    }
    defaulted = apply_defaults(schema, minimal)
    assert defaulted["scaling"]["minReplicas"] == 0  # nested defaults were applied
    assert parse_spec(defaulted, "q") == parse_spec(minimal, "q")


def test_every_cel_rule_has_a_message() -> None:
    def rules(node: Any) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        if isinstance(node, dict):
            found += node.get("x-kubernetes-validations", [])
            for child in node.values():
                found += rules(child)
        elif isinstance(node, list):
            for child in node:
                found += rules(child)
        return found

    all_rules = rules(version()["schema"])
    assert len(all_rules) >= 8
    assert all(r.get("message") or r.get("messageExpression") for r in all_rules)
