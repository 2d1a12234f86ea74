"""What the operator says when the queue's limits decide the replicas: status.depth, the
Scaling condition, the scale Event's words, the depth gauge."""

from __future__ import annotations

from typing import cast

from runnerq_operator.actions import QueueWriter
from runnerq_operator.autoscaler import Autoscaler, _scaling_condition
from runnerq_operator.metrics import OperatorMetrics
from runnerq_operator.redis_queues import RedisPools
from runnerq_operator.registry import QueueRegistry, QueueState
from runnerq_operator.reports import scale_reason
from runnerq_operator.scaling import Depth, recommend
from runnerq_operator.settings import OperatorConfig
from runnerq_operator.spec import ScalingSpec
from runnerq_operator.status import depth_status

from tests.unit.operator.test_peering import register

POLICY = ScalingSpec(max_replicas=10, target_per_replica=2)
CAPPED = Depth(ready=200, eligible=6, max_running=6)


def test_status_depth_has_eligible_only_with_queue_limits() -> None:
    assert depth_status(CAPPED)["eligible"] == 6
    assert "eligible" not in depth_status(Depth(ready=200))


def test_the_condition_and_the_event_say_the_limits_decide() -> None:
    decision = recommend(CAPPED, POLICY, per_pod=2)
    assert (decision.replicas, decision.by_depth, decision.limited_by) == (3, 10, "limits")
    found = _scaling_condition(decision, 3, 3, 3, CAPPED)
    assert (found.status, found.reason) == ("True", "LimitedByQueueLimits")
    assert found.message.startswith("3 replicas: the queue's limits (concurrency 6) decide")
    # The message does not change with the depth (each change would be a status patch).
    later = Depth(ready=150, in_flight=6, eligible=0, max_running=6)
    assert _scaling_condition(recommend(later, POLICY, 2), 3, 3, 3, later) == found
    why = scale_reason(0, 3, decision, CAPPED, POLICY)
    assert why.endswith(
        "(the queue's limits, concurrency 6: 6 of 200 ready may start now;"
        " the depth alone asks for 10)"
    )
    rate = Depth(ready=500, in_flight=4, eligible=1)
    assert "the queue's limits, its rate: 1 of 500" in scale_reason(
        0, 3, recommend(rate, POLICY), rate, POLICY
    )


def _exporter() -> tuple[QueueState, OperatorMetrics, Autoscaler, dict[str, str]]:
    """One registered queue and an autoscaler that only exports (no Redis, no Kubernetes)."""
    registry = QueueRegistry(gated=False)
    state = register(registry)
    metrics = OperatorMetrics()
    scaler = Autoscaler(
        registry,
        cast(QueueWriter, None),
        cast(RedisPools, None),
        metrics,
        OperatorConfig(),
    )
    return state, metrics, scaler, {"namespace": "ns", "name": "emails", "queue": state.spec.queue}


def test_the_depth_gauge_has_eligible_while_the_queue_has_limits() -> None:
    state, metrics, scaler, labels = _exporter()

    def sample() -> float | None:
        return metrics.registry.get_sample_value(
            "runnerq_operator_queue_depth", {**labels, "state": "eligible"}
        )

    scaler._export_depth(state, CAPPED)
    assert sample() == 6
    scaler._export_depth(state, Depth(ready=200))  # limits removed: the series goes
    assert sample() is None
    scaler._export_depth(state, CAPPED)
    metrics.forget("ns", "emails", state.spec.queue)
    assert sample() is None


def test_the_held_keys_gauge_follows_the_depth_read() -> None:
    state, metrics, scaler, labels = _exporter()

    def sample() -> float | None:
        return metrics.registry.get_sample_value("runnerq_operator_held_keys", labels)

    scaler._export_depth(state, Depth(ready=5, held_keys=3))
    assert sample() == 3
    scaler._export_depth(state, Depth(ready=5))
    assert sample() == 0
    metrics.forget("ns", "emails", state.spec.queue)
    assert sample() is None
