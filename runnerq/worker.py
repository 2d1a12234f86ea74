"""``Worker``: one queue's activities claimed, run, heartbeated and acknowledged.

A running worker is made of parts, each in a module of its own, sharing a ``WorkerState``
(held leases, running activities, the stop flag):

* ``dispatcher.Dispatcher``: claims ready activities into the prefetch buffer, blocking on
  the queue's notify list when it is drained;
* ``slots.SlotPool``: ``max_workers`` tasks running buffered activities, each run's outcome
  decided by the pure functions of ``outcome``;
* ``acks.AckBatcher``: sends completions, retries and dead letters in pipelined batches;
* ``scheduler.Scheduler``: promotes due scheduled activities;
* ``heartbeat.Heartbeat``: extends leases, reaps expired ones, refreshes the queue's
  configuration, and wires the stall guard (``stall_guard``), the thread that keeps the
  leases while a handler blocks the event loop;
* ``cancel_listener.CancelListener``: stops handlers whose activity was cancelled.

Every loop survives Redis going away: it backs off, reconnects and carries on; an error that
is not Redis's is logged with its traceback, and the loop carries on too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid

from .acks import AckBatcher
from .cancel_listener import CancelListener
from .client import ActivityClient
from .config import WorkerSettings
from .connection import REDIS_ERRORS
from .dispatcher import BLOCK_SECONDS, Dispatcher
from .handler import HandlerRegistry
from .heartbeat import Heartbeat
from .metrics import ACTIVITY_RELEASED, MetricsSink
from .presence import register_queue, remove_worker
from .scheduler import Scheduler
from .schedules import ScheduleFirer
from .slots import SlotPool
from .stall_guard import StallGuard
from .worker_state import Running, WorkerState

__all__ = ["CANCELLED_WAIT", "Worker", "new_worker_id"]

log = logging.getLogger("runnerq.worker")

# How long a stopping worker waits for handlers it cancelled (after the grace period) to end.
# One that ignores cancellation is left running and keeps its lease until the lease expires;
# everything else is handed back, so a pod's termination grace period is not all spent.
CANCELLED_WAIT = 10.0
# How long a stopping worker waits for the outcomes of finished activities to be sent.
ACK_DRAIN = 10.0


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


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
        self.settings = settings
        self.metrics = metrics
        self.worker_id = worker_id or new_worker_id()
        self.state = state = WorkerState(settings)
        self.acks = AckBatcher(self.store, metrics, state.held, state.redis_answered)
        self.scheduler = Scheduler(state, self.store, ScheduleFirer(self.store, metrics))
        self.heartbeat = Heartbeat(state, client, metrics, self.worker_id)
        self.cancels = CancelListener(state, self.store)
        self.dispatcher = Dispatcher(
            state,
            self.store,
            self.acks,
            metrics,
            self.worker_id,
            wake_slots=self._wake_slots,
            schedule_changed=self.scheduler.wake,
            stall_guard=lambda: self.heartbeat.stall_guard,
        )
        self.slots = SlotPool(state, self.dispatcher, client, registry, metrics, self.acks)
        self._dispatch_task: asyncio.Task[None] | None = None
        self._ack_task: asyncio.Task[None] | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # -- what tests and the engine look at ---------------------------------------------

    @property
    def held(self) -> dict[str, str]:
        """Leases this worker holds: activity id -> lease token."""
        return self.state.held

    @property
    def running(self) -> dict[str, Running]:
        return self.state.running

    @property
    def paused(self) -> bool:
        return self.dispatcher.paused

    @property
    def stall_guard(self) -> StallGuard | None:
        return self.heartbeat.stall_guard

    @property
    def ready(self) -> bool:
        """Claiming, and Redis answered within the last few heartbeats."""
        state = self.state
        horizon = max(3 * self.settings.heartbeat_interval, 5.0)
        return not state.stopping and time.monotonic() - state.last_redis_ok < horizon

    def _wake_slots(self, n: int) -> None:
        self.slots.wake(n)

    # -- lifecycle ---------------------------------------------------------------------

    async def prime(self) -> None:
        """Read the queue configuration and load the scripts before the loops start."""
        await self.store.load_scripts()
        self.state.read_defaults(await self.store.get_config())
        await register_queue(self.store.redis, self.store.keys.queue)
        self.state.redis_answered()

    def start(self) -> None:
        """Start the loops (inside a running event loop)."""
        spawn = asyncio.create_task
        self._ack_task = spawn(self.acks.run(), name="runnerq-acker")
        self._heartbeat_task = spawn(self.heartbeat.run(), name="runnerq-heartbeat")
        self._dispatch_task = spawn(self.dispatcher.run(), name="runnerq-dispatch")
        self.slots.start()
        self._tasks = [
            spawn(self.scheduler.run(), name="runnerq-scheduler"),
            spawn(self.cancels.run(), name="runnerq-cancel"),
        ]
        if self.stall_guard is not None:
            self.stall_guard.start()

    async def stop(self, grace: float | None = None) -> None:
        """Stop claiming, let running activities finish within ``grace`` seconds, then
        cancel the rest and hand their leases back at once.

        The waits, in order (each bounded):

        1. the dispatcher's claim in flight (up to ``grace`` + 10 s): it is never cancelled
           mid-claim, which would orphan what it leased; its wait for work ends at once
           (the worker's own wake-up list gets a token);
        2. the scheduler and cancel loops (``BLOCK_SECONDS`` + 3 s), and their pub/sub
           connections' closing (5 s);
        3. the running activities (``grace``), then, once cancelled, their handlers
           (``CANCELLED_WAIT``): one that ignores cancellation is left running and keeps its
           lease until it expires;
        4. the slot tasks (``CANCELLED_WAIT``);
        5. the outcomes waiting to be sent (``ACK_DRAIN``);
        6. the hand-back of every lease still held: buffered activities that never started
           and those whose handlers were cancelled (one round trip);
        7. the heartbeat and ack loops (``BLOCK_SECONDS`` + 3 s), the worker's registry
           entry (2 s), and the stall guard.
        """
        grace = self.settings.shutdown_grace if grace is None else grace
        state = self.state
        state.stopping = True
        state.stop_event.set()
        self.dispatcher.free.set()
        self.scheduler.wake()
        with contextlib.suppress(TimeoutError, *REDIS_ERRORS):
            async with asyncio.timeout(1.0):
                await self.store.wake(self.dispatcher.waiter)
        # 1.
        if self._dispatch_task is not None:
            done, _ = await asyncio.wait([self._dispatch_task], timeout=grace + 10)
            if not done:
                self._dispatch_task.cancel()
        # 2. (Loops also check the stop flag, so one whose cancellation was swallowed by a
        # library still ends at its next turn.)
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=BLOCK_SECONDS + 3)
        if self.cancels.closing:
            await asyncio.wait(self.cancels.closing, timeout=5)
        # 3.
        slots = self.slots
        if state.running:
            log.info("waiting up to %.1fs for %d running activities", grace, len(state.running))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await slots.all_idle.wait()
        self.dispatcher.buffer.clear()  # never started: their leases are handed back below
        for entry in list(state.running.values()):
            entry.stop("shutdown")
        await self._wait_for_cancelled()
        # 4.
        for slot in slots.tasks:
            slot.cancel()
        stuck = {entry.task for entry in state.running.values()}
        alive = [slot for slot in slots.tasks if slot not in stuck]
        if alive:
            await asyncio.wait(alive, timeout=CANCELLED_WAIT)
        # Still running: its lease runs out. What ended by now is handed back below.
        for activity_id in state.running:
            state.held.pop(activity_id, None)
        # 5.
        await self.acks.drain(ACK_DRAIN)
        with contextlib.suppress(*REDIS_ERRORS):
            await self.store.close_waiter(self.dispatcher.waiter)
        # 6.
        await self._release_held()
        # 7.
        self.acks.close()
        loops = [t for t in (self._heartbeat_task, self._ack_task) if t is not None]
        for loop_task in loops:
            loop_task.cancel()
        if loops:
            await asyncio.wait(loops, timeout=BLOCK_SECONDS + 3)
        with contextlib.suppress(TimeoutError, *REDIS_ERRORS):
            async with asyncio.timeout(2.0):
                await remove_worker(self.store.redis, self.store.keys, self.worker_id)
        slots.deadlines.close()
        if self.stall_guard is not None:
            await self.stall_guard.stop()

    async def _wait_for_cancelled(self) -> None:
        """Wait up to ``CANCELLED_WAIT`` for the cancelled handlers to end; log those that
        ignore cancellation."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CANCELLED_WAIT):
                await self.slots.all_idle.wait()
        if self.state.running:
            log.error(
                "activities %s did not stop within %.1fs of being cancelled (their handlers"
                " ignore cancellation): left running, their leases return when they expire",
                ", ".join(sorted(self.state.running)),
                CANCELLED_WAIT,
            )

    async def _release_held(self) -> None:
        held_map = self.state.held
        held = list(held_map.items())
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
        held_map.clear()
