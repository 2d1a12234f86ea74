"""The operator fires the schedules of every queue it serves: so they fire, and their backlog
scales the workers up, while the worker Deployment is at zero replicas.

One task per served queue (``ScheduleFiring`` starts and stops them as the registry changes;
with kopf peering, only for the queues this operator serves). Each calls runnerq's
``ScheduleFirer.fire_due`` (one script per firing, exactly one activity per tick whoever
else fires: the workers fire too) and sleeps until the next tick by Redis's clock, at most a
poll interval, so that schedules written elsewhere are seen within one.

Once per poll interval, and at once when the spec changes, it makes Redis hold spec.schedules
(``schedule_sync.plan_sync``: new and changed ones written, the operator's that left the spec
removed, a name another owner has left alone and reported) and reports each schedule in the
status, with the SchedulesReady condition and, when it turns False or its message changes, a
Warning Event.

Redis unreachable: tried again with a backoff up to the poll interval. The autoscaler already
says it, once per loss and once per return, in its log line, Event and conditions; the firer
says it at DEBUG only (the same queue's outage twice in the log would be noise).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from redis.exceptions import NoScriptError

from runnerq.config import QueueSettings
from runnerq.connection import translate_errors
from runnerq.errors import RedisUnavailableError
from runnerq.metrics import SCHEDULE_FIRED, SCHEDULE_MISSED, SCHEDULE_SKIPPED
from runnerq.schedules import ScheduleConflictError, ScheduleFirer, ScheduleStore
from runnerq.scripts import Scripts
from runnerq.store import QueueStore

from .actions import QueueWriter
from .conditions import SCHEDULES_READY, Condition, find
from .kube import ApiError
from .metrics import OperatorMetrics
from .redis_queues import RedisPools
from .redis_target import RedisTarget
from .registry import QueueKey, QueueRegistry, QueueState, backoff_delay
from .schedule_sync import (
    OWNER,
    SyncPlan,
    earliest_tick,
    plan_sync,
    reported_names,
    schedules_condition,
    schedules_status,
)
from .spec import QueueSpec

__all__ = ["ScheduleFiring"]

log = logging.getLogger("runnerq_operator.firing")

#: The first retry after Redis failed, in seconds; doubled up to the poll interval.
_RETRY = 0.5
#: status.schedules and the SchedulesReady condition, as ``_sync`` found them.
_Report = tuple[list[dict[str, Any]], Condition]
_OUTCOMES = {SCHEDULE_FIRED: "fired", SCHEDULE_SKIPPED: "skipped", SCHEDULE_MISSED: "missed"}


class _TickMetrics:
    """runnerq's schedule counters, as the operator's ``schedule_ticks`` metric."""

    def __init__(self, metrics: OperatorMetrics) -> None:
        self._metrics = metrics

    def inc_counter(self, name: str, value: int = 1) -> None:
        outcome = _OUTCOMES.get(name)
        if outcome is not None:
            self._metrics.schedule_ticks.labels(outcome).inc(value)

    def observe_duration(self, name: str, seconds: float) -> None:
        pass


class ScheduleFiring:
    def __init__(
        self,
        registry: QueueRegistry,
        writer: QueueWriter,
        pools: RedisPools,
        metrics: OperatorMetrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.writer = writer
        self.pools = pools
        self.metrics = metrics
        self.clock = clock
        self._tasks: dict[QueueKey, tuple[QueueState, asyncio.Task[None]]] = {}

    async def run(self) -> None:
        """Keep one firing task per served queue until cancelled."""
        changed = self.registry.subscribe()
        try:
            while True:
                changed.clear()
                self._follow()
                await changed.wait()
        finally:
            tasks = [task for _, task in self._tasks.values()]
            self._tasks.clear()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _follow(self) -> None:
        served = {s.key: s for s in self.registry.served()}
        for key, (state, task) in list(self._tasks.items()):
            if served.get(key) is not state or task.done():
                task.cancel()
                del self._tasks[key]
        for key, state in served.items():
            if key in self._tasks:
                state.schedules_wake.set()  # its spec may have changed
            else:
                name = f"runnerq-schedules-{key[0]}/{key[1]}"
                self._tasks[key] = (state, asyncio.create_task(self._fire(state), name=name))

    async def _fire(self, state: QueueState) -> None:
        """Fire one queue's schedules until cancelled. The status is written beside the
        firing, never in its way: a slow Kubernetes API, or the queue's lock held by a
        reconcile, must not make a tick late."""
        firer: ScheduleFirer | None = None
        target: RedisTarget | None = None
        synced: QueueSpec | None = None
        refresh_at = 0.0
        failures = 0
        last_error = ""
        reporting: asyncio.Task[None] | None = None
        try:
            while True:
                state.schedules_wake.clear()
                spec = state.spec
                interval = spec.scaling.poll_interval
                if firer is None or state.target != target:
                    target = state.target
                    client = self.pools.client(target)
                    store = QueueStore(client, QueueSettings(name=spec.queue), Scripts(client))
                    firer = ScheduleFirer(store, _TickMetrics(self.metrics))
                wait = interval
                report: _Report | None = None
                try:
                    with translate_errors(f"cannot fire the schedules of queue {spec.queue}"):
                        if spec is not synced:
                            report = await self._sync(state, firer.schedules)
                            synced, refresh_at = spec, self.clock() + interval
                        delay = await firer.fire_due()
                        due_at = None if delay is None else self.clock() + delay
                        if report is None and self.clock() >= refresh_at:
                            report = await self._sync(state, firer.schedules)
                            refresh_at = self.clock() + interval
                    if failures:
                        log.debug("%s: firing schedules again", self.writer.label(state))
                    failures, last_error = 0, ""
                    if due_at is not None:
                        wait = min(interval, due_at - self.clock())
                except NoScriptError:  # Redis had lost the scripts; they are loaded again
                    wait = 0.0
                except RedisUnavailableError as exc:
                    failures += 1
                    if failures == 1:
                        self.metrics.errors.labels("redis").inc()
                        log.debug("%s: schedules not fired: %s", self.writer.label(state), exc)
                    wait = backoff_delay(_RETRY, failures, interval)
                except Exception as exc:  # a bug or a broken Redis reply: log it, go on
                    self.metrics.errors.labels("schedules").inc()
                    if str(exc) != last_error:
                        last_error = str(exc)
                        log.exception("%s: cannot fire the schedules", self.writer.label(state))
                if report is not None and (reporting is None or reporting.done()):
                    reporting = asyncio.create_task(self._report(state, *report))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(state.schedules_wake.wait(), timeout=max(0.0, wait))
        finally:
            if reporting is not None:
                reporting.cancel()

    async def _sync(self, state: QueueState, store: ScheduleStore) -> _Report:
        """Make Redis hold spec.schedules; returns what to report (Redis only, no
        Kubernetes call: quick enough to make before a tick)."""
        spec = state.spec
        label = self.writer.label(state)
        stored = await store.list()
        refused = bool(spec.schedule_problems)
        plan = SyncPlan() if refused else plan_sync(spec.schedules, stored)
        clashes = dict(plan.clashes)
        for schedule in plan.upsert:
            try:
                if await store.upsert(schedule):
                    log.info("%s: schedule %s written", label, schedule.name)
            except ScheduleConflictError as exc:  # another owner took the name meanwhile
                clashes[schedule.name] = exc.owner
        for name in plan.remove:
            with contextlib.suppress(ScheduleConflictError):  # taken over: no longer ours
                if await store.remove(name, owner=OWNER):
                    log.info("%s: schedule %s removed (it left spec.schedules)", label, name)
        if plan.upsert or plan.remove:
            stored = await store.list()
        entries = schedules_status(reported_names(spec.schedules, stored, refused), stored, clashes)
        written = len(spec.schedules) - len(clashes)
        return entries, schedules_condition(spec.schedule_problems, clashes, written)

    async def _report(
        self, state: QueueState, entries: list[dict[str, Any]], condition: Condition
    ) -> None:
        """status.schedules, status.nextTick and SchedulesReady (with an Event when it turns
        False or its message changes). Errors are logged: the next report tries again."""
        try:
            await self._write_report(state, entries, condition)
        except Exception:
            self.metrics.errors.labels("schedules").inc()
            log.exception("%s: cannot report the schedules", self.writer.label(state))

    async def _write_report(
        self, state: QueueState, entries: list[dict[str, Any]], condition: Condition
    ) -> None:
        async with state.lock:
            if not self.registry.serves(state.key):
                return
            before = find(state.conditions, SCHEDULES_READY)
            if before is None and not entries and condition.status == "True":
                return  # a queue that never had schedules: no condition, no status field
            state.schedules = entries
            state.next_tick = earliest_tick(entries)
            news = before is None or (before.get("reason"), before.get("message")) != (
                condition.reason,
                condition.message,
            )
            self.writer.set_conditions(state, condition)
            try:
                if condition.status == "False" and news:
                    log.warning("%s: %s", self.writer.label(state), condition.message)
                    await self.writer.event(state, "Warning", condition.reason, condition.message)
                await self.writer.write_status(state)
            except (ApiError, aiohttp.ClientError, TimeoutError) as exc:
                self.metrics.errors.labels("kubernetes").inc()
                log.warning("%s: cannot write the status: %s", self.writer.label(state), exc)
