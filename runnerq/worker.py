"""``Worker``: the loops that claim, run, heartbeat and acknowledge activities of one queue.

Tasks of a running worker:

* dispatcher: claims up to "free slots" (plus a prefetch buffer) ready activities per round
  trip into the buffer; when the queue is drained it blocks on the queue's notify list (BLPOP)
  with the next claim pipelined behind it, so Redis claims for it the moment an enqueue's
  wake-up token arrives (one round trip from enqueue to a claimed activity); an 's' token
  wakes the scheduler;
* slots: ``max_workers`` tasks that each run buffered activities one after the other;
* scheduler: promotes due scheduled activities, sleeping until the next due time (a local
  timer, so precision does not depend on Redis's 100 ms blocking-timeout resolution);
* heartbeat: extends held leases, reaps expired ones, refreshes the queue configuration;
* acker: sends completions, retries and dead-letters in pipelined batches;
* cancel listener: stops handlers whose activity was cancelled;
* and, outside the event loop, the stall guard thread (``stall_guard``), which keeps the
  leases while a handler blocks the loop.

Every loop survives Redis going away: it backs off, reconnects and carries on.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import math
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

from redis.exceptions import NoScriptError

from .client import ActivityClient
from .config import WorkerSettings
from .connection import REDIS_ERRORS, drop_connections
from .context import ActivityContext, CancelToken
from .deadlines import Deadlines
from .errors import NonRetryableError, SerializationError
from .handler import HandlerRegistry
from .metrics import (
    ACTIVITY_CANCELLED,
    ACTIVITY_COMPLETED,
    ACTIVITY_DEAD_LETTERED,
    ACTIVITY_EXECUTION,
    ACTIVITY_FAILED_NON_RETRY,
    ACTIVITY_LEASE_LOST,
    ACTIVITY_QUEUE_WAIT,
    ACTIVITY_RELEASED,
    ACTIVITY_RETRY,
    ACTIVITY_TIMEOUT,
    EVENT_LOOP_STALL,
    MetricsSink,
)
from .metrics import (
    REDIS_ERRORS as REDIS_ERRORS_METRIC,
)
from .pubsub import read_messages
from .record import ActivityRecord, CorruptRecordError, DeadLetterEntry, ResultDocument, encode_json
from .stall_guard import StallGuard, StallPolicy
from .store import Claim, ScriptCall

__all__ = ["Worker", "new_worker_id"]

log = logging.getLogger("runnerq.worker")

_COMPLETE_CHUNK = 500
_MAX_BACKOFF = 5.0
# Short, so an idle dispatcher's BLPOP never meets a configured socket_timeout (RedisConfig) of
# 2 s or more, and a stopping worker's loops end soon even if a cancellation was swallowed.
_BLOCK_SECONDS = 2
_NOTHING_LOST: AbstractSet[str] = frozenset()
# How long a stopping worker waits for handlers it cancelled (after the grace period) to end.
# One that ignores cancellation is left running and keeps its lease until the lease expires;
# everything else is handed back, so a pod's termination grace period is not all spent.
CANCELLED_WAIT = 10.0


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(slots=True)
class _Running:
    """An activity a slot task is running."""

    task: asyncio.Task[None]  # the slot's
    token: str
    cancel_token: CancelToken
    stop_reason: str | None = None  # why this worker stopped it, if it did
    cancels: int = 0  # cancellations of the slot task made for this activity

    def stop(self, reason: str) -> None:
        """Stop the handler: the first reason is the one that counts."""
        if self.stop_reason is None:
            self.stop_reason = reason
        self.cancel_token.cancel(reason)
        self.cancels += 1
        self.task.cancel()


@dataclass(slots=True)
class _Ack:
    kind: str  # "complete" | "retry" | "dead"
    activity_id: str
    token: str
    data: Any  # result document | (record json, delay) | DeadLetterEntry
    extra_metric: str | None = None


class _Backoff:
    """Exponential pause after a Redis error; cut short when the worker stops."""

    def __init__(self, stop: asyncio.Event | None = None) -> None:
        self.delay = 0.05
        self._stop = stop

    async def sleep(self, what: str, exc: BaseException) -> None:
        log.warning(
            "%s failed (%s: %s); retrying in %.2fs", what, type(exc).__name__, exc, self.delay
        )
        if self._stop is None:
            await asyncio.sleep(self.delay)
        else:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.delay):
                    await self._stop.wait()
        self.delay = min(self.delay * 2, _MAX_BACKOFF)

    def reset(self) -> None:
        self.delay = 0.05


class Worker:
    """Runs one queue's activities with at most ``settings.max_workers`` at once."""

    def __init__(
        self,
        client: ActivityClient,
        registry: HandlerRegistry,
        settings: WorkerSettings,
        metrics: MetricsSink,
        worker_id: str | None = None,
    ) -> None:
        self.client = client
        self.store = client.store
        self.registry = registry
        self.settings = settings
        self.metrics = metrics
        self.worker_id = worker_id or new_worker_id()
        self._waiter = self.store.waiter(self.worker_id)  # the dispatcher's wait for work
        self.running: dict[str, _Running] = {}
        # Claimed, not yet started: (id, raw record, token, claim time by the Redis clock,
        # local monotonic time the claim was sent (its lease began no earlier), local time it
        # was added to ``held`` (renewals sent later cover its lease)).
        self._buffer: collections.deque[tuple[str, str, str, float, float, float]] = (
            collections.deque()
        )
        prefetch = settings.max_workers if settings.prefetch is None else settings.prefetch
        self._capacity = settings.max_workers + prefetch
        # Refill the buffer in batches, not one activity at a time.
        self._low_water = max(1, min(settings.claim_batch, self._capacity // 2))
        self.held: dict[str, str] = {}  # id -> lease token, until acknowledged or released
        self.paused = False
        self.last_redis_ok = 0.0
        self._renewed_at = 0.0  # local time of the last heartbeat that renewed held leases
        self._poisoned: dict[str, int] = {}  # claimed ids re-delivered too often
        # The queue's defaults (its config hash, read at start and with each heartbeat),
        # worked out when read, not per activity.
        self._default_max_retries = settings.default_max_retries
        self._default_timeout = settings.default_timeout
        self._stopping = False
        self._stop_event = asyncio.Event()
        self._free = asyncio.Event()
        self._sched_wake = asyncio.Event()
        self._acks: list[_Ack] = []
        self._ack_ready = asyncio.Event()
        self._acks_idle = asyncio.Event()
        self._acks_idle.set()
        self._acks_closed = False
        self._acks_sending = 0  # batches on their way to Redis (acker or dispatcher)
        self._tasks: list[asyncio.Task[None]] = []
        # max_workers long-lived slot tasks run the activities one after the other (a task
        # per activity costs more than running a short activity); idle ones wait here.
        self._slots: list[asyncio.Task[None]] = []
        self._idle_slots: collections.deque[asyncio.Future[None]] = collections.deque()
        self._all_idle = asyncio.Event()
        self._all_idle.set()
        self._closing: set[asyncio.Future[None]] = set()  # subscriptions being closed
        self._dispatch_task: asyncio.Task[None] | None = None
        self._ack_task: asyncio.Task[None] | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._deadlines = Deadlines(self._timed_out)
        self.stall_guard = self._new_stall_guard()

    # -- lifecycle ---------------------------------------------------------------------

    async def prime(self) -> None:
        """Read the queue configuration and load the scripts before the loops start."""
        await self.store.load_scripts()
        self._read_defaults(await self.store.get_config())
        self.last_redis_ok = time.monotonic()

    def start(self) -> None:
        """Start the loops (inside a running event loop)."""
        spawn = asyncio.create_task
        self._ack_task = spawn(self._ack_loop(), name="runnerq-acker")
        self._heartbeat_task = spawn(self._heartbeat_loop(), name="runnerq-heartbeat")
        self._dispatch_task = spawn(self._dispatch_loop(), name="runnerq-dispatch")
        self._slots = [
            spawn(self._slot_loop(), name=f"runnerq-slot-{i}")
            for i in range(self.settings.max_workers)
        ]
        self._tasks = [
            spawn(self._schedule_loop(), name="runnerq-scheduler"),
            spawn(self._cancel_loop(), name="runnerq-cancel"),
        ]
        if self.stall_guard is not None:
            self.stall_guard.start()

    @property
    def ready(self) -> bool:
        """Claiming, and Redis answered within the last few heartbeats."""
        horizon = max(3 * self.settings.heartbeat_interval, 5.0)
        return not self._stopping and time.monotonic() - self.last_redis_ok < horizon

    async def stop(self, grace: float | None = None) -> None:
        """Stop claiming, let running activities finish within ``grace`` seconds, then
        cancel the rest and hand their leases back at once."""
        grace = self.settings.shutdown_grace if grace is None else grace
        self._stopping = True
        self._stop_event.set()
        # The dispatcher is never cancelled mid-claim (it would orphan leased activities until
        # their leases expire): it sees the flag at its next wait and returns. A wait for work
        # in Redis ends when the worker's own wake-up list gets a token (or within
        # _block_seconds() if Redis cannot be told).
        self._free.set()
        self._sched_wake.set()
        with contextlib.suppress(TimeoutError, *REDIS_ERRORS):
            async with asyncio.timeout(1.0):
                await self.store.wake(self._waiter)
        if self._dispatch_task is not None:
            done, _ = await asyncio.wait([self._dispatch_task], timeout=grace + 10)
            if not done:
                self._dispatch_task.cancel()
        for task in self._tasks:
            task.cancel()
        # Loops also check the stop flag, so one whose cancellation was swallowed by a library
        # still ends at its next turn.
        await asyncio.wait(self._tasks, timeout=_BLOCK_SECONDS + 3)
        if self._closing:
            await asyncio.wait(self._closing, timeout=5)
        if self.running:
            log.info("waiting up to %.1fs for %d running activities", grace, len(self.running))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await self._all_idle.wait()
        self._buffer.clear()  # never started: their leases are handed back below
        for entry in list(self.running.values()):
            entry.stop("shutdown")
        await self._wait_for_cancelled()
        for slot in self._slots:
            slot.cancel()
        stuck = {entry.task for entry in self.running.values()}
        slots = [slot for slot in self._slots if slot not in stuck]
        if slots:
            await asyncio.wait(slots, timeout=CANCELLED_WAIT)
        # Still running: its lease runs out. What ended by now is handed back below.
        for activity_id in self.running:
            self.held.pop(activity_id, None)
        await self._drain_acks()
        with contextlib.suppress(*REDIS_ERRORS):
            await self.store.close_waiter(self._waiter)
        await self._release_held()
        self._acks_closed = True
        self._ack_ready.set()
        loops = [t for t in (self._heartbeat_task, self._ack_task) if t is not None]
        for loop_task in loops:
            loop_task.cancel()
        if loops:
            await asyncio.wait(loops, timeout=_BLOCK_SECONDS + 3)
        self._deadlines.close()
        if self.stall_guard is not None:
            await self.stall_guard.stop()

    async def _wait_for_cancelled(self) -> None:
        """Wait up to ``CANCELLED_WAIT`` for the cancelled handlers to end; log those that
        ignore cancellation."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CANCELLED_WAIT):
                await self._all_idle.wait()
        if self.running:
            log.error(
                "activities %s did not stop within %.1fs of being cancelled (their handlers"
                " ignore cancellation): left running, their leases return when they expire",
                ", ".join(sorted(self.running)),
                CANCELLED_WAIT,
            )

    async def _drain_acks(self, timeout: float = 10.0) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while self._acks or not self._acks_idle.is_set():
                    self._ack_ready.set()
                    await self._acks_idle.wait()
                    await asyncio.sleep(0)

    async def _release_held(self) -> None:
        held = list(self.held.items())
        if not held:
            return
        try:
            released = await self.store.release(held)
        except REDIS_ERRORS as exc:
            log.warning(
                "could not hand back %d leases (%s): they return when they expire", len(held), exc
            )
            return
        self.metrics.inc_counter(ACTIVITY_RELEASED, released)
        log.info("handed %d unfinished activities back to the queue", released)
        self.held.clear()

    # -- claiming ----------------------------------------------------------------------

    def _free_slots(self) -> int:
        return self.settings.max_workers - len(self.running)

    def _room(self) -> int:
        """How many more activities this worker may hold: slots plus its prefetch buffer."""
        return self._capacity - len(self.running) - len(self._buffer)

    def _block_seconds(self) -> float:
        """How long an idle dispatcher's wait for a wake-up lasts before it claims anyway."""
        s = self.settings
        # A quarter lease at most: what such a wait claims is not started if its lease may have
        # run out, and the lease is taken as starting when the wait began (``_next_buffered``).
        return min(_BLOCK_SECONDS, s.schedule_poll_interval, s.lease_duration / 4)

    async def _dispatch_loop(self) -> None:
        backoff = _Backoff(self._stop_event)
        settings = self.settings
        drained = False  # the last claim found less than it asked for: wait for a wake-up
        while not self._stopping:
            room = self._room()
            hungry = not self._buffer and self._free_slots() > 0
            if room < self._low_water and not hungry:
                self._free.clear()
                if not self._stopping:
                    await self._free.wait()
                drained = False  # full for a while: claim what came meanwhile at once
                continue
            want = min(room, settings.claim_batch)
            sent_at = time.monotonic()
            try:
                if drained:
                    claim = await self._wait_then_claim(want)
                else:
                    claim = await self._claim_with_acks(want)
            except REDIS_ERRORS as exc:
                drained = False
                self.metrics.inc_counter(REDIS_ERRORS_METRIC)
                await backoff.sleep("claiming", exc)
                continue
            except Exception as exc:
                drained = False
                if not isinstance(exc, NoScriptError):
                    log.exception("unexpected error while claiming")
                await backoff.sleep("claiming", exc)
                continue
            backoff.reset()
            self.last_redis_ok = time.monotonic()
            if claim is None:
                if not self.paused:
                    log.info("queue %s is paused: not claiming", self.store.keys.queue)
                self.paused = True
                drained = True  # wait for a wake-up (resuming sends one), then try again
                continue
            if self.paused:
                log.info("queue %s resumed", self.store.keys.queue)
                self.paused = False
                self._free.set()
            held_since = time.monotonic()
            for activity_id, times in claim.redelivered.items():
                if times >= settings.max_redeliveries:
                    self._poisoned[activity_id] = times
            for activity_id, raw in claim.items:
                self.held[activity_id] = claim.token
                self._buffer.append((activity_id, raw, claim.token, claim.now, sent_at, held_since))
            if self._stopping:
                return  # what was just claimed is handed straight back by stop()
            self._wake_slots()
            drained = len(claim.items) < want
            if drained and claim.items:
                # Let the woken slots start their activities before this loop packs and sends
                # its wait (an idle worker's enqueue-to-start latency). Not under load: there
                # the next claim goes out at once, while the slots run this batch.
                await asyncio.sleep(0)

    async def _wait_then_claim(self, want: int) -> Claim | None:
        """Block until a wake-up (an enqueue, a promotion, a reaped lease, stop) and claim in
        the same round trip; acknowledgements go on their own meanwhile (the acker)."""
        schedule_changed, claim = await self.store.wait_then_claim(
            self._waiter,
            self._block_seconds(),
            self.store.claim_call(want, self.settings.lease_duration, self.worker_id),
        )
        if schedule_changed:
            self._sched_wake.set()  # the earliest due time may have changed (enqueue.lua)
        return claim

    async def _claim_with_acks(self, want: int) -> Claim | None:
        """Claim, sending the acknowledgements waiting at that moment in the same round trip
        (the acker sends them on its own when the dispatcher is idle)."""
        batch, self._acks = self._acks, []
        claim_call = self.store.claim_call(want, self.settings.lease_duration, self.worker_id)
        if not batch:  # one script call: no pipeline (cheaper, and what an idle worker does)
            reply = await claim_call.script(keys=claim_call.keys, args=claim_call.args)
            return self.store.parse_claim([reply])
        calls, parse = self._ack_calls(batch)
        self._acks_sending += 1
        try:
            replies = await self.store.run_calls([*calls, claim_call])
        except BaseException:
            self._acks[:0] = batch  # the acker sends them again (acks are idempotent)
            self._ack_ready.set()
            raise
        finally:
            self._acks_sending -= 1
        self._count_acks(batch, parse(replies[:-1]))
        self._mark_acks_idle()
        return self.store.parse_claim(replies[-1:])

    def _wake_slots(self) -> None:
        """Wake as many idle slots as there are buffered activities."""
        n = len(self._buffer)
        idle = self._idle_slots
        while n and idle:
            waiter = idle.popleft()
            if not waiter.done():
                waiter.set_result(None)
                n -= 1

    def _next_buffered(self) -> tuple[str, str, str, float] | None:
        """The next buffered activity whose lease is still good, or None."""
        buffer = self._buffer
        # A buffered lease older than this may have expired unseen (the event loop was blocked
        # and no heartbeat ran): it is not started; the reaper hands it out again.
        stale = time.monotonic() - 0.8 * self.settings.lease_duration
        renewed_at: float = self._renewed_at
        lost: AbstractSet[str] = _NOTHING_LOST
        if self.stall_guard is not None:
            renewed_at = max(renewed_at, self.stall_guard.renewed_at)
            lost = self.stall_guard.lost
        while buffer and not self._stopping:
            activity_id, raw, token, claimed_at, claim_sent, held_since = buffer.popleft()
            if self.held.get(activity_id) != token or activity_id in lost:
                self._poisoned.pop(activity_id, None)
                continue  # cancelled or lease lost while it waited in the buffer
            # A renewal covers the lease only if it was sent after the lease was in ``held``
            # (a claim reply read after a stall was not in the guard's renewals).
            fresh_since = max(claim_sent, renewed_at) if renewed_at >= held_since else claim_sent
            if fresh_since < stale:
                self.held.pop(activity_id, None)
                self._poisoned.pop(activity_id, None)
                continue
            return activity_id, raw, token, claimed_at
        return None

    async def _slot_loop(self) -> None:
        """Run buffered activities one after the other until the worker stops."""
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        while True:
            item = self._next_buffered()
            if item is None:
                if self._stopping:
                    return  # (a slot whose handler ignored the stop's cancellation ends here)
                waiter = loop.create_future()
                self._idle_slots.append(waiter)
                await waiter  # a cancellation here is the worker stopping: the slot ends
                continue
            activity_id, raw, token, claimed_at = item
            entry = _Running(task, token, CancelToken())
            self.running[activity_id] = entry
            self._all_idle.clear()
            try:
                await self._execute(activity_id, raw, token, claimed_at, entry.cancel_token)
            except asyncio.CancelledError:
                if not entry.cancels:
                    raise  # the slot itself was cancelled: the worker is stopping
            except Exception:
                log.exception("unexpected error running activity %s", activity_id)
            finally:
                for _ in range(entry.cancels):
                    task.uncancel()  # the cancellations were this activity's, not the slot's
                self._finished(activity_id)

    async def _schedule_loop(self) -> None:
        backoff = _Backoff()
        poll = self.settings.schedule_poll_interval
        while not self._stopping:
            self._sched_wake.clear()
            try:
                _, next_due = await self.store.promote_due()  # promoted ones wake claimers
            except Exception as exc:
                await backoff.sleep("promoting scheduled activities", exc)
                continue
            backoff.reset()
            wait = poll if next_due is None else min(next_due, poll)
            if wait <= 0:
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._sched_wake.wait()

    async def _cancel_loop(self) -> None:
        backoff = _Backoff()
        while not self._stopping:
            pubsub = self.store.redis.pubsub()
            try:
                await pubsub.subscribe(self.store.keys.cancel_channel)
                backoff.reset()
                await read_messages(pubsub, lambda i: self._stop_activity(i, "cancelled"))
            except Exception as exc:
                await backoff.sleep("listening for cancellations", exc)
            finally:
                with contextlib.suppress(Exception):
                    closing = asyncio.ensure_future(pubsub.aclose())  # type: ignore[no-untyped-call]
                    self._closing.add(closing)
                    closing.add_done_callback(self._closing.discard)
                    await asyncio.shield(closing)  # stop() waits for it

    def _timed_out(self, activity_id: str) -> None:
        """The activity ran past its timeout: stop its handler (the lease stays held: the
        timeout is acknowledged as a failure)."""
        entry = self.running.get(activity_id)
        if entry is not None and entry.stop_reason is None:
            entry.stop("timeout")

    def _stop_activity(self, activity_id: str, reason: str) -> None:
        entry = self.running.get(activity_id)
        if entry is not None and entry.stop_reason is None:
            entry.stop(reason)
        self.held.pop(activity_id, None)

    # -- heartbeats --------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        backoff = _Backoff()
        # The heartbeat doubles as the connection watchdog: connections carry no per-read
        # timeout (RedisConfig.socket_timeout), so one that went half-open (a frozen Redis, a
        # cut that sent no FIN/RST) would hang whatever waits on it.
        budget = max(
            2.0, min(self.settings.lease_duration / 2, 3 * self.settings.heartbeat_interval)
        )
        while not self._stopping:
            try:
                async with asyncio.timeout(budget):
                    await self._heartbeat_once()
            except TimeoutError as exc:
                log.warning("Redis did not answer a heartbeat within %.1fs: reconnecting", budget)
                await drop_connections(self.store.redis)
                self.metrics.inc_counter(REDIS_ERRORS_METRIC)
                await backoff.sleep("heartbeat", exc)
                continue
            except Exception as exc:
                self.metrics.inc_counter(REDIS_ERRORS_METRIC)
                await backoff.sleep("heartbeat", exc)
                continue
            backoff.reset()
            await asyncio.sleep(self.settings.heartbeat_interval)

    async def _heartbeat_once(self) -> None:
        held = list(self.held.items())
        sent_at = time.monotonic()
        lost = await self.store.heartbeat(self.settings.lease_duration, held)
        self._renewed_at = sent_at  # every lease held then and not lost runs from here
        for activity_id in lost:
            if activity_id in self.running:
                log.warning("lease of activity %s lost: stopping its handler", activity_id)
                self.metrics.inc_counter(ACTIVITY_LEASE_LOST)
            self._stop_activity(activity_id, "lease_lost")
        reaped = await self.store.reap()
        if reaped:
            log.info("returned %d activities with expired leases to the queue", reaped)
        self._read_defaults(await self.store.get_config())
        self.last_redis_ok = time.monotonic()

    # -- a blocked event loop ----------------------------------------------------------

    def _new_stall_guard(self) -> StallGuard | None:
        settings = self.settings
        limit = settings.loop_stall_limit
        if limit is None:
            limit = settings.default_timeout
        if limit == 0 or not self.client.owns_connection:
            return None  # off, or no URL to open the guard's own connection from
        policy = StallPolicy.for_worker(settings.lease_duration, settings.heartbeat_interval, limit)
        return StallGuard(
            url=self.client.redis_url,
            redis_config=self.client.redis_config,
            queue_settings=self.client.settings,
            policy=policy,
            held=lambda: list(self.held.items()),
            blocker=self._activity_of,
            on_lost=self._lost_during_stall,
            on_stall_end=self._stall_ended,
        )

    def _activity_of(self, task: asyncio.Task[Any] | None) -> str | None:
        for activity_id, entry in list(self.running.items()):
            if entry.task is task:
                return activity_id
        return None

    def _lost_during_stall(self, lost: list[str]) -> None:
        for activity_id in lost:
            self._stop_activity(activity_id, "lease_lost")
        if self.stall_guard is not None:
            self.stall_guard.lost.difference_update(lost)

    def _stall_ended(self, seconds: float) -> None:
        log.warning("event loop was blocked for %.1fs", seconds)
        self.metrics.observe_duration(EVENT_LOOP_STALL, seconds)

    def _read_defaults(self, config: dict[str, str]) -> None:
        settings = self.settings
        self._default_max_retries = int(
            _default(config, "max_retries", settings.default_max_retries, integer=True)
        )
        self._default_timeout = _default(config, "timeout", settings.default_timeout)

    # -- running -----------------------------------------------------------------------

    def _finished(self, activity_id: str) -> None:
        self.running.pop(activity_id, None)
        if not self.running:
            self._all_idle.set()
        # Wake the dispatcher only when it has something to do:
        # room for a whole refill, room at all, or nothing left to run. A wake-up per finished
        # activity would cost a loop turn each.
        room = self._room()
        if room == 1 or room >= self._low_water or not self._buffer:
            self._free.set()

    async def _execute(
        self, activity_id: str, raw: str, token: str, claimed_at: float, cancel_token: CancelToken
    ) -> None:
        times = self._poisoned.pop(activity_id, None)
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
            self._dead(activity_id, token, str(exc), "corrupt", None, raw or None)
            return
        if times is not None:
            error = (
                f"its lease expired {times} times: it crashed or hung the workers that ran it"
                f" (max_redeliveries={self.settings.max_redeliveries})"
            )
            log.error("activity %s: %s; dead-lettering it", activity_id, error)
            self._dead(activity_id, token, error, "redelivered", record)
            return
        handler = self.registry.get(record.activity_type)
        if handler is None:
            error = (
                f"no handler registered for activity type {record.activity_type!r}"
                f" on queue {self.store.keys.queue!r}"
            )
            log.error("activity %s: %s", activity_id, error)
            self._dead(activity_id, token, error, "unknown_type", record)
            return
        max_retries = record.max_retries
        if max_retries is None:
            max_retries = self._default_max_retries
        timeout = record.timeout or self._default_timeout
        if record.retry_count == 0:
            ready_at = record.created_at
            if record.ready_at is not None and record.ready_at > ready_at:
                ready_at = record.ready_at  # due later, or sent back from the dead letters
            self.metrics.observe_duration(ACTIVITY_QUEUE_WAIT, max(0.0, claimed_at - ready_at))
        ctx = ActivityContext(
            activity_id=activity_id,
            activity_type=record.activity_type,
            retry_count=record.retry_count,
            max_retries=max_retries,
            priority=record.priority,
            metadata=record.metadata,
            activity_executor=self.client,
            cancel_token=cancel_token,
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
        started = time.perf_counter()
        slot = self._deadlines.add(activity_id, timeout)
        try:
            result = await handler(record.payload, ctx)
        except asyncio.CancelledError as exc:
            entry = self.running.get(activity_id)
            reason = entry.stop_reason if entry is not None else None
            if reason == "timeout":
                self.metrics.observe_duration(ACTIVITY_EXECUTION, time.perf_counter() - started)
                self.metrics.inc_counter(ACTIVITY_TIMEOUT)
                error = f"timed out after {timeout:g}s"
                self._failed(record, token, error, True, max_retries, "timeout")
                return
            if reason is not None:
                if reason == "cancelled":
                    self.metrics.inc_counter(ACTIVITY_CANCELLED)
                return  # lease lost or cancelled: nothing to acknowledge; shutdown: released
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # cancelled from outside this worker's own bookkeeping
            # The handler raised CancelledError itself: a failure like any other.
            self._handler_failed(record, token, exc, max_retries, started)
            return
        except NonRetryableError as exc:
            self.metrics.observe_duration(ACTIVITY_EXECUTION, time.perf_counter() - started)
            self.metrics.inc_counter(ACTIVITY_FAILED_NON_RETRY)
            self._failed(record, token, str(exc), False, max_retries, "non_retryable")
            return
        except BaseException as exc:
            # Any exception, and also SystemExit, KeyboardInterrupt, GeneratorExit or a custom
            # BaseException from a handler: the activity failed; the worker is not stopped by
            # what one handler raises (signals reach the engine through its own handlers).
            self._handler_failed(record, token, exc, max_retries, started)
            return
        finally:
            self._deadlines.discard(activity_id, slot)
        self.metrics.observe_duration(ACTIVITY_EXECUTION, time.perf_counter() - started)
        try:
            result_json = encode_json(result, "the handler's result")
        except SerializationError as exc:
            self.metrics.inc_counter(ACTIVITY_FAILED_NON_RETRY)
            self._failed(record, token, str(exc), False, max_retries, "bad_result")
            return
        self._ack(_Ack("complete", activity_id, token, ResultDocument.completed_json(result_json)))

    def _handler_failed(
        self,
        record: ActivityRecord,
        token: str,
        exc: BaseException,
        max_retries: int,
        started: float,
    ) -> None:
        self.metrics.observe_duration(ACTIVITY_EXECUTION, time.perf_counter() - started)
        error = _describe(exc)
        log.info("activity %s (%s) failed: %s", record.id, record.activity_type, error)
        self._failed(record, token, error, True, max_retries, "failed")

    def _failed(
        self,
        record: ActivityRecord,
        token: str,
        error: str,
        retryable: bool,
        max_retries: int,
        reason: str,
    ) -> None:
        if retryable and record.retry_count < max_retries:
            delay = self.settings.backoff.delay(record.retry_count + 1)
            updated = record.retried(error)
            self._ack(_Ack("retry", record.id, token, (updated.encode(), delay)))
            return
        if retryable and reason == "failed":
            reason = "retries_exhausted"
        self._dead(record.id, token, error, reason, dataclasses.replace(record, last_error=error))

    def _dead(
        self,
        activity_id: str,
        token: str,
        error: str,
        reason: str,
        record: ActivityRecord | None,
        raw: str | None = None,
    ) -> None:
        entry = DeadLetterEntry(activity_id, error, reason, time.time(), record, raw)
        self._ack(_Ack("dead", activity_id, token, entry))

    # -- acknowledging -----------------------------------------------------------------

    def _ack(self, ack: _Ack) -> None:
        if self._acks_closed:  # a handler that ignored the stop's cancellation, ending late
            log.warning(
                "activity %s ended after the worker stopped: its outcome (%s) is not recorded;"
                " it runs again when its lease expires",
                ack.activity_id,
                ack.kind,
            )
            return
        self._acks.append(ack)
        self._acks_idle.clear()
        self._ack_ready.set()

    async def _ack_loop(self) -> None:
        backoff = _Backoff()
        while not (self._acks_closed and not self._acks):
            await self._ack_ready.wait()
            self._ack_ready.clear()
            batch, self._acks = self._acks, []
            if not batch:
                self._mark_acks_idle()
                continue
            self._acks_sending += 1
            while True:
                try:
                    results = await self._send_acks(batch)
                    break
                except NoScriptError:
                    continue  # Redis restarted and forgot the scripts: reloaded, send again
                except Exception as exc:
                    self.metrics.inc_counter(REDIS_ERRORS_METRIC)
                    await backoff.sleep(f"acknowledging {len(batch)} activities", exc)
            backoff.reset()
            self._acks_sending -= 1
            self.last_redis_ok = time.monotonic()
            self._count_acks(batch, results)
            self._mark_acks_idle()

    def _mark_acks_idle(self) -> None:
        if not self._acks and not self._acks_sending:
            self._acks_idle.set()

    async def _send_acks(self, batch: list[_Ack]) -> list[bool]:
        """One round trip for the whole batch; acks are idempotent (lease tokens), so a batch
        may safely be sent again after a failure."""
        calls, parse = self._ack_calls(batch)
        return parse(await self.store.run_calls(calls))

    def _ack_calls(
        self, batch: list[_Ack]
    ) -> tuple[list[ScriptCall], Callable[[list[Any]], list[bool]]]:
        """The script calls for a batch of acks, and how to read their replies (one flag per
        ack, in the batch's order: True when recorded, False when the lease was gone)."""
        store = self.store
        completes = [a for a in batch if a.kind == "complete"]
        others = [a for a in batch if a.kind != "complete"]
        calls = [
            store.complete_call(
                [(a.activity_id, a.token, a.data) for a in completes[i : i + _COMPLETE_CHUNK]]
            )
            for i in range(0, len(completes), _COMPLETE_CHUNK)
        ]
        for ack in others:
            if ack.kind == "retry":
                record_json, delay = ack.data
                calls.append(store.retry_call(ack.activity_id, ack.token, record_json, delay))
            else:
                calls.append(store.dead_letter_call(ack.activity_id, ack.token, ack.data))
        n_chunks = len(calls) - len(others)

        def parse(replies: list[Any]) -> list[bool]:
            flags: list[bool] = []
            for reply in replies[:n_chunks]:
                flags += [bool(int(x)) for x in reply]
            flags += [bool(int(x)) for x in replies[n_chunks:]]
            by_id = {a.activity_id: ok for a, ok in zip(completes + others, flags, strict=True)}
            return [by_id[a.activity_id] for a in batch]

        return calls, parse

    def _count_acks(self, batch: list[_Ack], results: list[bool]) -> None:
        metrics = self.metrics
        completed = 0
        for ack, ok in zip(batch, results, strict=True):
            self.held.pop(ack.activity_id, None)
            if not ok:
                metrics.inc_counter(ACTIVITY_LEASE_LOST)
                log.warning(
                    "activity %s: lease lost before its %s was recorded", ack.activity_id, ack.kind
                )
            elif ack.kind == "complete":
                completed += 1
            elif ack.kind == "retry":
                metrics.inc_counter(ACTIVITY_RETRY)
            else:
                metrics.inc_counter(ACTIVITY_DEAD_LETTERED)
        if completed:
            metrics.inc_counter(ACTIVITY_COMPLETED, completed)


def _default(config: dict[str, str], name: str, fallback: float, *, integer: bool = False) -> float:
    """A default from a queue's config hash, or ``fallback`` when it is absent or not a usable
    number (finite, >= 0, > 0 for a timeout, whole for a count)."""
    value = config.get(name)
    if value is None:
        return fallback
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    usable = math.isfinite(number) and number >= 0
    usable = usable and (number.is_integer() if integer else number > 0)
    if not usable:
        log.warning("queue config %s=%r is not usable: using %s", name, value, fallback)
        return fallback
    return number


def _describe(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:
        text = "<the exception could not be turned into text>"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
