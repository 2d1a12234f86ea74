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


@dataclass(frozen=True, slots=True)
class Decision:
    """A recommendation before stabilization, and why."""

    replicas: int
    workload: int
    active: bool
    #: "max" or "min" when the clamp changed the raw recommendation, else None.
    limited_by: str | None


def workload(depth: Depth, scaling: ScalingSpec) -> int:
    """Activities that want a worker slot now."""
    due = depth.due_soon if scaling.scheduled_within > 0 else 0
    if depth.paused:
        return depth.in_flight
    return depth.ready + depth.in_flight + due


def recommend(depth: Depth, scaling: ScalingSpec) -> Decision:
    """Steps 1-3: the replica count this depth asks for, within min/max."""
    load = workload(depth, scaling)
    active = load > scaling.activation_threshold
    raw = math.ceil(load / scaling.target_per_replica) if active else 0
    if depth.in_flight > 0:
        # Inactive by threshold, yet activities run: keep room for them (never below one pod).
        raw = max(raw, 1)
    replicas = min(scaling.max_replicas, max(scaling.min_replicas, raw))
    limited = "max" if raw > replicas else "min" if raw < replicas else None
    return Decision(replicas=replicas, workload=load, active=active, limited_by=limited)


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
