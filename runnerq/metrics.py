"""Metrics: the ``MetricsSink`` interface the engine reports to, and sinks that need nothing.

The engine reports these names (a Prometheus sink lives in ``runnerq.prometheus``):

counters
    ``activity_completed``, ``activity_retry``, ``activity_failed_non_retry``,
    ``activity_timeout``, ``activity_dead_lettered``, ``activity_cancelled``,
    ``activity_lease_lost``, ``activity_released``, ``activity_enqueued``,
    ``activity_throttled`` (a handler raised ``RateLimitedError``: sent back, no retry used;
    claims that limits held back are counted in Redis instead: ``LimitStats``),
    ``redis_errors``, ``schedule_fired``, ``schedule_skipped`` (a tick not run: the previous
    run was not done, concurrency "forbid"), ``schedule_missed`` (ticks that passed with
    nothing firing, or past their starting deadline: see ``runnerq.schedule``); counted by
    the firer whose call ran the tick, so once whoever fires. A sink that also has
    ``inc_schedule_counter`` (``ScheduleMetricsSink``) is told each schedule's share too
durations (seconds)
    ``activity_execution`` (handler run time), ``activity_queue_wait`` (first attempts:
    from when it became ready, i.e. enqueued, due, or sent back from the dead letters, to its
    claim),
    ``event_loop_stall`` (each time a handler blocked the worker's event loop for long
    enough that the stall guard stepped in: see ``runnerq.stall_guard``)
"""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import Protocol, runtime_checkable

__all__ = [
    "ACTIVITY_CANCELLED",
    "ACTIVITY_COMPLETED",
    "ACTIVITY_DEAD_LETTERED",
    "ACTIVITY_ENQUEUED",
    "ACTIVITY_EXECUTION",
    "ACTIVITY_FAILED_NON_RETRY",
    "ACTIVITY_LEASE_LOST",
    "ACTIVITY_QUEUE_WAIT",
    "ACTIVITY_RELEASED",
    "ACTIVITY_RETRY",
    "ACTIVITY_THROTTLED",
    "ACTIVITY_TIMEOUT",
    "COUNTERS",
    "DURATIONS",
    "EVENT_LOOP_STALL",
    "REDIS_ERRORS",
    "SCHEDULE_FIRED",
    "SCHEDULE_MISSED",
    "SCHEDULE_SKIPPED",
    "FanoutMetrics",
    "InMemoryMetrics",
    "MetricsSink",
    "NoopMetrics",
    "ScheduleMetricsSink",
]

ACTIVITY_COMPLETED = "activity_completed"
ACTIVITY_RETRY = "activity_retry"
ACTIVITY_FAILED_NON_RETRY = "activity_failed_non_retry"
ACTIVITY_TIMEOUT = "activity_timeout"
ACTIVITY_DEAD_LETTERED = "activity_dead_lettered"
ACTIVITY_CANCELLED = "activity_cancelled"
ACTIVITY_LEASE_LOST = "activity_lease_lost"
ACTIVITY_RELEASED = "activity_released"
ACTIVITY_ENQUEUED = "activity_enqueued"
ACTIVITY_THROTTLED = "activity_throttled"
REDIS_ERRORS = "redis_errors"
ACTIVITY_EXECUTION = "activity_execution"
ACTIVITY_QUEUE_WAIT = "activity_queue_wait"
EVENT_LOOP_STALL = "event_loop_stall"
SCHEDULE_FIRED = "schedule_fired"
SCHEDULE_SKIPPED = "schedule_skipped"
SCHEDULE_MISSED = "schedule_missed"

# Every name the engine reports, by kind (a sink may expose them before they are reported).
COUNTERS = (
    ACTIVITY_COMPLETED,
    ACTIVITY_RETRY,
    ACTIVITY_FAILED_NON_RETRY,
    ACTIVITY_TIMEOUT,
    ACTIVITY_DEAD_LETTERED,
    ACTIVITY_CANCELLED,
    ACTIVITY_LEASE_LOST,
    ACTIVITY_RELEASED,
    ACTIVITY_ENQUEUED,
    ACTIVITY_THROTTLED,
    REDIS_ERRORS,
    SCHEDULE_FIRED,
    SCHEDULE_SKIPPED,
    SCHEDULE_MISSED,
)
DURATIONS = (ACTIVITY_EXECUTION, ACTIVITY_QUEUE_WAIT, EVENT_LOOP_STALL)


@runtime_checkable
class MetricsSink(Protocol):
    """Where the engine reports what it does. Calls must be cheap and must not block."""

    def inc_counter(self, name: str, value: int = 1) -> None: ...

    def observe_duration(self, name: str, seconds: float) -> None: ...


@runtime_checkable
class ScheduleMetricsSink(Protocol):
    """A sink that counts the schedule counters (``schedule_fired``, ``schedule_skipped``,
    ``schedule_missed``) per schedule as well: the firer calls this besides
    ``inc_counter``."""

    def inc_schedule_counter(self, name: str, schedule: str, value: int = 1) -> None: ...


class NoopMetrics:
    """Reports nowhere: the default."""

    def inc_counter(self, name: str, value: int = 1) -> None:
        pass

    def observe_duration(self, name: str, seconds: float) -> None:
        pass


class InMemoryMetrics:
    """Keeps counters and observed durations in memory: for tests and small tools."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counters: dict[str, int] = defaultdict(int)
        self.durations: dict[str, list[float]] = defaultdict(list)
        # (counter, schedule) -> count, for the schedule counters
        self.schedule_counters: dict[tuple[str, str], int] = defaultdict(int)

    def inc_counter(self, name: str, value: int = 1) -> None:
        with self._lock:
            self.counters[name] += value

    def inc_schedule_counter(self, name: str, schedule: str, value: int = 1) -> None:
        with self._lock:
            self.schedule_counters[name, schedule] += value

    def observe_duration(self, name: str, seconds: float) -> None:
        with self._lock:
            self.durations[name].append(seconds)


class FanoutMetrics:
    """Reports to several sinks (e.g. the app's own and Prometheus)."""

    def __init__(self, *sinks: MetricsSink) -> None:
        self.sinks = sinks

    def inc_counter(self, name: str, value: int = 1) -> None:
        for sink in self.sinks:
            sink.inc_counter(name, value)

    def inc_schedule_counter(self, name: str, schedule: str, value: int = 1) -> None:
        for sink in self.sinks:
            if isinstance(sink, ScheduleMetricsSink):
                sink.inc_schedule_counter(name, schedule, value)

    def observe_duration(self, name: str, seconds: float) -> None:
        for sink in self.sinks:
            sink.observe_duration(name, seconds)
