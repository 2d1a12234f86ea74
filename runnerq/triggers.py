"""When a schedule fires: a cron expression in a time zone, or a fixed interval.

A small interface of our own (``Trigger.next_after``) over the cron library, cronsim (see
docs/adr/0002-cron-library.md for the choice). Times are epoch seconds; ticks are whole
seconds.

Cron expressions have 5 fields (minute hour day-of-month month day-of-week) or 6 with the
seconds first. Daylight-saving time follows Debian cron, for both forms: a time that the
clocks skip (a tick in the hour that does not happen) fires once, at the transition; a time
that happens twice (the hour that repeats) fires once, the first time; ticks with a wildcard
hour (``*/30 * * * *``) follow the real hours, so they fire in both copies of a repeated
hour and not in a skipped one.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from .errors import ConfigurationError

__all__ = ["CronTrigger", "IntervalTrigger", "Trigger", "make_trigger", "zone"]


class Trigger(Protocol):
    def next_after(self, t: float) -> float:
        """The first tick strictly after ``t`` (epoch seconds)."""
        ...

    def describe(self) -> str: ...


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``, or ``ConfigurationError``."""
    if not isinstance(name, str) or not name:
        raise ConfigurationError(
            f"time zone must be an IANA name such as 'Europe/Berlin', not {name!r}"
        )
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigurationError(
            f"unknown time zone {name!r} (an IANA name such as 'Europe/Berlin')"
        ) from None


@dataclass(frozen=True, slots=True)
class IntervalTrigger:
    """Every ``every`` seconds, on multiples of it since the epoch (so every firer agrees,
    and an interval that divides a day falls on round times: 60 s on the minute)."""

    every: float

    def __post_init__(self) -> None:
        if not (isinstance(self.every, int | float) and not isinstance(self.every, bool)):
            raise ConfigurationError(f"interval must be a number of seconds, not {self.every!r}")
        if not (math.isfinite(self.every) and self.every >= 1):
            raise ConfigurationError(f"interval must be at least 1 second, not {self.every!r}")

    def next_after(self, t: float) -> float:
        return (math.floor(t / self.every) + 1) * self.every

    def describe(self) -> str:
        return f"every {self.every:g}s"


class CronTrigger:
    """A cron expression read in a time zone. Immutable but for a memo of the last answer
    (a queue's schedules often share an expression, and then their ticks: see
    ``make_trigger``)."""

    __slots__ = ("_last", "_minutes", "_seconds", "expression", "timezone", "tz")

    def __init__(self, expression: str, timezone: str = "UTC") -> None:
        if not isinstance(expression, str):
            raise ConfigurationError(f"cron expression must be a string, not {expression!r}")
        self.expression = " ".join(expression.split())
        self.timezone = timezone
        self.tz = zone(timezone)
        fields = self.expression.split(" ")
        if len(fields) not in (5, 6):
            raise ConfigurationError(
                f"cron expression {expression!r} has {len(fields)} fields: give 5 (minute hour"
                " day-of-month month day-of-week) or 6 (seconds first)"
            )
        self._minutes = " ".join(fields[-5:])
        self._seconds: tuple[int, ...] | None = None
        start = datetime(2000, 1, 1, tzinfo=self.tz)
        try:
            CronSim(self.expression, start)
            if len(fields) == 6:
                self._seconds = _seconds_of(fields[0])
        except CronSimError as exc:
            raise ConfigurationError(f"invalid cron expression {expression!r}: {exc}") from None
        try:
            next(CronSim(self._minutes, start))
        except StopIteration:
            raise ConfigurationError(f"cron expression {expression!r} never fires") from None
        except CronSimError as exc:
            raise ConfigurationError(f"invalid cron expression {expression!r}: {exc}") from None
        self._last = (math.nan, math.nan)  # (t, next_after(t)): one tuple, swapped whole

    def next_after(self, t: float) -> float:
        last_t, last_next = self._last
        if t == last_t:
            return last_next
        tick = self._next_after(t)
        self._last = (t, tick)
        return tick

    def _next_after(self, t: float) -> float:
        at = datetime.fromtimestamp(t, self.tz)
        if self._seconds is None:
            return next(CronSim(self._minutes, at)).timestamp()
        # 6 fields: the minutes by the 5-field rules (Debian's DST handling, which cronsim
        # applies to 5 fields only), then the seconds inside each of those minutes.
        minute_start = at.replace(second=0, microsecond=0)
        for minute in CronSim(self._minutes, minute_start - timedelta(seconds=1)):
            base = minute.timestamp()
            for second in self._seconds:
                if base + second > t:
                    return base + second
        raise AssertionError("unreachable: cron ticks never end")  # pragma: no cover

    def describe(self) -> str:
        return f"cron {self.expression!r} ({self.timezone})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CronTrigger) and (self.expression, self.timezone) == (
            other.expression,
            other.timezone,
        )

    def __hash__(self) -> int:
        return hash((self.expression, self.timezone))


def _seconds_of(field: str) -> tuple[int, ...]:
    """The seconds a 6-field expression's first field names (read by cronsim itself)."""
    start = datetime(2000, 1, 1) - timedelta(seconds=1)
    seconds = []
    for tick in CronSim(f"{field} * * * * *", start):
        if tick.minute != 0:
            break
        seconds.append(tick.second)
    return tuple(seconds)


def make_trigger(cron: str | None, every: float | None, timezone: str = "UTC") -> Trigger:
    """The trigger for exactly one of ``cron`` and ``every``."""
    if (cron is None) == (every is None):
        raise ConfigurationError("a schedule takes exactly one trigger: cron or every")
    if cron is not None:
        if isinstance(cron, str) and isinstance(timezone, str):
            return _cron_trigger(" ".join(cron.split()), timezone)
        return CronTrigger(cron, timezone)  # (which says what is wrong)
    zone(timezone)  # checked even where an interval does not use it
    assert every is not None
    return IntervalTrigger(every)


@functools.lru_cache(maxsize=4096)
def _cron_trigger(expression: str, timezone: str) -> CronTrigger:
    """One trigger per expression and zone (reading one costs tens of microseconds: a
    firer parses every schedule it fires, 10,000 of them on a busy queue, most sharing a
    few expressions). A bad one raises and is not kept."""
    return CronTrigger(expression, timezone)
