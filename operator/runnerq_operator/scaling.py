"""Replica maths: pure functions, no I/O.

The shape follows the Kubernetes HPA and KEDA (docs/operator.md compares them):

1. *Workload* = ready + in flight (+ scheduled activities due within ``scheduled_within``).
   A paused queue's ready activities cannot be claimed, so only its in-flight ones count.
2. *Activation* (KEDA): the queue is active when the workload exceeds
   ``activation_threshold``. An inactive queue recommends zero replicas (then clamped to
   ``min_replicas``), so a queue scales from zero only past the threshold.
3. *Recommendation*: ``ceil(workload / target_per_replica)``, clamped to
   ``[min_replicas, max_replicas]``. This is the HPA's ``AverageValue`` target on an external
   metric, with no tolerance band: queue depth is an exact count, not a noisy sample.
4. *Stabilization* (HPA ``behavior``): scale up to the lowest recommendation of the scale-up
   window, down to the highest of the scale-down window; otherwise keep the current count.
5. *Busy pods*: never scale below the number of pods holding leases (their activities would
   be interrupted). When that number is unknown, do not scale down at all.

*Limits* (issue 18, docs/operator.md "Limits and scaling"): when the queue has its own rate or
concurrency limit, only *eligible* work counts. Ready activities count up to ``eligible``
(what the queue's limits let start now: its free concurrency slots and the rate's tokens, as
``runnerq.LimitStats.eligible``); in-flight ones count as before. Under a rate, by Little's
law, the in-flight count settles at rate x activity duration, which is what that rate needs,
with no guess of the duration; a backlog the rate holds back adds nothing. A held-back
backlog with nothing running still counts one (the rate lets it through, it needs a pod).
A queue concurrency ``C`` also caps the recommendation at ``ceil(C / per-pod concurrency)``:
more pods could not run anything. Activation (step 2) still looks at the whole backlog:
limits decide how many pods, not whether there is work. Per-type and per-key limits are not
counted (they hold back only some types or keys, which the depth does not tell apart).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .spec import ScalingSpec

__all__ = [
    "DELETION_COST_ANNOTATION",
    "Decision",
    "Depth",
    "Stabilizer",
    "deletion_costs",
    "lease_holders",
    "limit_ceiling",
    "recommend",
    "scale_down_floor",
    "workload",
]

DELETION_COST_ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"
_HOSTNAME_MAX = 63  # a pod's hostname is its name cut to 63 characters


@dataclass(frozen=True, slots=True)
class Depth:
    """One queue's activities by state, as read from Redis in one poll."""

    ready: int = 0
    in_flight: int = 0
    scheduled: int = 0
    due_soon: int = 0
    dead_letter: int = 0
    paused: bool = False
    #: Ready activities the queue's own limits let start now; None: the queue has no rate
    #: or concurrency limit of its own.
    eligible: int | None = None
    #: The queue's concurrency limit, None when it has none.
    max_running: int | None = None
    #: Limit keys a handler holds back now (``RateLimitedError(hold="key")``).
    held_keys: int = 0


@dataclass(frozen=True, slots=True)
class Decision:
    """A recommendation before stabilization, and why."""

    replicas: int
    workload: int
    active: bool
    #: "max" or "min" when the clamp changed the raw recommendation, "limits" when the
    #: queue's limits recommend fewer replicas than its depth would, else None.
    limited_by: str | None
    #: The replicas the depth alone would ask for (equal to ``replicas`` unless limits).
    by_depth: int | None = None


def workload(depth: Depth, scaling: ScalingSpec, *, limits: bool = True) -> int:
    """Activities that want a worker slot now: with the queue's limits (unless ``limits`` is
    False), the ready ones count up to what those limits let start."""
    due = depth.due_soon if scaling.scheduled_within > 0 else 0
    if depth.paused:
        return depth.in_flight
    if not limits or depth.eligible is None:
        return depth.ready + depth.in_flight + due
    waiting = depth.ready + due
    eligible = min(waiting, max(0, depth.eligible))
    if eligible == 0 and waiting > 0 and depth.in_flight == 0:
        eligible = 1  # held back by a rate: it lets the next through soon, on some pod
    if depth.max_running is not None:  # also bounds what is due soon
        eligible = min(eligible, max(0, depth.max_running - depth.in_flight))
        if waiting > 0 and depth.in_flight == 0:
            eligible = max(eligible, 1)
    return depth.in_flight + eligible


def limit_ceiling(depth: Depth, per_pod: int) -> int | None:
    """The most replicas the queue's concurrency limit can keep busy: ``ceil(C / per_pod)``
    (None: no such limit)."""
    if depth.max_running is None:
        return None
    return math.ceil(depth.max_running / max(1, per_pod))


def _raw(load: int, in_flight: int, active: bool, scaling: ScalingSpec) -> int:
    raw = math.ceil(load / scaling.target_per_replica) if active else 0
    if in_flight > 0:
        # Inactive by threshold, yet activities run: keep room for them (never below one pod).
        raw = max(raw, 1)
    return raw


def recommend(depth: Depth, scaling: ScalingSpec, per_pod: int | None = None) -> Decision:
    """Steps 1-3: the replica count this depth asks for, within min/max; on eligible work
    only when the queue has limits (``per_pod``: the worker's concurrency, for the cap;
    ``scaling.target_per_replica`` when not given)."""
    # Activation looks at the whole backlog: limits decide how many pods, not whether any
    # (a rate's burst below the threshold would otherwise never wake a queue from zero).
    by_depth_load = workload(depth, scaling, limits=False)
    active = by_depth_load > scaling.activation_threshold
    load = workload(depth, scaling)
    raw = _raw(load, depth.in_flight, active, scaling)
    ceiling = limit_ceiling(depth, per_pod or scaling.target_per_replica)
    if ceiling is not None:
        raw = min(raw, max(ceiling, 1 if depth.in_flight else 0))
    by_depth_raw = _raw(by_depth_load, depth.in_flight, active, scaling)
    replicas = min(scaling.max_replicas, max(scaling.min_replicas, raw))
    by_depth = min(scaling.max_replicas, max(scaling.min_replicas, by_depth_raw))
    limited = "max" if raw > replicas else "min" if raw < replicas else None
    if limited is None and replicas < by_depth:
        limited = "limits"
    return Decision(
        replicas=replicas, workload=load, active=active, limited_by=limited, by_depth=by_depth
    )


class Stabilizer:
    """Step 4: the HPA's stabilization windows over a history of recommendations.

    The history starts with the current replica count, recorded when the stabilizer is made
    (at operator start or when the queue is first seen), so that a restarted operator does
    not scale down before a whole scale-down window has passed.
    """

    def __init__(self, now: float, current: int) -> None:
        self._history: deque[tuple[float, int]] = deque([(now, current)])

    def stabilize(
        self, now: float, recommendation: int, current: int, up_window: float, down_window: float
    ) -> int:
        self._history.append((now, recommendation))
        horizon = now - max(up_window, down_window)
        while len(self._history) > 1 and self._history[0][0] < horizon:
            self._history.popleft()
        up = min(r for t, r in self._history if t >= now - up_window)
        down = max(r for t, r in self._history if t >= now - down_window)
        if current < up:
            return up
        if current > down:
            return down
        return current

    def settles_at(
        self, wanted: int, held: int, up_window: float, down_window: float
    ) -> float | None:
        """When a count ``held`` by a window reaches ``wanted``, if every recommendation from
        now on is ``wanted``: the moment the last recommendation on ``held``'s side of it
        leaves its window (None when there is none). On the same clock as ``now``."""
        if held > wanted:
            times, window = [t for t, r in self._history if r > wanted], down_window
        else:
            times, window = [t for t, r in self._history if r < wanted], up_window
        return max(times) + window if times else None


def scale_down_floor(current: int, target: int, busy_pods: int | None) -> int:
    """Step 5: ``target``, raised so that no pod holding leases is asked to go.

    ``busy_pods`` is the number of the Deployment's pods with activities in flight, or None
    when it could not be read: then the current count is kept.
    """
    if target >= current:
        return target
    if busy_pods is None:
        return current
    return min(current, max(target, busy_pods))


def lease_holders(tokens: Iterable[str]) -> dict[str, int]:
    """Leases held per hostname, from lease tokens ``<host>:<pid>:<id>:<seq>``."""
    held: dict[str, int] = {}
    for token in tokens:
        host = token.rsplit(":", 3)[0] if token.count(":") >= 3 else ""
        if host:
            held[host] = held.get(host, 0) + 1
    return held


def deletion_costs(pods: Iterable[str], holders: Mapping[str, int]) -> dict[str, int]:
    """``pod-deletion-cost`` per pod: the leases it holds (0 for idle pods), so the
    ReplicaSet removes idle pods first when the Deployment scales down."""
    return {pod: holders.get(pod[:_HOSTNAME_MAX], 0) for pod in pods}
