"""Two operators of one kopf peering, as a ServiceAccount bound to the operator's ClusterRole
and the peering one: the operator of the higher priority alone writes a queue's Deployment
(the other is paused by kopf, its own autoscaler included), and the other takes over, with
the spec as it is now, when the first one stops. An operator whose peering object is missing
says so in a warning and in /healthz.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from .cluster import ControlPlane
from .operator_harness import (
    PEERING_RBAC_FILE,
    RBAC_FILE,
    OperatorProcess,
    WorkerProcess,
    activity_queue,
    condition,
    enqueue,
    get,
    holds_for,
    install_crd,
    install_peering_crds,
    log_tail,
    refused,
    replicas,
    service_account_kubeconfig,
    stats,
)
from .waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

PEERING = "runnerq-e2e"
ACCOUNT = "runnerq-operator"
UP = 'runnerq_operator_scale_decisions_total{direction="up"}'
DOWN = 'runnerq_operator_scale_decisions_total{direction="down"}'
POLLS = "runnerq_operator_queue_polls_total"
SERVED = "runnerq_operator_queues"
PAUSED = "Pausing operations in favour of"  # kopf's log line when a higher priority appears
RESUMED = "Resuming operations after the pause"


@pytest.fixture
def operator_kubeconfig(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> Iterator[Path]:
    """The CRDs, and a ServiceAccount bound to both operator roles; the peering object."""
    install_crd(control_plane)
    install_peering_crds(control_plane)
    roles = [yaml.safe_load(f.read_text()) for f in (RBAC_FILE, PEERING_RBAC_FILE)]
    bindings: list[dict[str, Any]] = [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": f"{role['metadata']['name']}-{namespace}"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": role["metadata"]["name"],
            },
            "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": namespace}],
        }
        for role in roles
    ]
    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": ACCOUNT, "namespace": namespace},
    }
    peering = {
        "apiVersion": "kopf.dev/v1",
        "kind": "KopfPeering",
        "metadata": {"name": PEERING, "namespace": namespace},
    }
    control_plane.apply(*roles, account, *bindings, peering)
    yield service_account_kubeconfig(
        control_plane, namespace, ACCOUNT, tmp_path / "operator.kubeconfig"
    )
    control_plane.kubectl(
        "delete", "clusterrolebinding", *(b["metadata"]["name"] for b in bindings)
    )


@pytest.fixture
def start_operator(
    operator_kubeconfig: Path, namespace: str, tmp_path: Path
) -> Iterator[Callable[..., OperatorProcess]]:
    """``start_operator(priority, peering=PEERING)``: an operator of the peering; all are
    stopped at the end, and none may have been refused anything."""
    started: list[tuple[int, OperatorProcess]] = []

    def start(priority: int, peering: str = PEERING) -> OperatorProcess:
        process = OperatorProcess(
            operator_kubeconfig,
            namespace,
            tmp_path / f"operator-{priority}.log",
            env={"RUNNERQ_OPERATOR_PEERING": peering, "RUNNERQ_OPERATOR_PRIORITY": str(priority)},
        )
        started.append((priority, process))
        return process.start()

    yield start
    for priority, process in started:
        process.stop()
        print(f"--- operator of priority {priority} (log tail) ---\n{log_tail(process.log())}")
    for _, process in started:
        log = process.log()
        assert not refused(log), log_tail(log)


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.stop()


def test_only_the_highest_priority_writes_and_the_standby_takes_over(
    control_plane: ControlPlane,
    start_operator: Callable[..., OperatorProcess],
    namespace: str,
    redis_url: str,
    workers: list[WorkerProcess],
    tmp_path: Path,
) -> None:
    queue = f"{namespace}.peered"

    def ready(generation: int) -> dict[str, Any] | None:
        found = condition(control_plane, namespace, "peered", "Ready")
        ok = found and found["status"] == "True" and found["observedGeneration"] == generation
        return found if ok else None

    def count(operator: OperatorProcess, line: str) -> int:
        return operator.log().count(line)

    # Alone, the operator of the lower priority serves the queue.
    standby = start_operator(10)
    control_plane.apply(
        activity_queue(
            "peered", namespace, redis_url, queue,
            scaling={"pollIntervalSeconds": 1, "targetPerReplica": 10, "maxReplicas": 10,
                     "scaleDownStabilizationSeconds": 0},
        )
    )  # fmt: skip
    wait_for(lambda: ready(1), what="Ready=True")
    enqueue(redis_url, queue, 30)
    wait_for(lambda: replicas(control_plane, namespace, "peered") == 3, what="3 replicas")
    assert standby.metric(UP) == 1

    # A higher priority appears: kopf pauses the first operator.
    active = start_operator(100)
    wait_for(lambda: count(standby, PAUSED), what="the lower priority paused", timeout=30)
    ups, downs = standby.metric(UP), standby.metric(DOWN)

    # Only the active operator sees this change; the paused one, had it kept scaling with
    # the spec it knew (maxReplicas 10), would set 6 replicas for 60 activities.
    control_plane.kubectl(
        "patch", "aq", "peered", "-n", namespace, "--type=merge",
        "-p", '{"spec":{"scaling":{"maxReplicas":2}}}',
    )  # fmt: skip
    wait_for(lambda: ready(2), what="generation 2 reconciled by the active operator")
    enqueue(redis_url, queue, 30)
    wait_for(lambda: replicas(control_plane, namespace, "peered") == 2, what="2 replicas")
    holds_for(
        lambda: replicas(control_plane, namespace, "peered") == 2,
        seconds=3,
        what="one writer of spec.replicas",
    )
    assert active.metric(DOWN) >= 1
    assert (standby.metric(UP), standby.metric(DOWN)) == (ups, downs)

    # The paused operator does not even poll: while the active one polls three times.
    wait_for(lambda: standby.metric(SERVED) == 0, what="the paused one serves no queue")
    polls, active_polls = standby.metric(POLLS), active.metric(POLLS)
    wait_for(lambda: active.metric(POLLS) >= active_polls + 3, what="three polls", timeout=15)
    assert standby.metric(POLLS) == polls

    # The active operator stops (its keep-alive is withdrawn): the standby resumes at once,
    # and serves the queue with the spec as it is now.
    resumed = count(standby, RESUMED)
    active.stop()
    wait_for(lambda: count(standby, RESUMED) > resumed, what="the standby resumed", timeout=30)
    wait_for(lambda: standby.metric(POLLS) >= polls + 2, what="the standby polls", timeout=15)
    holds_for(
        lambda: replicas(control_plane, namespace, "peered") == 2,
        seconds=2,
        what="maxReplicas 2 kept by the standby",
    )

    # Its autoscaler scales: the queue drains, the replicas go to zero.
    workers.append(WorkerProcess(redis_url, queue, tmp_path / "worker.log"))
    wait_for(lambda: stats(redis_url, queue).depth == 0, what="the queue drained")
    wait_for(
        lambda: replicas(control_plane, namespace, "peered") == 0,
        what="0 replicas set by the standby",
        timeout=15,
    )
    assert standby.metric(DOWN) > downs

    # With peering every queue carries kopf's finalizer (the daemon's): the serving operator
    # lets it go.
    aq = get(control_plane, "activityqueue", "peered", namespace)
    assert aq is not None and aq["metadata"]["finalizers"] == ["runnerq.io/purge-redis"]
    control_plane.kubectl(
        "delete", "aq", "peered", "-n", namespace, "--wait=true", "--timeout=60s"
    )  # fmt: skip


def test_a_missing_peering_object_is_a_warning_and_shows_in_healthz(
    control_plane: ControlPlane,
    start_operator: Callable[..., OperatorProcess],
    namespace: str,
) -> None:
    """kopf keeps an operator whose peering object is missing paused, and says so only at
    debug level: the operator warns at startup, naming the object and how to create it."""
    missing = f"{PEERING}-missing"
    operator = start_operator(5, peering=missing)
    what = f"KopfPeering '{missing}' in namespace '{namespace}' does not exist"
    warning = f"WARNING runnerq_operator.peering: peering '{missing}' is on"
    wait_for(lambda: warning in operator.log(), what="the warning", timeout=20)
    log = operator.log()
    assert what in log, log_tail(log)
    assert (
        f'"kind":"KopfPeering","metadata":{{"name":"{missing}","namespace":"{namespace}"}}' in log
    )

    def peering_health() -> dict[str, Any] | None:
        found = (operator.health() or {}).get("autoscaler", {}).get("peering")
        return found if found and found["ok"] is False else None

    # kopf caches probe results for 10 s: the first may predate the check.
    health = wait_for(peering_health, what="peering in /healthz", timeout=15)
    assert health == {
        "name": missing,
        "ok": False,
        "missing": [what.removesuffix(" does not exist")],
    }
