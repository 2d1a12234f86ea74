"""Smoke tests of the test control plane itself: what the operator's e2e tests will rely on."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kopf
import pytest
from kopf.testing import KopfRunner

from .cluster import ControlPlane
from .waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

OPERATOR = Path(__file__).parent / "operators" / "smoke_operator.py"
GROUP = "e2e.runnerq.io"
CRD_NAME = f"widgets.{GROUP}"


def widget_crd() -> dict[str, Any]:
    schema = {
        "type": "object",
        "properties": {
            "spec": {"type": "object", "properties": {"size": {"type": "integer", "minimum": 0}}},
            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


def widget(name: str, namespace: str, size: int) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "Widget",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"size": size},
    }


def exists(plane: ControlPlane, *args: str) -> bool:
    return plane.kubectl("get", *args, "--ignore-not-found", "-o", "name").stdout.strip() != ""


@pytest.fixture(scope="module")
def widgets(control_plane: ControlPlane) -> Iterator[str]:
    """The Widget CRD, established; yields its name."""
    control_plane.apply(widget_crd())
    control_plane.kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s")
    yield CRD_NAME
    control_plane.kubectl("delete", "crd", CRD_NAME, "--wait=false")


def test_kubectl_reports_pinned_server_version(control_plane: ControlPlane) -> None:
    versions = json.loads(control_plane.kubectl("version", "-o", "json").stdout)

    assert versions["serverVersion"]["gitVersion"] == control_plane.kubernetes_version
    assert versions["clientVersion"]["gitVersion"] == control_plane.kubernetes_version


def test_custom_resource_spec_and_status_subresource(
    control_plane: ControlPlane, widgets: str, namespace: str
) -> None:
    control_plane.apply(widget("plain", namespace, size=1))
    control_plane.kubectl(
        "patch", "widget", "plain", "-n", namespace, "--type=merge", "-p", '{"spec":{"size":2}}'
    )
    # With a status subresource, status written through the main resource is dropped ...
    control_plane.kubectl(
        "patch",
        "widget",
        "plain",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"status":{"phase":"ignored"}}',
    )
    # ... and status written through /status is kept.
    control_plane.kubectl(
        "patch", "widget", "plain", "-n", namespace, "--subresource=status", "--type=merge",
        "-p", '{"status":{"phase":"patched"}}',
    )  # fmt: skip

    obj = control_plane.kubectl_json("get", "widget", "plain", "-n", namespace)
    assert obj["spec"] == {"size": 2}
    assert obj["status"] == {"phase": "patched"}


def test_kopf_operator_reacts_to_custom_resource(
    control_plane: ControlPlane, widgets: str, namespace: str
) -> None:
    def observed_size() -> int | None:
        obj = control_plane.kubectl_json("get", "widget", "w", "-n", namespace)
        size = obj.get("status", {}).get("observedSize")
        return size if isinstance(size, int) else None

    control_plane.apply(widget("w", namespace, size=1))
    # A registry of its own: kopf registers handlers in a process-wide default registry, and
    # this pytest process has imported runnerq_operator (its unit tests), whose handlers
    # would run here too.
    registry = kopf.OperatorRegistry()
    command = ["run", "-A", "--standalone", str(OPERATOR)]
    with KopfRunner(command, timeout=60, registry=registry) as runner:
        assert wait_for(observed_size, what="status.observedSize") == 1
        control_plane.kubectl(
            "patch", "widget", "w", "-n", namespace, "--type=merge", "-p", '{"spec":{"size":3}}'
        )
        wait_for(lambda: observed_size() == 3, what="status.observedSize == 3")

    assert runner.exit_code == 0
    assert runner.exception is None
    assert "Handler 'mirror_size' succeeded" in runner.output
    assert (
        control_plane.kubectl_json("get", "widget", "w", "-n", namespace)["status"]["phase"]
        == "Reconciled"
    )


def deployment(name: str, namespace: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                # kwok runs no containers, so the image is never pulled.
                "spec": {"containers": [{"name": "main", "image": "runnerq-e2e.invalid/none:0"}]},
            },
        },
    }


def test_controller_manager_creates_replicaset(control_plane: ControlPlane, namespace: str) -> None:
    control_plane.apply(deployment("web", namespace, replicas=2))

    def owned_replicaset() -> dict[str, Any] | None:
        for rs in control_plane.kubectl_json("get", "replicasets", "-n", namespace)["items"]:
            owners = rs["metadata"].get("ownerReferences", [])
            if any(o["kind"] == "Deployment" and o["name"] == "web" for o in owners):
                return rs if rs.get("status", {}).get("replicas") == 2 else None
        return None

    rs = wait_for(owned_replicaset, what="a ReplicaSet of Deployment web with 2 pods")
    pods = control_plane.kubectl_json("get", "pods", "-n", namespace, "-l", "app=web")["items"]
    assert len(pods) == 2
    assert all(p["metadata"]["ownerReferences"][0]["name"] == rs["metadata"]["name"] for p in pods)


def test_deployment_becomes_ready_on_fake_node(control_plane: ControlPlane, namespace: str) -> None:
    if not control_plane.has_nodes:
        pytest.skip("kube-scheduler + kwok are not available: pods stay Pending")
    control_plane.apply(deployment("ready", namespace, replicas=2))

    def ready_replicas() -> bool:
        status = control_plane.kubectl_json("get", "deployment", "ready", "-n", namespace).get(
            "status", {}
        )
        return bool(status.get("readyReplicas") == 2)

    wait_for(ready_replicas, what="Deployment ready to have 2 ready replicas")
    pods = control_plane.kubectl_json("get", "pods", "-n", namespace, "-l", "app=ready")["items"]
    assert {p["spec"]["nodeName"] for p in pods} == {control_plane.node_name}
    assert {p["status"]["phase"] for p in pods} == {"Running"}


def test_garbage_collector_removes_owned_object(
    control_plane: ControlPlane, namespace: str
) -> None:
    control_plane.kubectl("create", "configmap", "owner", "-n", namespace)
    owner_uid = control_plane.kubectl_json("get", "configmap", "owner", "-n", namespace)[
        "metadata"
    ]["uid"]
    owned = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "owned",
            "namespace": namespace,
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner_uid}
            ],
        },
    }
    control_plane.apply(owned)
    assert exists(control_plane, "configmap", "owned", "-n", namespace)

    control_plane.kubectl("delete", "configmap", "owner", "-n", namespace)

    wait_for(
        lambda: not exists(control_plane, "configmap", "owned", "-n", namespace),
        what="owned ConfigMap gone",
    )


def write_chart(directory: Path, kube_version: str) -> Path:
    """A one-template chart that records the cluster version Helm saw; refuses older ones."""
    chart = directory / "smoke"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(
        textwrap.dedent(f"""\
            apiVersion: v2
            name: smoke
            version: 0.1.0
            kubeVersion: ">= {kube_version.removeprefix("v")}-0"
            """)
    )
    (chart / "templates" / "configmap.yaml").write_text(
        textwrap.dedent("""\
            apiVersion: v1
            kind: ConfigMap
            metadata:
              name: {{ .Release.Name }}-info
            data:
              kubeVersion: {{ .Capabilities.KubeVersion.Version | quote }}
              greeting: {{ .Values.greeting | quote }}
            """)
    )
    (chart / "values.yaml").write_text("greeting: hello\n")
    return chart


def test_helm_installs_chart(control_plane: ControlPlane, namespace: str, tmp_path: Path) -> None:
    assert control_plane.helm("version", "--short").stdout.startswith("v3.")
    version = control_plane.kubernetes_version
    chart = write_chart(tmp_path, version)

    args = ["--kube-version", version, "--set", "greeting=hi"]
    rendered = control_plane.helm("template", "demo", str(chart), *args).stdout
    assert "name: demo-info" in rendered
    assert 'greeting: "hi"' in rendered

    control_plane.helm("install", "demo", str(chart), "-n", namespace, "--wait", "--timeout=60s")
    releases = json.loads(control_plane.helm("list", "-n", namespace, "-o", "json").stdout)
    assert [(r["name"], r["status"]) for r in releases] == [("demo", "deployed")]
    info = control_plane.kubectl_json("get", "configmap", "demo-info", "-n", namespace)
    assert info["data"] == {"kubeVersion": control_plane.kubernetes_version, "greeting": "hello"}

    control_plane.helm("uninstall", "demo", "-n", namespace, "--wait")
    assert not exists(control_plane, "configmap", "demo-info", "-n", namespace)
