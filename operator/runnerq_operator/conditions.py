"""Status conditions as the Kubernetes API conventions describe them (metav1.Condition):
``type``, ``status`` (True/False/Unknown), ``observedGeneration``, ``lastTransitionTime``
(changes only when ``status`` does), a CamelCase ``reason`` and a human ``message``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "READY",
    "REDIS_REACHABLE",
    "SCALING",
    "SCHEDULES_READY",
    "Condition",
    "find",
    "merge_conditions",
    "timestamp",
]

READY = "Ready"
REDIS_REACHABLE = "RedisReachable"
SCALING = "Scaling"
SCHEDULES_READY = "SchedulesReady"
_ORDER = (READY, REDIS_REACHABLE, SCALING, SCHEDULES_READY)

Status = Literal["True", "False", "Unknown"]


def timestamp(now: dt.datetime | None = None) -> str:
    """RFC 3339 in UTC with second precision, as the API server writes metav1.Time."""
    now = now or dt.datetime.now(dt.UTC)
    return now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class Condition:
    type: str
    status: Status
    reason: str
    message: str = ""

    def __post_init__(self) -> None:
        if not self.reason or not self.reason[0].isupper() or not self.reason.isalnum():
            raise ValueError(f"condition reason must be CamelCase, not {self.reason!r}")


def find(conditions: Iterable[Mapping[str, Any]], type_: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions if c.get("type") == type_), None)


def merge_conditions(
    existing: Sequence[Mapping[str, Any]] | None,
    updates: Iterable[Condition],
    generation: int,
    now: str,
) -> list[dict[str, Any]]:
    """The conditions after ``updates``: a transition time that moves only when the status
    changes, every updated condition stamped with ``generation``, others kept as they were.
    """
    merged: dict[str, dict[str, Any]] = {
        str(c["type"]): dict(c) for c in existing or () if "type" in c
    }
    for update in updates:
        old = merged.get(update.type)
        if old is None or old.get("status") != update.status:
            since = now
        else:
            since = old.get("lastTransitionTime") or now
        merged[update.type] = {
            "type": update.type,
            "status": update.status,
            "observedGeneration": generation,
            "lastTransitionTime": since,
            "reason": update.reason,
            "message": update.message,
        }
    rank = {t: i for i, t in enumerate(_ORDER)}
    return sorted(merged.values(), key=lambda c: (rank.get(c["type"], len(rank)), c["type"]))
