"""``SlotPool``: ``max_workers`` long-lived tasks that run buffered activities one after the
other (a task per activity costs more than running a short activity), and what running one
activity takes: decode its record, find its handler, run it under its timeout, and hand the
outcome (``outcome``) to the ack batcher."""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .acks import AckBatcher
from .client import ActivityClient
from .context import ActivityContext, CancelToken
from .deadlines import Deadlines
from .dispatcher import Buffered, Dispatcher
from .handler import HandlerRegistry
from .metrics import (
    ACTIVITY_CANCELLED,
    ACTIVITY_EXECUTION,
    ACTIVITY_FAILED_NON_RETRY,
    ACTIVITY_QUEUE_WAIT,
    ACTIVITY_TIMEOUT,
    MetricsSink,
)
from .outcome import DeadLetter, Throttled, completed, dead_letter, describe, failed, raised
from .record import ActivityRecord, CorruptRecordError
from .worker_state import Running, WorkerState

__all__ = ["SlotPool"]

log = logging.getLogger("runnerq.worker")


class SlotPool:
    """The slot tasks of one worker and the activities they run."""

    def __init__(
        self,
        state: WorkerState,
        dispatcher: Dispatcher,
        client: ActivityClient,
        registry: HandlerRegistry,
        metrics: MetricsSink,
        acks: AckBatcher,
    ) -> None:
        self._state = state
        self._dispatcher = dispatcher
        self._client = client
        self._queue = client.store.keys.queue
        self._registry = registry
        self._metrics = metrics
        self._acks = acks
        self._backoff = state.settings.backoff
        self._keep_lease = client.settings.claim_history  # (in each result: see outcome.py)
        self.running = state.running
        self.deadlines = Deadlines(self._timed_out)
        self.tasks: list[asyncio.Task[None]] = []
        self._idle: collections.deque[asyncio.Future[None]] = collections.deque()
        self.all_idle = asyncio.Event()  # no activity running
        self.all_idle.set()

    def start(self) -> None:
        self.tasks = [
            asyncio.create_task(self._slot_loop(), name=f"runnerq-slot-{i}")
            for i in range(self._state.settings.max_workers)
        ]

    def wake(self, n: int) -> None:
        """Wake up to ``n`` idle slots (as many as there are buffered activities)."""
        idle = self._idle
        while n and idle:
            waiter = idle.popleft()
            if not waiter.done():
                waiter.set_result(None)
                n -= 1

    def _timed_out(self, activity_id: str) -> None:
        """The activity ran past its timeout: stop its handler (the lease stays held: the
        timeout is acknowledged as a failure)."""
        entry = self.running.get(activity_id)
        if entry is not None and entry.stop_reason is None:
            entry.stop("timeout")

    async def _slot_loop(self) -> None:
        """Run buffered activities one after the other until the worker stops."""
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        state = self._state
        next_buffered = self._dispatcher.next_buffered
        while True:
            item = next_buffered()
            if item is None:
                if state.stopping:
                    return  # (a slot whose handler ignored the stop's cancellation ends here)
                waiter = loop.create_future()
                self._idle.append(waiter)
                await waiter  # a cancellation here is the worker stopping: the slot ends
                continue
            activity_id, _, token, _, _, _ = item
            entry = Running(task, token, CancelToken())
            self.running[activity_id] = entry
            self.all_idle.clear()
            try:
                await self._execute(item, entry.cancel_token)
            except asyncio.CancelledError:
                if not entry.cancels:
                    raise  # the slot itself was cancelled: the worker is stopping
            except Exception as exc:
                self._worker_failed(item, exc)
            finally:
                for _ in range(entry.cancels):
                    task.uncancel()  # the cancellations were this activity's, not the slot's
                self._finished(activity_id)

    def _worker_failed(self, item: Buffered, exc: Exception) -> None:
        """The worker's own code failed while it ran the activity (not the handler: what a
        handler raises is its outcome). Dead-letter it with the error, rather than leave its
        lease renewed with nothing running."""
        log.error(
            "unexpected error running activity %s: dead-lettering it",
            item.activity_id,
            exc_info=exc,
        )
        if item.activity_id not in self._state.held:
            return  # its outcome was sent, or its lease is gone
        error = f"the worker failed while running it: {describe(exc)}"
        self._acks.add(
            dead_letter(item.activity_id, item.token, error, "worker_error", time.time())
        )

    def _finished(self, activity_id: str) -> None:
        self.running.pop(activity_id, None)
        if not self.running:
            self.all_idle.set()
        self._dispatcher.slot_freed()

    async def _execute(self, item: Buffered, cancel_token: CancelToken) -> None:
        activity_id, raw, token, claimed_at, _, _ = item
        state = self._state
        times = state.poisoned.pop(activity_id, None)
        try:
            if not raw:
                raise CorruptRecordError("the activity's record is missing")
            record = ActivityRecord.decode(raw)
            if record.id != activity_id:
                raise CorruptRecordError(
                    f"the record's id {record.id!r} does not match its key {activity_id!r}"
                )
        except CorruptRecordError as exc:
            log.error("activity %s has a corrupt record (%s): dead-lettering it", activity_id, exc)
            self._acks.add(
                dead_letter(activity_id, token, str(exc), "corrupt", time.time(), None, raw or None)
            )
            return
        if times is not None:
            error = (
                f"its lease expired {times} times: it crashed or hung the workers that ran it"
                f" (max_redeliveries={state.settings.max_redeliveries})"
            )
            log.error("activity %s: %s; dead-lettering it", activity_id, error)
            self._acks.add(
                dead_letter(activity_id, token, error, "redelivered", time.time(), record)
            )
            return
        handler = self._registry.get(record.activity_type)
        if handler is None:
            error = (
                f"no handler registered for activity type {record.activity_type!r}"
                f" on queue {self._queue!r}"
            )
            log.error("activity %s: %s", activity_id, error)
            self._acks.add(
                dead_letter(activity_id, token, error, "unknown_type", time.time(), record)
            )
            return
        max_retries = record.max_retries
        if max_retries is None:
            max_retries = state.default_max_retries
        timeout = record.timeout or state.default_timeout
        if record.retry_count == 0:
            ready_at = record.created_at
            if record.ready_at is not None and record.ready_at > ready_at:
                ready_at = record.ready_at  # due later, or sent back from the dead letters
            self._metrics.observe_duration(ACTIVITY_QUEUE_WAIT, max(0.0, claimed_at - ready_at))
        ctx = ActivityContext(
            activity_id=activity_id,
            activity_type=record.activity_type,
            retry_count=record.retry_count,
            max_retries=max_retries,
            priority=record.priority,
            metadata=record.metadata,
            activity_executor=self._client,
            cancel_token=cancel_token,
            lease_token=token,
        )
        await self._run_handler(handler, record, ctx, token, timeout, max_retries)

    async def _run_handler(
        self,
        handler: Callable[[Any, ActivityContext], Awaitable[Any]],
        record: ActivityRecord,
        ctx: ActivityContext,
        token: str,
        timeout: float,
        max_retries: int,
    ) -> None:
        activity_id = record.id
        metrics = self._metrics
        started = time.perf_counter()
        slot = self.deadlines.add(activity_id, timeout)
        try:
            result = await handler(record.payload, ctx)
        except asyncio.CancelledError as exc:
            entry = self.running.get(activity_id)
            reason = entry.stop_reason if entry is not None else None
            if reason == "timeout":
                metrics.observe_duration(ACTIVITY_EXECUTION, time.perf_counter() - started)
                metrics.inc_counter(ACTIVITY_TIMEOUT)
                error = f"timed out after {timeout:g}s"
                await _settle_progress(ctx, True)
                self._acks.add(
                    failed(
                        record,
                        token,
                        error,
                        True,
                        max_retries,
                        "timeout",
                        self._backoff,
                        time.time(),
                    )
                )
                return
            if reason is not None:
                await _settle_progress(ctx, False)
                if reason == "cancelled":
                    metrics.inc_counter(ACTIVITY_CANCELLED)
                return  # lease lost or cancelled: nothing to acknowledge; shutdown: released
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                await _settle_progress(ctx, False)
                raise  # cancelled from outside this worker's own bookkeeping
            # The handler raised CancelledError itself: a failure like any other.
            await _settle_progress(ctx, True)
            self._raised(record, token, exc, max_retries, started)
            return
        except BaseException as exc:
            # Any exception, and also SystemExit, KeyboardInterrupt, GeneratorExit or a custom
            # BaseException from a handler: the activity failed; the worker is not stopped by
            # what one handler raises (signals reach the engine through its own handlers).
            await _settle_progress(ctx, True)
            self._raised(record, token, exc, max_retries, started)
            return
        finally:
            self.deadlines.discard(activity_id, slot)
        metrics.observe_duration(ACTIVITY_EXECUTION, time.perf_counter() - started)
        progressed = ctx._progress is not None
        if progressed:
            await _settle_progress(ctx, True)
        ack = completed(record, token, result, time.time(), progressed, self._keep_lease)
        if type(ack) is DeadLetter:
            metrics.inc_counter(ACTIVITY_FAILED_NON_RETRY)
        self._acks.add(ack)

    def _raised(
        self,
        record: ActivityRecord,
        token: str,
        exc: BaseException,
        max_retries: int,
        started: float,
    ) -> None:
        metrics = self._metrics
        metrics.observe_duration(ACTIVITY_EXECUTION, time.perf_counter() - started)
        ack = raised(record, token, exc, max_retries, self._backoff, time.time())
        if type(ack) is DeadLetter and ack.reason == "non_retryable":
            metrics.inc_counter(ACTIVITY_FAILED_NON_RETRY)
        elif type(ack) is Throttled:
            log.info("activity %s (%s) rate limited: %s", record.id, record.activity_type, exc)
        else:
            log.info("activity %s (%s) failed: %s", record.id, record.activity_type, describe(exc))
        self._acks.add(ack)


async def _settle_progress(ctx: ActivityContext, keep: bool) -> None:
    """The attempt ended: write the progress its handler reported last before the outcome is
    sent (``keep``), or drop it (the lease is lost, or handed back)."""
    reporter = ctx._progress
    if reporter is not None:
        if keep:
            await reporter.flush()
        else:
            reporter.discard()
