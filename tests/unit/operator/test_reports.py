"""What the operator says: scale decisions, Redis losses and returns, replica corrections,
and when a stabilization window lets the replicas go."""

from __future__ import annotations

from runnerq_operator.registry import replicas_drifted
from runnerq_operator.reports import (
    queue_label,
    redis_back,
    redis_lost,
    replicas_restored,
    scale_reason,
    settle_time,
    stabilizing,
)
from runnerq_operator.scaling import Decision, Depth, Stabilizer
from runnerq_operator.spec import ScalingSpec


def test_a_scale_reason_says_from_to_and_why() -> None:
    scaling = ScalingSpec(target_per_replica=50, max_replicas=20)
    depth = Depth(ready=480, in_flight=20)
    decision = Decision(replicas=10, workload=500, active=True, limited_by=None)
    assert scale_reason(0, 10, decision, depth, scaling) == (
        "0 -> 10 replicas: 500 activities (ready 480, in flight 20, due soon 0) at 50 per replica"
    )
    capped = Decision(replicas=20, workload=5000, active=True, limited_by="max")
    assert scale_reason(3, 20, capped, depth, scaling).endswith("(limited to maxReplicas 20)")
    busy = Decision(replicas=0, workload=0, active=False, limited_by=None)
    assert "0 recommended, pods still run activities" in scale_reason(4, 2, busy, depth, scaling)


def test_queue_label_names_the_queue_and_the_resource() -> None:
    assert queue_label("emails", "prod", "mail") == "queue emails (prod/mail)"


def test_redis_messages_say_what_is_held_and_how_old_the_depth_is() -> None:
    text = redis_lost("Error 111 connecting", 4, "2026-01-02T03:04:05Z")
    assert text == (
        "Redis unreachable: Error 111 connecting; keeping 4 replicas until Redis answers;"
        " the depth shown was read at 2026-01-02T03:04:05Z"
    )
    assert redis_lost("boom", None, None) == "Redis unreachable: boom"
    assert redis_back(21.6) == "Redis answers again after 22s"


def test_replicas_restored_says_both_counts() -> None:
    text = replicas_restored(1, 3)
    assert "set to 1 outside the operator; restored to 3" in text


def test_drift_is_a_later_generation_with_other_replicas() -> None:
    assert replicas_drifted(1, 5, 3, 4)  # kubectl scale after the operator's write
    assert not replicas_drifted(3, 5, 3, 4)  # a later change that kept the replicas
    assert not replicas_drifted(1, 4, 3, 4)  # the operator's own write, seen late
    assert not replicas_drifted(1, 3, 3, 4)  # an older event
    assert not replicas_drifted(1, 5, None, 4)  # no decision yet
    assert not replicas_drifted(1, 5, 3, None)
    assert not replicas_drifted(None, 5, 3, 4)


def test_settles_at_is_when_the_last_higher_recommendation_leaves_the_window() -> None:
    stabilizer = Stabilizer(0.0, 5)
    for now, wanted in ((10.0, 5), (20.0, 3), (30.0, 0)):
        stabilizer.stabilize(now, wanted, 5, 0.0, 300.0)
    # Held at 5 on the way down to 0: the 3 at t=20 is the last recommendation above 0.
    assert stabilizer.settles_at(0, 5, 0.0, 300.0) == 320.0
    assert stabilizer.settles_at(3, 5, 0.0, 300.0) == 310.0
    assert Stabilizer(0.0, 2).settles_at(2, 2, 0.0, 300.0) is None  # nothing holds it


def test_settles_at_on_the_way_up_looks_at_the_scale_up_window_only() -> None:
    stabilizer = Stabilizer(0.0, 10)  # a busy past: 10 within the 300 s scale-down window
    stabilizer.stabilize(5.0, 0, 10, 60.0, 300.0)
    stabilizer.stabilize(50.0, 4, 0, 60.0, 300.0)
    # Held at 0 on the way up to 4: the 0 at t=5 leaves the 60 s window at 65, whatever
    # the scale-down window still holds.
    assert stabilizer.settles_at(4, 0, 60.0, 300.0) == 65.0


def test_stabilizing_says_when_the_replicas_go() -> None:
    scaling = ScalingSpec(scale_down_window=300.0)
    when = settle_time(1_767_225_600.2, 1000.0, 1150.0)  # 150 s from 2026-01-01T00:00:00.2Z
    assert when == "2026-01-01T00:02:31Z"
    assert stabilizing(0, 5, when, scaling) == (
        "0 replicas recommended; keeping 5 within the window (scaleDownStabilizationSeconds"
        " 300): scaling down to 0 at 2026-01-01T00:02:31Z if the queue stays as it is"
    )
    assert "scaleUpStabilizationSeconds 0" in stabilizing(4, 1, None, ScalingSpec())
