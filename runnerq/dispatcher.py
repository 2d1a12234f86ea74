"""``Dispatcher``: claims ready activities into the worker's prefetch buffer.

It claims up to "free slots" plus the prefetch buffer's room per round trip, sending the
acknowledgements waiting at that moment in the same round trip. When the queue is drained it
blocks on the queue's notify list (BLPOP) with the next claim pipelined behind it, so Redis
claims for it the moment an enqueue's wake-up token arrives (one round trip from enqueue to a
claimed activity); an 's' token wakes the scheduler.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from typing import NamedTuple

from .acks import AckBatcher
from .backoff import Backoff
from .connection import REDIS_ERRORS
from .metrics import REDIS_ERRORS as REDIS_ERRORS_METRIC
from .metrics import MetricsSink
from .stall_guard import StallGuard
from .store import Claim, QueueStore, Waiter
from .worker_state import WorkerState

__all__ = ["BLOCK_SECONDS", "Buffered", "Dispatcher"]

log = logging.getLogger("runnerq.worker")

# Short, so an idle dispatcher's BLPOP never meets a configured socket_timeout (RedisConfig) of
# 2 s or more, and a stopping worker's loops end soon even if a cancellation was swallowed.
BLOCK_SECONDS = 2
_NOTHING_LOST: AbstractSet[str] = frozenset()


class Buffered(NamedTuple):
    """A claimed activity that no slot started yet."""

    activity_id: str
    raw: str  # its record, as claimed
    token: str  # its lease token
    claimed_at: float  # claim time by the Redis clock
    claim_sent: float  # local monotonic time the claim was sent (its lease began no earlier)
    held_since: float  # local time it was added to ``held`` (renewals sent later cover it)


class Dispatcher:
    """Keeps the prefetch buffer filled while the worker runs."""

    def __init__(
        self,
        state: WorkerState,
        store: QueueStore,
        acks: AckBatcher,
        metrics: MetricsSink,
        worker_id: str,
        wake_slots: Callable[[int], None],
        schedule_changed: Callable[[], None],
        stall_guard: Callable[[], StallGuard | None],
    ) -> None:
        self._state = state
        self._store = store
        self._acks = acks
        self._metrics = metrics
        self._worker_id = worker_id
        self._wake_slots = wake_slots
        self._schedule_changed = schedule_changed
        self._stall_guard = stall_guard
        self.waiter: Waiter = store.waiter(worker_id)  # the wait for work
        self.buffer: collections.deque[Buffered] = collections.deque()
        self.free = asyncio.Event()  # room in the buffer (or the worker stops)
        self.paused = False
        settings = state.settings
        prefetch = settings.max_workers if settings.prefetch is None else settings.prefetch
        self._capacity = settings.max_workers + prefetch
        # Refill the buffer in batches, not one activity at a time.
        self._low_water = max(1, min(settings.claim_batch, self._capacity // 2))

    def room(self) -> int:
        """How many more activities this worker may hold: slots plus its prefetch buffer."""
        return self._capacity - len(self._state.running) - len(self.buffer)

    def slot_freed(self) -> None:
        """A slot finished an activity. Wake the dispatcher only when it has something to do:
        room for a whole refill, room at all, or nothing left to run (a wake-up per finished
        activity would cost a loop turn each)."""
        room = self.room()
        if room == 1 or room >= self._low_water or not self.buffer:
            self.free.set()

    def block_seconds(self) -> float:
        """How long an idle dispatcher's wait for a wake-up lasts before it claims anyway."""
        s = self._state.settings
        # A quarter lease at most: what such a wait claims is not started if its lease may have
        # run out, and the lease is taken as starting when the wait began (``next_buffered``).
        return min(BLOCK_SECONDS, s.schedule_poll_interval, s.lease_duration / 4)

    async def run(self) -> None:
        state = self._state
        backoff = Backoff(state.stop_event)
        settings = state.settings
        drained = False  # the last claim found less than it asked for: wait for a wake-up
        while not state.stopping:
            room = self.room()
            hungry = not self.buffer and len(state.running) < settings.max_workers
            if room < self._low_water and not hungry:
                self.free.clear()
                if not state.stopping:
                    await self.free.wait()
                drained = False  # full for a while: claim what came meanwhile at once
                continue
            want = min(room, settings.claim_batch)
            sent_at = time.monotonic()
            try:
                claim = await (self._wait_then_claim(want) if drained else self._claim(want))
            except REDIS_ERRORS as exc:
                drained = False
                self._metrics.inc_counter(REDIS_ERRORS_METRIC)
                await backoff.sleep("claiming", exc)
                continue
            except Exception as exc:
                drained = False
                await backoff.sleep("claiming", exc)
                continue
            backoff.reset()
            state.redis_answered()
            if claim is None:
                if not self.paused:
                    log.info("queue %s is paused: not claiming", self._store.keys.queue)
                self.paused = True
                drained = True  # wait for a wake-up (resuming sends one), then try again
                continue
            if self.paused:
                log.info("queue %s resumed", self._store.keys.queue)
                self.paused = False
                self.free.set()
            self._take(claim, sent_at)
            if state.stopping:
                return  # what was just claimed is handed straight back by the worker's stop
            self._wake_slots(len(self.buffer))
            drained = len(claim.items) < want
            if drained and claim.items:
                # Let the woken slots start their activities before this loop packs and sends
                # its wait (an idle worker's enqueue-to-start latency). Not under load: there
                # the next claim goes out at once, while the slots run this batch.
                await asyncio.sleep(0)

    def _take(self, claim: Claim, sent_at: float) -> None:
        state = self._state
        held_since = time.monotonic()
        max_redeliveries = state.settings.max_redeliveries
        for activity_id, times in claim.redelivered.items():
            if times >= max_redeliveries:
                state.poisoned[activity_id] = times
        held = state.held
        token = claim.token
        now = claim.now
        append = self.buffer.append
        new = tuple.__new__  # (a NamedTuple's own __new__ is a Python call per activity)
        for activity_id, raw in claim.items:
            held[activity_id] = token
            append(new(Buffered, (activity_id, raw, token, now, sent_at, held_since)))

    async def _wait_then_claim(self, want: int) -> Claim | None:
        """Block until a wake-up (an enqueue, a promotion, a reaped lease, stop) and claim in
        the same round trip; acknowledgements go on their own meanwhile (the ack batcher)."""
        store = self._store
        settings = self._state.settings
        schedule_changed, claim = await store.wait_then_claim(
            self.waiter,
            self.block_seconds(),
            store.claim_call(want, settings.lease_duration, self._worker_id),
        )
        if schedule_changed:
            self._schedule_changed()  # the earliest due time may have changed (enqueue.lua)
        return claim

    async def _claim(self, want: int) -> Claim | None:
        """Claim, sending the acknowledgements waiting at that moment in the same round trip
        (the ack batcher sends them on its own when the dispatcher is idle)."""
        store = self._store
        call = store.claim_call(want, self._state.settings.lease_duration, self._worker_id)
        return store.parse_claim([await self._acks.send_along(call)])

    def next_buffered(self) -> Buffered | None:
        """The next buffered activity whose lease is still good, or None."""
        state = self._state
        buffer = self.buffer
        # A buffered lease older than this may have expired unseen (the event loop was blocked
        # and no heartbeat ran): it is not started; the reaper hands it out again.
        stale = time.monotonic() - 0.8 * state.settings.lease_duration
        renewed_at: float = state.renewed_at
        lost: AbstractSet[str] = _NOTHING_LOST
        guard = self._stall_guard()
        if guard is not None:
            renewed_at = max(renewed_at, guard.renewed_at)
            lost = guard.lost
        held = state.held
        poisoned = state.poisoned
        while buffer and not state.stopping:
            item = buffer.popleft()
            activity_id, _, token, _, claim_sent, held_since = item
            if held.get(activity_id) != token or activity_id in lost:
                poisoned.pop(activity_id, None)
                continue  # cancelled or lease lost while it waited in the buffer
            # A renewal covers the lease only if it was sent after the lease was in ``held``
            # (a claim reply read after a stall was not in the guard's renewals).
            fresh_since = max(claim_sent, renewed_at) if renewed_at >= held_since else claim_sent
            if fresh_since < stale:
                held.pop(activity_id, None)
                poisoned.pop(activity_id, None)
                continue
            return item
        return None
