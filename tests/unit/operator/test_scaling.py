"""Replica maths: workload, activation, clamping, HPA stabilization, busy pods."""

from __future__ import annotations

import math
from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st
from runnerq_operator.autoscaler import next_tick
from runnerq_operator.scaling import (
    Depth,
    Stabilizer,
    deletion_costs,
    lease_holders,
    limit_ceiling,
    recommend,
    scale_down_floor,
    workload,
)
from runnerq_operator.spec import ScalingSpec

POLICY = ScalingSpec(min_replicas=0, max_replicas=10, target_per_replica=50)


def test_500_ready_at_50_per_replica_want_10() -> None:
    decision = recommend(Depth(ready=500), POLICY)
    assert decision.replicas == 10
    assert decision.workload == 500
    assert decision.limited_by is None


def test_recommendation_rounds_up_and_counts_in_flight() -> None:
    assert recommend(Depth(ready=30, in_flight=21), POLICY).replicas == 2


def test_clamped_to_max_and_min() -> None:
    assert recommend(Depth(ready=10_000), POLICY).replicas == 10
    assert recommend(Depth(ready=10_000), POLICY).limited_by == "max"
    floor = replace(POLICY, min_replicas=2)
    assert recommend(Depth(), floor).replicas == 2
    assert recommend(Depth(), floor).limited_by == "min"


def test_empty_queue_scales_to_zero() -> None:
    decision = recommend(Depth(), POLICY)
    assert decision.replicas == 0
    assert not decision.active


def test_activation_threshold_gates_scaling_from_zero() -> None:
    policy = replace(POLICY, activation_threshold=20)
    assert recommend(Depth(ready=20), policy).replicas == 0
    assert recommend(Depth(ready=21), policy).replicas == 1


def test_inactive_queue_keeps_a_pod_for_running_activities() -> None:
    policy = replace(POLICY, activation_threshold=20)
    assert recommend(Depth(in_flight=3), policy).replicas == 1


def test_due_soon_counts_only_when_enabled() -> None:
    depth = Depth(ready=10, due_soon=100, scheduled=500)
    assert workload(depth, POLICY) == 10
    assert workload(depth, replace(POLICY, scheduled_within=60)) == 110


def test_paused_queue_counts_only_in_flight() -> None:
    assert workload(Depth(ready=400, in_flight=7, paused=True), POLICY) == 7


@given(
    ready=st.integers(0, 100_000),
    in_flight=st.integers(0, 10_000),
    low=st.integers(0, 20),
    span=st.integers(0, 50),
    target=st.integers(1, 1000),
    threshold=st.integers(0, 100),
)
def test_recommendation_properties(
    ready: int, in_flight: int, low: int, span: int, target: int, threshold: int
) -> None:
    policy = ScalingSpec(
        min_replicas=low,
        max_replicas=max(1, low + span),
        target_per_replica=target,
        activation_threshold=threshold,
    )
    decision = recommend(Depth(ready=ready, in_flight=in_flight), policy)
    assert policy.min_replicas <= decision.replicas <= policy.max_replicas
    load = ready + in_flight
    if load > threshold:
        # enough capacity for the workload unless max says otherwise
        wanted = math.ceil(load / target)
        assert decision.replicas == min(policy.max_replicas, max(policy.min_replicas, wanted))
    if in_flight > 0:
        assert decision.replicas >= 1


def test_scale_down_waits_for_the_window() -> None:
    stab = Stabilizer(now=0.0, current=5)
    # The load is gone at t=1, but 5 was recommended (recorded) within the last 10 s.
    assert stab.stabilize(1.0, 0, current=5, up_window=0, down_window=10) == 5
    assert stab.stabilize(9.0, 0, current=5, up_window=0, down_window=10) == 5
    assert stab.stabilize(10.5, 0, current=5, up_window=0, down_window=10) == 0


def test_scale_down_goes_to_highest_recent_recommendation() -> None:
    stab = Stabilizer(now=0.0, current=8)
    stab.stabilize(1.0, 6, current=8, up_window=0, down_window=5)
    stab.stabilize(2.0, 3, current=8, up_window=0, down_window=5)
    assert stab.stabilize(5.5, 1, current=8, up_window=0, down_window=5) == 6


def test_scale_up_is_immediate_without_up_window() -> None:
    stab = Stabilizer(now=0.0, current=0)
    assert stab.stabilize(0.5, 7, current=0, up_window=0, down_window=300) == 7


def test_scale_up_window_takes_the_lowest_recent_recommendation() -> None:
    stab = Stabilizer(now=0.0, current=1)
    assert stab.stabilize(1.0, 4, current=1, up_window=3, down_window=0) == 1
    assert stab.stabilize(2.0, 6, current=1, up_window=3, down_window=0) == 1
    assert stab.stabilize(3.5, 6, current=1, up_window=3, down_window=0) == 4
    assert stab.stabilize(5.5, 6, current=4, up_window=3, down_window=0) == 6


@given(st.lists(st.integers(0, 30), min_size=1, max_size=40), st.integers(0, 30))
def test_stabilized_value_is_between_current_and_recommendations(
    recommendations: list[int], current: int
) -> None:
    stab = Stabilizer(now=0.0, current=current)
    for i, rec in enumerate(recommendations, start=1):
        result = stab.stabilize(float(i), rec, current, up_window=5, down_window=5)
        window = [current, *recommendations][max(0, i - 5) : i + 1]
        assert min(window) <= result <= max(window)
        current = result


def test_scale_down_floor_keeps_busy_pods() -> None:
    assert scale_down_floor(current=5, target=1, busy_pods=3) == 3
    assert scale_down_floor(current=5, target=4, busy_pods=3) == 4
    assert scale_down_floor(current=5, target=0, busy_pods=0) == 0
    assert scale_down_floor(current=5, target=0, busy_pods=None) == 5  # unknown: hold
    assert scale_down_floor(current=2, target=6, busy_pods=None) == 6  # scaling up


def test_lease_holders_and_deletion_costs() -> None:
    tokens = ["w-abc-1:17:deadbeef:3", "w-abc-1:17:deadbeef:4", "w-xyz-2:9:cafebabe:1", "junk"]
    holders = lease_holders(tokens)
    assert holders == {"w-abc-1": 2, "w-xyz-2": 1}
    long_pod = "q" * 70
    holders[long_pod[:63]] = 5
    costs = deletion_costs(["w-abc-1", "idle-pod", long_pod], holders)
    assert costs == {"w-abc-1": 2, "idle-pod": 0, long_pod: 5}


def test_poll_ticks_are_shared_by_queues_with_the_same_interval() -> None:
    assert next_tick(12.3, 5) == 15
    assert next_tick(14.99, 5) == 15
    assert next_tick(15.0, 5) == 20
    # Queues created at different moments land on the same ticks.
    assert {next_tick(t, 5) for t in (10.1, 11.7, 13.2, 14.9)} == {15}


# -- limits (issue 18): scale on eligible work only ------------------------------------


def test_a_capped_queue_gets_no_more_than_its_concurrency_needs() -> None:
    """Concurrency 20 at 5 per pod: 4 replicas, though 10,000 are ready."""
    policy = ScalingSpec(max_replicas=50, target_per_replica=5)
    depth = Depth(ready=10_000, in_flight=20, eligible=0, max_running=20)
    decision = recommend(depth, policy, per_pod=5)
    assert decision.replicas == 4 == limit_ceiling(depth, 5)
    assert decision.limited_by == "limits"
    assert decision.by_depth == 50
    # From zero: the free slots are eligible, the rest of the backlog is not.
    assert recommend(replace(depth, in_flight=0, eligible=20), policy, per_pod=5).replicas == 4


def test_a_rate_held_backlog_counts_what_runs_and_what_may_start() -> None:
    """Rate 10/s, activities of ~3 s: about 30 in flight (Little's law) and a few tokens;
    the 5,000 held back add nothing."""
    policy = ScalingSpec(max_replicas=100, target_per_replica=10)
    depth = Depth(ready=5000, in_flight=30, eligible=2)
    assert workload(depth, policy) == 32
    assert recommend(depth, policy).replicas == 4
    assert recommend(depth, policy).limited_by == "limits"
    # No token now, nothing running: the backlog still keeps one pod (the rate lets it in).
    assert recommend(Depth(ready=5000, eligible=0), policy).replicas == 1
    # Nothing ready: nothing to keep.
    assert recommend(Depth(eligible=5), policy).replicas == 0


def test_activation_looks_at_the_whole_backlog_not_at_what_the_rate_lets_start() -> None:
    """A burst of 5 under a threshold of 20 must still wake a queue of 1,000 from zero."""
    policy = ScalingSpec(max_replicas=10, target_per_replica=10, activation_threshold=20)
    assert recommend(Depth(ready=1000, eligible=5), policy).replicas == 1
    assert recommend(Depth(ready=1000, eligible=0), policy).replicas == 1
    assert recommend(Depth(ready=15, eligible=5), policy).replicas == 0  # below it


def test_no_limits_scale_as_before() -> None:
    depth = Depth(ready=500, in_flight=20)
    assert workload(depth, POLICY) == workload(depth, POLICY, limits=False) == 520
    decision = recommend(depth, POLICY, per_pod=1)
    assert decision.replicas == decision.by_depth == 10
    assert decision.limited_by == "max"


def test_limits_that_do_not_bind_say_nothing() -> None:
    depth = Depth(ready=30, in_flight=5, eligible=30, max_running=1000)
    decision = recommend(depth, POLICY, per_pod=50)
    assert decision.replicas == 1
    assert decision.limited_by is None


@given(
    ready=st.integers(0, 100_000),
    in_flight=st.integers(0, 2_000),
    eligible=st.one_of(st.none(), st.integers(0, 1_000)),
    cap=st.one_of(st.none(), st.integers(1, 1_000)),
    per_pod=st.integers(1, 100),
    low=st.integers(0, 5),
    span=st.integers(0, 200),
    threshold=st.integers(0, 50),
    extra=st.integers(0, 100_000),
)
def test_limit_properties(
    ready: int,
    in_flight: int,
    eligible: int | None,
    cap: int | None,
    per_pod: int,
    low: int,
    span: int,
    threshold: int,
    extra: int,
) -> None:
    policy = ScalingSpec(
        min_replicas=low,
        max_replicas=max(1, low + span),
        target_per_replica=per_pod,
        activation_threshold=threshold,
    )
    if cap is not None and eligible is None:
        eligible = max(0, min(ready, cap - in_flight))
    depth = Depth(ready=ready, in_flight=in_flight, eligible=eligible, max_running=cap)
    decision = recommend(depth, policy, per_pod=per_pod)
    # Within min/max, and never more than the depth alone asks for.
    assert policy.min_replicas <= decision.replicas <= policy.max_replicas
    assert decision.by_depth is not None and decision.replicas <= decision.by_depth
    assert (
        decision.by_depth
        == recommend(replace(depth, eligible=None, max_running=None), policy).replicas
    )
    # A concurrency cap C: no more than ceil(C / per-pod concurrency) (or min, or 1 for what runs).
    if cap is not None:
        ceiling = math.ceil(cap / per_pod)
        assert decision.replicas <= max(ceiling, policy.min_replicas, 1 if in_flight else 0)
    # A backlog the limits hold back adds no pods: more ready, same eligible, same replicas.
    if eligible is not None:
        more = recommend(replace(depth, ready=ready + extra), policy, per_pod=per_pod)
        if ready >= max(eligible, 1):  # the backlog already exceeds what may start
            assert more.replicas == decision.replicas
    # Activities running keep a pod.
    if in_flight > 0:
        assert decision.replicas >= 1
    # Anything ready keeps a pod too when active (the limits let it through in time).
    if ready > 0 and threshold == 0 and (cap is None or cap > 0):
        assert decision.replicas >= min(1, policy.max_replicas)
    if decision.limited_by == "limits":
        assert decision.replicas < decision.by_depth
