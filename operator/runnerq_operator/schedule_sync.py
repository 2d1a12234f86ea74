"""spec.schedules against what the queue's Redis holds. Pure: no I/O, no clock.

``plan_sync`` says what to write (new or changed schedules; an unchanged one is left alone,
so it keeps its progress), what to remove (schedules the operator wrote that left the spec)
and what clashes (a name another owner has: code, or the API; never overwritten).
``schedules_status`` and ``schedules_condition`` say how it went, in the status.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runnerq.schedule import Schedule
from runnerq.schedules import ScheduleInfo

from .conditions import SCHEDULES_READY, Condition, timestamp

__all__ = [
    "OWNER",
    "SyncPlan",
    "clash_message",
    "earliest_tick",
    "plan_sync",
    "reported_names",
    "schedules_condition",
    "schedules_status",
]

#: The owner of the schedules the operator writes.
OWNER = "operator"
_OWNERS = {"code": "code (engine.schedule)", "api": "the API or the CLI"}


@dataclass(frozen=True, slots=True)
class SyncPlan:
    upsert: tuple[Schedule, ...] = ()
    remove: tuple[str, ...] = ()
    #: name -> the owner that has it
    clashes: Mapping[str, str] = field(default_factory=dict)


def _owner(info: ScheduleInfo) -> str | None:
    return None if info.schedule is None else info.schedule.owner


def plan_sync(wanted: Sequence[Schedule], stored: Sequence[ScheduleInfo]) -> SyncPlan:
    by_name = {info.name: info for info in stored}
    upsert: list[Schedule] = []
    clashes: dict[str, str] = {}
    for schedule in wanted:
        info = by_name.get(schedule.name)
        if info is None or info.schedule is None:  # unreadable: the upsert script decides
            upsert.append(schedule)
        elif info.schedule.owner != OWNER:
            clashes[schedule.name] = info.schedule.owner
        elif info.schedule != schedule:
            upsert.append(schedule)
    names = {s.name for s in wanted}
    remove = [i.name for i in stored if _owner(i) == OWNER and i.name not in names]
    return SyncPlan(tuple(upsert), tuple(remove), clashes)


def reported_names(
    wanted: Sequence[Schedule], stored: Sequence[ScheduleInfo], refused: bool
) -> list[str]:
    """The schedules the status shows: the spec's; while the spec's are refused, the ones
    the operator wrote before (they are the ones that fire)."""
    if refused:
        return [i.name for i in stored if _owner(i) == OWNER]
    return [s.name for s in wanted]


def _time(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return timestamp(dt.datetime.fromtimestamp(seconds, dt.UTC))


def clash_message(name: str, owner: str) -> str:
    return (
        f"schedule {name} is declared by {_OWNERS.get(owner, owner)}, not written: rename it in"
        " spec.schedules or remove the other one"
    )


def schedules_status(
    names: Sequence[str], stored: Sequence[ScheduleInfo], clashes: Mapping[str, str]
) -> list[dict[str, Any]]:
    """``status.schedules``: each schedule's progress as stored, or why it is not there."""
    by_name = {info.name: info for info in stored}
    entries: list[dict[str, Any]] = []
    for name in names:
        info = by_name.get(name)
        if name in clashes:
            entries.append({"name": name, "error": clash_message(name, clashes[name])})
            continue
        if info is None:
            entries.append({"name": name, "error": "not in Redis yet"})
            continue
        state = info.state
        entry: dict[str, Any] = {
            "name": name,
            "lastTick": _time(state.last_tick),
            "nextTick": _time(None if info.suspended else state.next_tick),
            "lastActivityId": state.last_activity_id,
            "fired": state.fired,
            "skipped": state.skipped,
            "missed": state.missed,
            "suspended": info.suspended,
            "error": info.error,
        }
        entries.append({k: v for k, v in entry.items() if v is not None})
    return entries


def earliest_tick(entries: Sequence[Mapping[str, Any]]) -> str | None:
    """``status.nextTick``: the earliest next tick (RFC 3339 in UTC sorts as text)."""
    ticks = [str(e["nextTick"]) for e in entries if e.get("nextTick")]
    return min(ticks) if ticks else None


def schedules_condition(
    problems: Sequence[str], clashes: Mapping[str, str], written: int
) -> Condition:
    if problems:
        return Condition(
            SCHEDULES_READY,
            "False",
            "InvalidSchedule",
            "spec.schedules refused, none of it written (the schedules written before go on): "
            + "; ".join(problems),
        )
    if clashes:
        return Condition(
            SCHEDULES_READY,
            "False",
            "NameClash",
            "; ".join(clash_message(n, o) for n, o in sorted(clashes.items())),
        )
    if not written:
        return Condition(SCHEDULES_READY, "True", "NoSchedules", "spec.schedules is empty")
    return Condition(
        SCHEDULES_READY, "True", "Written", f"{written} schedule(s) written to Redis and fired"
    )
