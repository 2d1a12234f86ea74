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
    if isinstance(value, list) and schema.get("type") == "array":
        return [apply_defaults(schema["items"], item) for item in value]
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
    """READY is the Ready condition (as for every kind), REASON its reason; the depth columns
    are named for what they count."""
    found = version()["additionalPrinterColumns"]
    columns = [c["name"] for c in found if not c.get("priority")]
    assert columns == [
        "Queue", "Ready", "Reason", "Waiting", "Running", "Replicas", "Desired", "Age"
    ]  # fmt: skip
    known = {"name", "type", "jsonPath", "description", "priority", "format"}
    assert [sorted(set(c) - known) for c in found] == [[] for _ in found]  # e.g. a stray comma
    paths = {c["name"]: c["jsonPath"] for c in found}
    assert paths["Ready"] == '.status.conditions[?(@.type=="Ready")].status'
    assert paths["Reason"] == '.status.conditions[?(@.type=="Ready")].reason'
    assert paths["Waiting"] == ".status.depth.ready"
    assert paths["Polled"] == ".status.lastPollTime"  # -o wide: how old the depth is
    # -o wide: most queues have no schedule, and a tick changes every poll. A string, not a
    # date: kubectl shows a date in the future as <invalid>.
    tick = next(c for c in found if c["name"] == "Next Tick")
    assert (tick["jsonPath"], tick["type"], tick["priority"]) == (".status.nextTick", "string", 1)


def fields(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any], bool]]:
    """Every property of the schema: its path (list items as ``[]``), schema, and whether
    it is optional."""
    found: list[tuple[str, dict[str, Any], bool]] = []
    required = set(node.get("required") or ())
    for name, child in (node.get("properties") or {}).items():
        where = f"{path}.{name}" if path else name
        found.append((where, child, name not in required))
        found += fields(child, where)
        items = child.get("items")
        if isinstance(items, dict):
            found += fields(items, f"{where}[]")
    return found


def test_every_field_is_described_with_its_default_and_unit() -> None:
    """What ``kubectl explain`` shows comes from the schema's own file: every field has a
    description, one that states the schema's default when it has one (the two cannot
    drift: a changed default fails here), and a unit for every count of seconds."""
    schema = version()["schema"]["openAPIV3Schema"]
    assert schema["description"]
    everything = fields(schema)
    assert len(everything) > 80
    # metadata: the API server refuses anything but its type (even a description).
    missing = [path for path, node, _ in everything if not node.get("description")]
    assert missing == ["metadata"]
    assert everything[[p for p, _, _ in everything].index("metadata")][1] == {"type": "object"}
    for path, node, optional in everything:
        if path == "metadata":
            continue
        text = " ".join(node["description"].split())
        if "default" in node and node["default"] != {}:
            default = node["default"]
            shown = str(default).lower() if isinstance(default, bool) else str(default)
            assert f"Default: {shown}." in text, (path, text)
        sections = node.get("type") == "object" and "properties" in node
        leaf = optional and not sections and "[]" not in path and path.startswith("spec.")
        if leaf:  # an optional setting: what it is when left out
            assert "Default:" in text, (path, text)
        if path.endswith("Seconds"):
            assert "Unit: seconds." in text, (path, text)


def test_schema_defaults_agree_with_the_operators_defaults() -> None:
    schema = version()["schema"]["openAPIV3Schema"]["properties"]["spec"]
    minimal = {
        "redis": {"url": "redis://r:6379"},
        "worker": {"image": "i:1", "app": "a.b:c"},
    }
    defaulted = apply_defaults(schema, minimal)
    assert defaulted["scaling"]["minReplicas"] == 0  # nested defaults were applied
    assert parse_spec(defaulted, "q") == parse_spec(minimal, "q")


def test_schedule_defaults_agree_with_the_operators_defaults() -> None:
    schema = version()["schema"]["openAPIV3Schema"]["properties"]["spec"]
    minimal = {
        "redis": {"url": "redis://r:6379"},
        "worker": {"image": "i:1", "app": "a.b:c"},
        "schedules": [
            {"name": "tick", "everySeconds": 1, "activity": {"type": "t"}},
            {"name": "daily", "cron": "0 3 * * *", "activity": {"type": "t", "payload": [1]}},
        ],
    }
    defaulted = apply_defaults(schema, minimal)
    assert defaulted["schedules"][0]["timeZone"] == "UTC"  # item defaults were applied
    assert defaulted["schedules"][1]["activity"]["priority"] == "Normal"
    parsed = parse_spec(defaulted, "q")
    assert parsed.schedule_problems == ()
    assert parsed == parse_spec(minimal, "q")


def test_schedule_names_are_the_list_key_and_one_trigger_is_a_rule() -> None:
    """Unique names by the API server's list-map semantics (a duplicate is refused, and
    server-side apply merges the list by name); exactly one trigger by CEL."""
    schedules = version()["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"][
        "schedules"
    ]
    assert schedules["x-kubernetes-list-type"] == "map"
    assert schedules["x-kubernetes-list-map-keys"] == ["name"]
    assert "name" in schedules["items"]["required"]  # a list-map key must be required
    rules = [r["rule"] for r in schedules["items"]["x-kubernetes-validations"]]
    assert rules == ["has(self.cron) != has(self.everySeconds)"]
    assert "maxItems" in schedules  # bounds the CEL cost of the per-item rules
    payload = schedules["items"]["properties"]["activity"]["properties"]["payload"]
    assert "type" not in payload and payload["x-kubernetes-preserve-unknown-fields"] is True


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


def test_no_flow_mapping_was_split_by_a_comma() -> None:
    """An unquoted description holding a comma inside ``{...}`` ends at the comma, and the
    rest becomes a stray key with no value (which the API server drops)."""

    def stray(node: Any, path: str = "") -> list[str]:
        found: list[str] = []
        if isinstance(node, dict):
            for key, value in node.items():
                if value is None:
                    found.append(f"{path}.{key}")
                found += stray(value, f"{path}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                found += stray(value, f"{path}[{i}]")
        return found

    assert stray(load_crd()) == []
