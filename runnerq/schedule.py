"""``Schedule``: an activity enqueued on a cron expression or an interval, and the pure
decision of what one firing does (``plan``).

A schedule is stored in Redis as JSON (``to_json`` / ``from_json``); its progress (next tick,
last tick, counts) beside it (``ScheduleState``). Firing is ``schedules.ScheduleFirer``.

Catch-up and deadlines, for the ticks a firer finds due:

* a tick later than ``starting_deadline`` seconds when a firer reaches it is never run
  (counted as missed), whatever the policy;
* the most recent due tick is *on time* when a firer reaches it within ``ON_TIME`` seconds:
  it runs (the normal case: a firer wakes at the tick);
* the others were *missed* while nothing was firing (workers and operator down, or the
  schedule just resumed): ``catch_up="skip"`` runs none of them, ``"latest"`` runs the most
  recent one (only when no tick is on time: one run stands for them all), ``"all"`` runs each,
  oldest first, up to ``catch_up_limit``; the rest are counted as missed.

Overlap (``concurrency``): ``"allow"`` runs every tick; ``"forbid"`` skips a tick while the
previous run is pending, scheduled, running or waiting to retry (counted as skipped);
``"replace"`` cancels the previous run, then runs the tick.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from .durations import Duration, seconds
from .errors import ConfigurationError, SerializationError
from .options import ActivityOption
from .prepare import check_type
from .priority import ActivityPriority
from .record import encode_json
from .triggers import Trigger, make_trigger

__all__ = [
    "CATCH_UP",
    "CONCURRENCY",
    "ON_TIME",
    "OWNERS",
    "Plan",
    "Schedule",
    "ScheduleState",
    "plan",
    "validate_schedule_name",
]

CATCH_UP = ("skip", "latest", "all")
CONCURRENCY = ("allow", "forbid", "replace")
OWNERS = ("code", "operator", "api")
# A firer that reaches a tick within this many seconds of it is on time.
ON_TIME = 2.0
# Ticks looked at per firing, at most: a per-second schedule that nobody fired for a month
# counts its missed ticks up to this, not all 2.6 million of them, and runs none of them
# (whatever its catch-up policy) but goes on from the next tick.
MAX_TICKS_SCANNED = 10_000
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")

CatchUp = Literal["skip", "latest", "all"]
Concurrency = Literal["allow", "forbid", "replace"]
Owner = Literal["code", "operator", "api"]


def validate_schedule_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigurationError(
            f"invalid schedule name {name!r}: use 1-100 letters, digits, '.', '_' or '-',"
            " starting with a letter or digit"
        )
    return name


@dataclass(frozen=True, slots=True, init=False)
class Schedule:
    """What to enqueue, and when. Exactly one of ``cron`` and ``every`` is given."""

    name: str
    activity_type: str
    cron: str | None
    every: float | None
    timezone: str
    payload: Any
    priority: ActivityPriority
    max_retries: int | None
    timeout: float | None
    metadata: dict[str, Any]
    catch_up: CatchUp
    catch_up_limit: int
    starting_deadline: float | None
    concurrency: Concurrency
    suspended: bool
    owner: Owner
    trigger: Trigger = field(compare=False, repr=False)

    def __init__(
        self,
        name: str,
        activity_type: str,
        *,
        cron: str | None = None,
        every: Duration | None = None,
        timezone: str = "UTC",
        payload: Any = None,
        priority: ActivityPriority | str = ActivityPriority.NORMAL,
        max_retries: int | None = None,
        timeout: Duration | None = None,
        metadata: dict[str, Any] | None = None,
        catch_up: CatchUp = "skip",
        catch_up_limit: int = 10,
        starting_deadline: Duration | None = None,
        concurrency: Concurrency = "allow",
        suspended: bool = False,
        owner: Owner = "api",
    ) -> None:
        validate_schedule_name(name)
        check_type(activity_type)
        every_s = None if every is None else seconds(every)
        if every is not None and every_s is None:
            raise ConfigurationError(f"every must be seconds or a timedelta, not {every!r}")
        trigger = make_trigger(cron, every_s, timezone)
        options = ActivityOption(
            priority=priority,  # type: ignore[arg-type]
            max_retries=max_retries,
            timeout=timeout,
            metadata=metadata,
        )
        try:
            encode_json(payload, "the schedule's payload")
        except SerializationError as exc:
            raise ConfigurationError(str(exc)) from None
        if catch_up not in CATCH_UP:
            raise ConfigurationError(
                f"catch_up must be one of {', '.join(CATCH_UP)}, not {catch_up!r}"
            )
        if (
            isinstance(catch_up_limit, bool)
            or not isinstance(catch_up_limit, int)
            or not 1 <= catch_up_limit <= 1000
        ):
            raise ConfigurationError(
                f"catch_up_limit must be a whole number from 1 to 1000, not {catch_up_limit!r}"
            )
        deadline = None if starting_deadline is None else seconds(starting_deadline)
        if starting_deadline is not None and (deadline is None or deadline <= 0):
            raise ConfigurationError(
                f"starting_deadline must be seconds or a timedelta > 0, not {starting_deadline!r}"
            )
        if concurrency not in CONCURRENCY:
            raise ConfigurationError(
                f"concurrency must be one of {', '.join(CONCURRENCY)}, not {concurrency!r}"
            )
        if not isinstance(suspended, bool):
            raise ConfigurationError(f"suspended must be true or false, not {suspended!r}")
        if owner not in OWNERS:
            raise ConfigurationError(f"owner must be one of {', '.join(OWNERS)}, not {owner!r}")
        set_ = object.__setattr__
        set_(self, "name", name)
        set_(self, "activity_type", activity_type)
        set_(self, "cron", None if cron is None else " ".join(cron.split()))
        set_(self, "every", every_s)
        set_(self, "timezone", timezone)
        set_(self, "payload", payload)
        set_(self, "priority", options.priority)
        set_(self, "max_retries", options.max_retries)
        set_(self, "timeout", options.timeout)
        set_(self, "metadata", options.metadata)
        set_(self, "catch_up", catch_up)
        set_(self, "catch_up_limit", catch_up_limit)
        set_(self, "starting_deadline", deadline)
        set_(self, "concurrency", concurrency)
        set_(self, "suspended", suspended)
        set_(self, "owner", owner)
        set_(self, "trigger", trigger)

    def replace(self, **changes: Any) -> Schedule:
        values = self.to_dict()
        values.update(changes)
        return Schedule.from_dict(values)

    # -- stored form -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        doc = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "trigger"}
        doc["priority"] = self.priority.value
        return doc

    def to_json(self) -> str:
        return encode_json(self.to_dict(), "the schedule")

    @classmethod
    def from_dict(cls, doc: Any) -> Schedule:
        """A schedule from its dict form; ``ConfigurationError`` for an unknown field or a
        bad value (nothing is guessed or dropped)."""
        if not isinstance(doc, dict):
            raise ConfigurationError(f"a schedule is an object, not {type(doc).__name__}")
        unknown = sorted(set(doc) - _STORED_FIELDS)
        if unknown:
            raise ConfigurationError(f"unknown schedule field(s): {', '.join(unknown)}")
        values = dict(doc)
        try:
            name = values.pop("name")
            activity_type = values.pop("activity_type")
        except KeyError as exc:
            raise ConfigurationError(f"a schedule needs {exc.args[0]!r}") from None
        return cls(name, activity_type, **values)

    @classmethod
    def from_json(cls, text: str) -> Schedule:
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise ConfigurationError(f"stored schedule is not JSON: {exc}") from None
        return cls.from_dict(doc)


# The fields of a schedule's stored form (every field but the trigger, made from them).
_STORED_FIELDS = frozenset(f.name for f in fields(Schedule)) - {"trigger"}


@dataclass(frozen=True, slots=True)
class ScheduleState:
    """A schedule's progress, as stored beside it (times in epoch seconds)."""

    next_tick: float | None = None  # None: suspended
    last_tick: float | None = None
    last_activity_id: str | None = None
    fired: int = 0
    skipped: int = 0  # overlap (concurrency "forbid")
    missed: int = 0  # catch-up and starting deadline
    version: str = ""  # made from the definition: changes with it, and so do the tick ids

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_hash(cls, values: dict[str, str]) -> ScheduleState:
        def number(name: str) -> float | None:
            value = values.get(name)
            return None if value is None or value in ("", "-1") else float(value) / 1000.0

        return cls(
            next_tick=number("next_tick"),
            last_tick=number("last_tick"),
            last_activity_id=values.get("last_activity_id") or None,
            fired=int(values.get("fired", 0)),
            skipped=int(values.get("skipped", 0)),
            missed=int(values.get("missed", 0)),
            version=values.get("version", ""),
        )


@dataclass(frozen=True, slots=True)
class Plan:
    """What one firing does: the ticks to run (oldest first), how many were missed, and the
    next tick to wait for."""

    ticks: tuple[float, ...]
    missed: int
    next_tick: float


def plan(schedule: Schedule, stored_next: float, now: float) -> Plan:
    """The firing of ``schedule`` at ``now`` (Redis's clock) when its stored next tick is
    ``stored_next`` (see the module's text for the rules)."""
    trigger = schedule.trigger
    if stored_next > now:
        return Plan((), 0, stored_next)
    due: list[float] = []
    tick = stored_next
    scanned = 0
    while tick <= now and scanned < MAX_TICKS_SCANNED:
        due.append(tick)
        tick = trigger.next_after(tick)
        scanned += 1
    if tick <= now:  # too many to look at: all missed, on to the first tick from now
        return Plan((), scanned, trigger.next_after(now))
    next_tick = tick
    deadline = schedule.starting_deadline
    live = due if deadline is None else [t for t in due if now - t <= deadline]
    dropped = len(due) - len(live)
    if not live:
        return Plan((), dropped, next_tick)
    on_time = now - live[-1] <= ON_TIME
    missed = live[:-1] if on_time else live
    run: list[float] = []
    if on_time:
        run.append(live[-1])
    if schedule.catch_up == "all":
        run[:0] = missed[-schedule.catch_up_limit :]
    elif schedule.catch_up == "latest" and not on_time and missed:
        run.append(missed[-1])
    not_run = len(due) - len(run)
    assert not_run >= 0 and all(math.isfinite(t) for t in run)
    return Plan(tuple(run), not_run, next_tick)
