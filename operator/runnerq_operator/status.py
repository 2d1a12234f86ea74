"""The ActivityQueue's ``status``, built from what the operator knows. Pure."""

from __future__ import annotations

from typing import Any

from .naming import configmap_name, deployment_name, selector_string
from .scaling import Depth

__all__ = ["depth_status", "queue_status"]


def depth_status(depth: Depth) -> dict[str, int]:
    found = {
        "ready": depth.ready,
        "inFlight": depth.in_flight,
        "scheduled": depth.scheduled,
        "dueSoon": depth.due_soon,
        "deadLetter": depth.dead_letter,
    }
    if depth.eligible is not None:
        found["eligible"] = depth.eligible
    return found


def queue_status(
    *,
    name: str,
    queue: str,
    generation: int,
    conditions: list[dict[str, Any]],
    replicas: int | None,
    desired: int | None,
    depth: Depth | None,
    last_scale_time: str | None,
    last_poll_time: str | None = None,
    schedules: list[dict[str, Any]] | None = None,
    next_tick: str | None = None,
) -> dict[str, Any]:
    """The whole status (a merge patch of it replaces every field it names)."""
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "queue": queue,
        "deployment": deployment_name(name),
        "configMap": configmap_name(name),
        "selector": selector_string(name),
        "conditions": conditions,
    }
    if replicas is not None:
        status["replicas"] = replicas
    if desired is not None:
        status["desiredReplicas"] = desired
    if depth is not None:
        status["depth"] = depth_status(depth)
    if last_scale_time is not None:
        status["lastScaleTime"] = last_scale_time
    if last_poll_time is not None:
        status["lastPollTime"] = last_poll_time
    if schedules is not None:
        status["schedules"] = schedules
        status["nextTick"] = next_tick  # None (JSON null) removes it: all suspended
    return status
