"""spec.limits end to end: a real kube-apiserver, redis-server and the operator as a process
(no worker: the depth alone is what the operator sees)."""

from __future__ import annotations

import asyncio
import json
import subprocess
from typing import Any

import pytest

from runnerq import ActivityClient, Limits, Rate, TypeLimit

from .cluster import ControlPlane
from .operator_harness import (
    OperatorProcess,
    activity_queue,
    condition,
    enqueue,
    get,
    holds_for,
    queue_config,
    replicas,
)
from .waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def stored_limits(redis_url: str, queue: str) -> Limits:
    async def run() -> Limits:
        async with ActivityClient(redis_url, queue) as client:
            return await client.get_limits()

    return asyncio.run(run())


def test_a_capped_queue_stops_at_the_replicas_its_concurrency_needs(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str, redis_url: str
) -> None:
    """Concurrency 6 at 2 per pod: 3 replicas, though 200 ready ask for 10 (maxReplicas)."""
    queue = f"{namespace}.capped"
    control_plane.apply(
        activity_queue(
            "capped", namespace, redis_url, queue,
            worker={"concurrency": 2},
            scaling={"minReplicas": 0, "maxReplicas": 10, "pollIntervalSeconds": 1},
            limits={"concurrency": 6},
        )
    )  # fmt: skip
    wait_for(lambda: stored_limits(redis_url, queue) == Limits(concurrency=6), what="written")
    enqueue(redis_url, queue, 200)
    wait_for(lambda: replicas(control_plane, namespace, "capped") == 3, what="3 replicas")
    holds_for(lambda: replicas(control_plane, namespace, "capped") == 3, 4.0, what="held at 3")
    found = condition(control_plane, namespace, "capped", "Scaling")
    assert found is not None and found["reason"] == "LimitedByQueueLimits", found
    assert "concurrency 6" in found["message"]
    status = (get(control_plane, "activityqueue", "capped", namespace) or {})["status"]
    assert status["depth"]["ready"] == 200 and status["depth"]["eligible"] == 6
    assert status["desiredReplicas"] == 3

    # The cap raised on the ActivityQueue: more replicas, up to maxReplicas.
    patch = [{"op": "replace", "path": "/spec/limits/concurrency", "value": 100}]
    control_plane.kubectl(
        "patch", "aq", "capped", "-n", namespace, "--type=json", "-p", json.dumps(patch)
    )
    wait_for(lambda: replicas(control_plane, namespace, "capped") == 10, what="10 replicas")
    wait_for(
        lambda: (
            (c := condition(control_plane, namespace, "capped", "Scaling"))
            and c["reason"] == "AtMaxReplicas"
        ),
        what="Scaling AtMaxReplicas",
    )


def test_a_backlog_held_back_by_a_rate_adds_no_pods(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str, redis_url: str
) -> None:
    """Rate 1 per hour, burst 2, nothing running: 2 may start, 1 replica at 2 per pod,
    though 200 ready ask for 10."""
    queue = f"{namespace}.rated"
    control_plane.apply(
        activity_queue(
            "rated", namespace, redis_url, queue,
            worker={"concurrency": 2},
            scaling={"minReplicas": 0, "maxReplicas": 10, "pollIntervalSeconds": 1},
            limits={"rate": {"limit": 1, "periodSeconds": 3600, "burst": 2}},
        )
    )  # fmt: skip
    wait_for(lambda: stored_limits(redis_url, queue).rate is not None, what="written")
    enqueue(redis_url, queue, 200)
    wait_for(lambda: replicas(control_plane, namespace, "rated") == 1, what="1 replica")
    holds_for(lambda: replicas(control_plane, namespace, "rated") == 1, 4.0, what="held at 1")
    found = condition(control_plane, namespace, "rated", "Scaling")
    assert found is not None and found["reason"] == "LimitedByQueueLimits", found
    assert "its rate" in found["message"]


def test_limits_changed_on_the_activity_queue_reach_redis(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str, redis_url: str
) -> None:
    queue = f"{namespace}.changed"
    limits = {
        "rate": {"limit": 50, "burst": 10},
        "types": {"pdf": {"concurrency": 2, "rate": {"limit": 6, "periodSeconds": 60}}},
    }
    control_plane.apply(
        activity_queue(
            "changed", namespace, redis_url, queue, queueConfig={"maxRetries": 4}, limits=limits
        )
    )
    expected = Limits(
        rate=Rate(50, 1, burst=10),
        types={"pdf": TypeLimit(rate=Rate(6, 60), concurrency=2)},
    )
    wait_for(lambda: stored_limits(redis_url, queue) == expected, what="limits written")

    patch = [{"op": "replace", "path": "/spec/limits", "value": {"concurrency": 3}}]
    control_plane.kubectl(
        "patch", "aq", "changed", "-n", namespace, "--type=json", "-p", json.dumps(patch)
    )
    wait_for(lambda: stored_limits(redis_url, queue) == Limits(concurrency=3), what="changed")

    remove = [{"op": "remove", "path": "/spec/limits"}]
    control_plane.kubectl(
        "patch", "aq", "changed", "-n", namespace, "--type=json", "-p", json.dumps(remove)
    )
    wait_for(lambda: "limits" not in queue_config(redis_url, queue), what="removed")
    assert queue_config(redis_url, queue)["max_retries"] == "4"  # the rest stays


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        ({"rate": {"limit": -5}}, "a rate's limit, periodSeconds and burst must be positive"),
        ({"rate": {"limit": 5, "periodSeconds": 0}}, "periodSeconds and burst must be positive"),
        ({"keys": {"rate": {"limit": 1, "burst": 0}}}, "periodSeconds and burst must be positive"),
        ({"concurrency": 0}, "a concurrency limit must be positive"),
        ({"types": {"pdf": {"concurrency": -1}}}, "a concurrency limit must be positive"),
        ({"rate": {"periodSeconds": 5}}, "spec.limits.rate.limit: Required value"),
        ({"keys": {"tenant": 1}}, ".spec.limits.keys.tenant: field not declared in schema"),
    ],
)
def test_invalid_limits_are_refused_by_the_api_server(
    control_plane: ControlPlane, crd: str, namespace: str, limits: Any, message: str
) -> None:
    bad = activity_queue("bad", namespace, "redis://r:6379", "q", limits=limits)
    with pytest.raises(subprocess.CalledProcessError) as refused:
        control_plane.apply(bad)
    assert message in refused.value.stderr
