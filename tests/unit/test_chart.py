"""The chart, manifests/ and Dockerfiles against their single sources, without a cluster or
helm: generated files in sync, the CRD and RBAC rules identical to operator/, every value
documented and described by the schema, images pinned and non-root.

(tests/e2e/test_chart.py and test_manifests.py render with the real helm, lint, and install.)
"""

from __future__ import annotations

import importlib.util
import json
import re
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "runnerq"
MANIFESTS = ROOT / "manifests"
CRD_SOURCE = ROOT / "operator" / "crd" / "activityqueues.runnerq.io.yaml"
RBAC_SOURCE = ROOT / "operator" / "rbac" / "clusterrole.yaml"


def _render_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "render_manifests", ROOT / "hack" / "render_manifests.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


render = _render_module()


def manifest_objects() -> list[dict[str, Any]]:
    return [
        doc
        for path in sorted(MANIFESTS.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, kind
    return found[0]


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def test_generated_chart_templates_match_their_sources() -> None:
    generated: dict[Path, str] = render.chart_files()
    assert set(generated) == {
        render.CRD_TEMPLATE,
        render.RBAC_TEMPLATE,
        render.PEERING_CRDS,
        render.PEERING_RBAC_TEMPLATE,
    }
    for path, text in generated.items():
        assert path.read_text() == text, f"{path} is stale: run `make manifests`"


def test_manifests_crd_is_the_source_crd() -> None:
    source = load_yaml(CRD_SOURCE)
    crd = one(manifest_objects(), "CustomResourceDefinition")
    assert crd["metadata"]["name"] == source["metadata"]["name"]
    assert crd["spec"] == source["spec"]
    assert source["metadata"]["labels"].items() <= crd["metadata"]["labels"].items()


def test_manifests_rbac_is_the_source_rbac() -> None:
    role = one(manifest_objects(), "ClusterRole")
    assert role["rules"] == load_yaml(RBAC_SOURCE)["rules"]
    assert role["metadata"]["name"] == load_yaml(RBAC_SOURCE)["metadata"]["name"]
    binding = one(manifest_objects(), "ClusterRoleBinding")
    account = one(manifest_objects(), "ServiceAccount")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": account["metadata"]["name"],
            "namespace": account["metadata"]["namespace"],
        }
    ]


def test_rbac_rules_split_by_scope() -> None:
    rules = load_yaml(RBAC_SOURCE)["rules"]
    cluster = [r for r in rules if render.is_cluster_scoped(r)]
    assert {res for r in cluster for res in r["resources"]} == {
        "customresourcedefinitions",
        "namespaces",
    }
    with pytest.raises(render.RenderError, match="mixes"):
        render.is_cluster_scoped({"resources": ["namespaces", "pods"], "verbs": ["get"]})


def test_peering_crds_and_rules_in_the_chart_are_the_sources() -> None:
    """kopf's peering CRDs go into the chart's crds/ folder as they are (helm applies them
    before it renders the templates); the peering rules split by scope."""
    source = list(yaml.safe_load_all((ROOT / "operator" / "crd" / "kopf-peering.yaml").read_text()))
    assert list(yaml.safe_load_all(render.PEERING_CRDS.read_text())) == source
    assert [c["spec"]["names"]["kind"] for c in source] == ["KopfPeering", "ClusterKopfPeering"]
    rules = load_yaml(render.PEERING_RBAC_SOURCE)["rules"]
    assert [render.is_cluster_scoped(r) for r in rules] == [False, True]
    # The default render (manifests/) has nothing of peering in it.
    assert not [o for o in manifest_objects() if "kopf" in json.dumps(o).lower()]


def test_crd_template_refuses_template_syntax_in_the_source() -> None:
    source = CRD_SOURCE.read_text().replace("description: A runnerq", "description: {{ x }}", 1)
    with pytest.raises(render.RenderError, match="template"):
        render.crd_template(source)


def test_operator_deployment_in_manifests_is_locked_down() -> None:
    deployment = one(manifest_objects(), "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    (container,) = pod["containers"]
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    namespace = one(manifest_objects(), "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


# -- values.yaml and values.schema.json ----------------------------------------------------


def schema() -> dict[str, Any]:
    loaded = json.loads((CHART / "values.schema.json").read_text())
    assert isinstance(loaded, dict)
    return loaded


def is_structured(node: dict[str, Any]) -> bool:
    """A schema node whose keys are values of their own (documented one by one)."""
    return node.get("type") == "object" and "properties" in node


JSON_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "boolean": (bool,),
    "integer": (int,),
    "number": (int, float),
}


def leaves(values: dict[str, Any], node: dict[str, Any], path: str = "") -> list[str]:
    """Check ``values`` against ``node`` (keys, types, no extras); return the leaf paths."""
    assert node.get("additionalProperties") is False, f"{path or 'the root'} accepts unknown keys"
    assert set(values) == set(node["properties"]), (path, set(values) ^ set(node["properties"]))
    found: list[str] = []
    for key, value in values.items():
        child = node["properties"][key]
        where = f"{path}.{key}" if path else key
        if is_structured(child):
            found += leaves(value, child, where)
            continue
        types = child["type"] if isinstance(child["type"], list) else [child["type"]]
        expected = tuple(t for name in types for t in JSON_TYPES[name])
        assert isinstance(value, expected) and not (
            isinstance(value, bool) and "boolean" not in types
        ), (where, value, child["type"])
        assert child.get("description") or child.get("enum"), f"{where} has no description"
        found.append(where)
    return found


def test_every_value_is_in_the_schema_with_its_type() -> None:
    values = load_yaml(CHART / "values.yaml")
    assert len(leaves(values, schema())) >= 40


def test_every_value_is_documented_in_values_yaml() -> None:
    """Every leaf value (per the schema) has a ``# --`` comment right above its key."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    stack: list[tuple[int, str]] = []
    documented: set[str] = set()
    seen: set[str] = set()
    comment_above = False
    in_comment = False
    for line in lines:
        stripped = line.strip()
        if not stripped:
            comment_above = in_comment = False
            continue
        if stripped.startswith("#"):
            in_comment = stripped.startswith("# --") or in_comment
            comment_above = in_comment
            continue
        match = re.match(r"^( *)([A-Za-z][A-Za-z0-9]*):", line)
        if match is None:  # a list item or a nested value of a documented value
            comment_above = in_comment = False
            continue
        indent, key = len(match.group(1)), match.group(2)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = ".".join([p for _, p in stack] + [key])
        stack.append((indent, key))
        seen.add(path)
        if comment_above:
            documented.add(path)
        comment_above = in_comment = False
    values = load_yaml(CHART / "values.yaml")
    missing = [leaf for leaf in leaves(values, schema()) if leaf not in documented]
    assert missing == []
    assert set(leaves(values, schema())) <= seen


def test_example_queue_in_values_is_the_manifests_example() -> None:
    values = load_yaml(CHART / "values.yaml")
    example = load_yaml(MANIFESTS / "examples" / "activityqueue.yaml")
    assert values["exampleQueue"]["name"] == example["metadata"]["name"]
    assert values["exampleQueue"]["spec"] == example["spec"]


# -- Chart.yaml and the Dockerfiles --------------------------------------------------------


def project_version() -> str:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert isinstance(version, str)
    return version


def test_chart_metadata() -> None:
    chart = load_yaml(CHART / "Chart.yaml")
    assert chart["apiVersion"] == "v2"
    assert chart["type"] == "application"
    assert chart["appVersion"] == project_version()
    assert re.fullmatch(r">=1\.\d+\.\d+-0", chart["kubeVersion"])


@pytest.mark.parametrize("name", ["Dockerfile.worker", "Dockerfile.operator"])
def test_dockerfiles_pin_the_base_and_run_as_non_root(name: str) -> None:
    text = (ROOT / "docker" / name).read_text()
    (base,) = re.findall(r"^ARG BASE_IMAGE=(\S+)$", text, flags=re.MULTILINE)
    assert re.fullmatch(r"python:3\.11[\w.-]*@sha256:[0-9a-f]{64}", base), base
    stages = re.findall(r"^FROM (\S+)", text, flags=re.MULTILINE)
    assert stages == ["${BASE_IMAGE}", "${BASE_IMAGE}"]  # multi-stage: the wheels stay behind
    final = text.split("\nFROM ${BASE_IMAGE}\n")[-1]
    assert re.search(r"^USER 10001:10001$", final, flags=re.MULTILINE)
    assert "--no-index" not in final and "pip install" not in final


def test_both_images_use_the_same_base() -> None:
    bases = {
        re.findall(r"^ARG BASE_IMAGE=(\S+)$", (ROOT / "docker" / n).read_text(), re.MULTILINE)[0]
        for n in ("Dockerfile.worker", "Dockerfile.operator")
    }
    assert len(bases) == 1


# -- the Kubernetes shapes in values.schema.json -------------------------------------------


def problems(schema_root: dict[str, Any], node: dict[str, Any], value: Any, path: str) -> list[str]:
    """The draft-07 keywords values.schema.json uses, enough to see what it refuses (helm's
    own validator runs in tests/e2e/test_chart.py)."""
    if "$ref" in node:
        name = node["$ref"].removeprefix("#/definitions/")
        return problems(schema_root, schema_root["definitions"][name], value, path)
    found: list[str] = []
    for sub in node.get("allOf", []):
        found += problems(schema_root, sub, value, path)
    if "anyOf" in node and all(problems(schema_root, s, value, path) for s in node["anyOf"]):
        found.append(f"{path}: matches none of anyOf")
    if "enum" in node and value not in node["enum"]:
        found.append(f"{path}: {value!r} not in {node['enum']}")
    if "type" in node:
        types = node["type"] if isinstance(node["type"], list) else [node["type"]]
        ok = tuple(t for name in types for t in JSON_TYPES[name])
        if not isinstance(value, ok) or (isinstance(value, bool) and "boolean" not in types):
            return [*found, f"{path}: {value!r} is not {node['type']}"]
    if isinstance(value, str) and "pattern" in node and not re.search(node["pattern"], value):
        found.append(f"{path}: {value!r} does not match {node['pattern']}")
    if isinstance(value, dict):
        props = node.get("properties", {})
        found += [
            f"{path}: {key} is required" for key in node.get("required", []) if key not in value
        ]
        for key, item in value.items():
            extra = node.get("additionalProperties", True)
            if key in props:
                found += problems(schema_root, props[key], item, f"{path}.{key}")
            elif extra is False:
                found.append(f"{path}: unknown key {key}")
            elif isinstance(extra, dict):
                found += problems(schema_root, extra, item, f"{path}.{key}")
    if isinstance(value, list) and isinstance(node.get("items"), dict):
        for i, item in enumerate(value):
            found += problems(schema_root, node["items"], item, f"{path}[{i}]")
    return found


def operator_values(**changes: Any) -> dict[str, Any]:
    values = load_yaml(CHART / "values.yaml")
    values["operator"].update(changes)
    assert isinstance(values, dict)
    return values


def test_the_default_values_pass_the_schema() -> None:
    assert problems(schema(), schema(), load_yaml(CHART / "values.yaml"), "") == []


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        (
            {"resources": {"requests": {"cpu": "50m"}, "foo": 1}},
            "operator.resources: unknown key foo",
        ),
        ({"resources": {"limits": {"memory": "lots"}}}, "operator.resources.limits.memory"),
        (
            {"podSecurityContext": {"runAsNonRoot": "yes"}},
            "operator.podSecurityContext.runAsNonRoot",
        ),
        ({"podSecurityContext": {"seccompProfile": {"type": "Default"}}}, "not in"),
        ({"securityContext": {"capabilities": {"drop": "ALL"}}}, "capabilities.drop"),
        (
            {"securityContext": {"readOnlyRootFileSystem": True}},
            "unknown key readOnlyRootFileSystem",
        ),
        ({"tolerations": [{"key": "k", "operator": "Equals"}]}, "operator.tolerations[0].operator"),
        (
            {"tolerations": [{"key": "k", "effect": "NoSchedule", "seconds": 5}]},
            "unknown key seconds",
        ),
        ({"affinity": {"nodeAffinity": {"required": {}}}}, "unknown key required"),
        ({"affinity": {"podAntiAfinity": {}}}, "unknown key podAntiAfinity"),
        ({"extraEnv": [{"name": "A", "valu": "1"}]}, "unknown key valu"),
    ],
)
def test_nested_kubernetes_shapes_are_checked(changes: dict[str, Any], problem: str) -> None:
    """Not only unknown top-level keys: a misspelt or mistyped field inside resources,
    security contexts, tolerations, affinity or env is refused at helm install/template,
    not later by the API server (or never, for a field it drops)."""
    found = problems(schema(), schema(), operator_values(**changes), "")
    assert any(problem in p for p in found), found


def test_well_formed_kubernetes_shapes_pass() -> None:
    values = operator_values(
        resources={"requests": {"cpu": "0.1", "memory": "128Mi"}, "limits": {"cpu": 1}},
        tolerations=[
            {"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}
        ],
        affinity={"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
        extraEnv=[{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
    )
    assert problems(schema(), schema(), values, "") == []
