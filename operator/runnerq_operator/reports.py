"""What the operator says about a queue: the one-line messages of its scale decisions, Redis
losses and returns and replica corrections, shared by its log, its Events and its conditions.
Pure: no I/O, no clock.
"""

from __future__ import annotations

import datetime as dt
import math

from .conditions import timestamp
from .scaling import Decision, Depth
from .spec import ScalingSpec

__all__ = [
    "depth_words",
    "limits_words",
    "queue_label",
    "redis_back",
    "redis_lost",
    "replicas_restored",
    "scale_reason",
    "settle_time",
    "stabilizing",
]


def queue_label(queue: str, namespace: str, name: str) -> str:
    """``queue emails (ns/emails)``: how every log line names the queue."""
    return f"queue {queue} ({namespace}/{name})"


def depth_words(depth: Depth) -> str:
    return f"ready {depth.ready}, in flight {depth.in_flight}, due soon {depth.due_soon}"


def scale_reason(
    current: int, target: int, decision: Decision, depth: Depth, scaling: ScalingSpec
) -> str:
    """``3 -> 10 replicas: 500 activities (ready ..) at 50 per replica``, and what held it back
    from the recommendation when something did."""
    text = (
        f"{current} -> {target} replicas: {decision.workload} activities ({depth_words(depth)})"
        f" at {scaling.target_per_replica} per replica"
    )
    if target != decision.replicas:
        text += f"; {decision.replicas} recommended, pods still run activities"
    elif decision.limited_by == "max":
        text += f" (limited to maxReplicas {scaling.max_replicas})"
    elif decision.limited_by == "min":
        text += f" (kept at minReplicas {scaling.min_replicas})"
    elif decision.limited_by == "limits":
        eligible = depth.eligible if depth.eligible is not None else depth.ready
        text += (
            f" (the queue's limits, {limits_words(depth)}: {eligible} of {depth.ready} ready"
            f" may start now; the depth alone asks for {decision.by_depth})"
        )
    return text


def limits_words(depth: Depth) -> str:
    """The queue's own limits, in words that do not change from poll to poll."""
    if depth.max_running is None:
        return "its rate"
    return f"concurrency {depth.max_running}"


def settle_time(now_wall: float, now: float, settles_at: float) -> str:
    """The wall-clock time (RFC 3339, whole seconds rounded up) of ``settles_at``, a moment
    on the monotonic clock whose current reading is ``now``."""
    wall = math.ceil(now_wall + max(0.0, settles_at - now))
    return timestamp(dt.datetime.fromtimestamp(wall, dt.UTC))


def stabilizing(wanted: int, stabilized: int, when: str | None, scaling: ScalingSpec) -> str:
    """The Scaling condition while a stabilization window holds the replicas back."""
    if stabilized > wanted:
        window = f"scaleDownStabilizationSeconds {scaling.scale_down_window:g}"
        verb = "down"
    else:
        window = f"scaleUpStabilizationSeconds {scaling.scale_up_window:g}"
        verb = "up"
    text = f"{wanted} replicas recommended; keeping {stabilized} within the window ({window})"
    if when is not None:
        text += f": scaling {verb} to {wanted} at {when} if the queue stays as it is"
    return text


def redis_lost(error: str, replicas: int | None, depth_read_at: str | None) -> str:
    held = f"keeping {replicas} replicas until Redis answers" if replicas is not None else ""
    text = f"Redis unreachable: {error}"
    if held:
        text += f"; {held}"
    if depth_read_at is not None:
        text += f"; the depth shown was read at {depth_read_at}"
    return text


def redis_back(down_seconds: float | None) -> str:
    if down_seconds is None:
        return "Redis answers again"
    return f"Redis answers again after {down_seconds:.0f}s"


def replicas_restored(found: int, restored: int) -> str:
    return (
        f"the Deployment's replicas were set to {found} outside the operator; restored to"
        f" {restored}, the operator's decision (scaling.mode External hands them to the scale"
        " subresource)"
    )
