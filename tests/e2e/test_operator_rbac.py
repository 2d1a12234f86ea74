"""The operator under a ServiceAccount bound to operator/rbac/clusterrole.yaml (a real
bound token, not admin): every feature works with these permissions, and no more are held.

It also shows the busy-pod rule: a worker whose host name is one of the Deployment's pods
holds leases; on a scale-down that pod gets a pod-deletion-cost and survives, an idle one goes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from .cluster import ControlPlane
from .operator_harness import (
    RBAC_FILE,
    OperatorProcess,
    WorkerProcess,
    activity_queue,
    can_set_hostname,
    condition,
    enqueue,
    get,
    install_crd,
    log_tail,
    queue_config,
    reasons,
    refused,
    replicas,
    service_account_kubeconfig,
    stats,
)
from .waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

ACCOUNT = "runnerq-operator"
COST = "controller.kubernetes.io/pod-deletion-cost"


@pytest.fixture
def operator_account(control_plane: ControlPlane, namespace: str) -> Iterator[str]:
    """The chart's ClusterRole, bound to a ServiceAccount in the test's namespace."""
    install_crd(control_plane)
    role = yaml.safe_load(RBAC_FILE.read_text())
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": f"{ACCOUNT}-{namespace}"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": role["metadata"]["name"],
        },
        "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": namespace}],
    }
    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": ACCOUNT, "namespace": namespace},
    }
    control_plane.apply(role, account, binding)
    yield f"system:serviceaccount:{namespace}:{ACCOUNT}"
    control_plane.kubectl("delete", "clusterrolebinding", f"{ACCOUNT}-{namespace}")


def can(plane: ControlPlane, user: str, namespace: str, verb: str, resource: str) -> bool:
    result = plane.kubectl(
        "auth", "can-i", verb, resource, "-n", namespace, f"--as={user}", check=False
    )
    return result.stdout.strip() == "yes"


def test_permissions_are_exactly_what_the_operator_uses(
    control_plane: ControlPlane, operator_account: str, namespace: str
) -> None:
    granted = [
        ("watch", "activityqueues.runnerq.io"),
        ("patch", "activityqueues.runnerq.io/status"),
        ("patch", "deployments.apps"),
        ("watch", "deployments.apps"),
        ("get", "secrets"),
        ("create", "events"),
        ("patch", "pods"),
    ]
    refused = [
        ("delete", "deployments.apps"),
        ("update", "deployments.apps"),
        ("list", "secrets"),
        ("watch", "secrets"),
        ("create", "pods"),
        ("delete", "pods"),
        ("get", "configmaps"),
        ("delete", "activityqueues.runnerq.io"),
        ("create", "activityqueues.runnerq.io"),
        ("update", "activityqueues.runnerq.io/status"),
        ("create", "roles.rbac.authorization.k8s.io"),
        ("create", "services"),
    ]
    assert [g for g in granted if not can(control_plane, operator_account, namespace, *g)] == []
    assert [r for r in refused if can(control_plane, operator_account, namespace, *r)] == []


@pytest.mark.slow
def test_operator_works_under_its_service_account(
    control_plane: ControlPlane,
    operator_account: str,
    namespace: str,
    redis_url: str,
    tmp_path: Path,
) -> None:
    if not can_set_hostname():
        pytest.skip("cannot give a worker process a pod's host name (unshare --uts)")
    kubeconfig = service_account_kubeconfig(
        control_plane, namespace, ACCOUNT, tmp_path / "operator.kubeconfig"
    )
    operator = OperatorProcess(kubeconfig, namespace, tmp_path / "operator.log")
    workers: list[WorkerProcess] = []
    queue = f"{namespace}.rbac"
    try:
        operator.start()
        control_plane.kubectl(
            "create", "secret", "generic", "redis", "-n", namespace,
            f"--from-literal=url={redis_url}",
        )  # fmt: skip
        control_plane.apply(
            activity_queue(
                "rbac", namespace, redis_url, queue,
                redis={"url": None, "urlSecretRef": {"name": "redis"}},
                scaling={"pollIntervalSeconds": 1, "targetPerReplica": 50,
                         "scaleDownStabilizationSeconds": 0},
                deletionPolicy="Purge",
            )
        )  # fmt: skip

        def ready() -> dict[str, Any] | None:
            found = condition(control_plane, namespace, "rbac", "Ready")
            return found if found and found["status"] == "True" else None

        wait_for(ready, what="Ready=True under the ServiceAccount")
        assert queue_config(redis_url, queue) == {"paused": "0"}

        enqueue(redis_url, queue, 100, payload={"sleep": 60})
        wait_for(lambda: replicas(control_plane, namespace, "rbac") == 2, what="2 replicas")

        def pods() -> list[str] | None:
            found = control_plane.kubectl_json(
                "get", "pods", "-n", namespace, "-l", "app.kubernetes.io/instance=rbac"
            )["items"]
            live = [p for p in found if not p["metadata"].get("deletionTimestamp")]
            return sorted(p["metadata"]["name"] for p in live) if len(live) == 2 else None

        busy, idle = wait_for(pods, what="the ReplicaSet's 2 pods")
        workers.append(
            WorkerProcess(redis_url, queue, tmp_path / "worker.log", max_workers=5, hostname=busy)
        )
        # 5 running and 5 prefetched (prefetch defaults to max_workers): all 10 leased to it.
        wait_for(lambda: stats(redis_url, queue).running == 10, what="10 activities in flight")

        # Ask for fewer replicas than the pods: one must go, and it must be the idle one.
        control_plane.kubectl(
            "patch", "aq", "rbac", "-n", namespace, "--type=merge",
            "-p", '{"spec":{"scaling":{"targetPerReplica":1000}}}',
        )  # fmt: skip
        wait_for(lambda: replicas(control_plane, namespace, "rbac") == 1, what="1 replica")
        annotations = (get(control_plane, "pod", busy, namespace) or {})["metadata"].get(
            "annotations", {}
        )
        assert annotations.get(COST) == "10"
        wait_for(
            lambda: (
                (p := get(control_plane, "pod", idle, namespace)) is None
                or bool(p["metadata"].get("deletionTimestamp"))
            ),
            what="the idle pod removed",
        )
        busy_pod = get(control_plane, "pod", busy, namespace)
        assert busy_pod is not None and not busy_pod["metadata"].get("deletionTimestamp")
        assert {"ScaledUp", "ScaledDown"} <= reasons(control_plane, namespace, "rbac")

        for worker in workers:
            worker.kill()
        control_plane.kubectl("delete", "aq", "rbac", "-n", namespace, "--wait=true")
        assert stats(redis_url, queue).pending == 0  # purged through the finalizer
        assert operator.healthy()
    finally:
        for worker in workers:
            worker.kill()
        operator.stop()
        print(f"--- operator log (tail) ---\n{log_tail(operator.log())}")
    log = operator.log()
    assert not refused(log), log_tail(log)
