"""``StallGuard``: keeps a worker's leases alive while its event loop is blocked.

A handler that blocks the event loop (``time.sleep``, CPU-bound work, a synchronous client)
stops every coroutine of its worker, the heartbeat among them. Without a guard the leases of
everything the worker holds expire, another worker re-runs those activities, and when the
blocking handler runs there it blocks that worker too: the activity and every activity that
shares a worker with it are re-run until ``max_redeliveries`` dead-letters them.

The guard is a daemon thread. The worker's event loop stamps a tick every ``check`` seconds;
when the stamp is older than two checks the loop is blocked, and the thread renews the held
leases itself (the same ``heartbeat`` script, with the lease tokens: it can only extend leases
the worker still holds), every ``renew_every`` seconds, over a connection of its own opened at
the first stall in an event loop of its own. It does so for up to ``limit`` seconds of one
stall: a loop blocked longer is taken to be stuck for good, and its leases are left to expire
so that other workers take the activities over.

The thread never touches the worker's state: it reads a snapshot of the held leases (a copy of
a dict of strings, atomic under the GIL) and hands what it learnt back to the event loop with
``call_soon_threadsafe``, which runs it once the loop is free again, after whatever was
already due then; so it also keeps ``renewed_at`` and ``lost`` for the worker to read
directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .config import QueueSettings, RedisConfig
from .connection import connect
from .scripts import Scripts
from .store import QueueStore

__all__ = ["StallGuard", "StallPolicy"]

log = logging.getLogger("runnerq.worker")

# How long one renewal may take before the guard gives up on it (it tries again next turn).
_RENEW_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class StallPolicy:
    """When the guard acts: ``check`` (seconds between ticks and checks; a stall is noticed
    after two to three of them), ``renew_every`` (seconds between renewals during a stall),
    ``lease`` (the lease length a renewal sets) and ``limit`` (seconds of one stall after which
    the guard stops renewing)."""

    check: float
    renew_every: float
    lease: float
    limit: float

    @classmethod
    def for_worker(cls, lease: float, heartbeat: float, limit: float) -> StallPolicy:
        # The last heartbeat may be up to one interval old when the loop blocks, so the first
        # renewal must come within lease - heartbeat; three checks of at most heartbeat / 4
        # leave a quarter of that margin even for the tightest lease WorkerSettings allows.
        check = min(1.0, heartbeat / 4, max(lease - heartbeat, 0.01) / 4)
        return cls(check=check, renew_every=heartbeat, lease=lease, limit=limit)


Held = list[tuple[str, str]]


class StallGuard:
    """See the module docstring. ``held`` returns the (id, token) pairs to renew; ``blocker``
    names the activity whose task is running on the blocked loop, if any; ``on_lost`` gets the
    ids a renewal found no longer held, on the event loop; ``on_stall_end`` gets the length of
    a stall the guard saw, on the event loop."""

    def __init__(
        self,
        *,
        url: str,
        redis_config: RedisConfig,
        queue_settings: QueueSettings,
        policy: StallPolicy,
        held: Callable[[], Held],
        blocker: Callable[[asyncio.Task[object] | None], str | None],
        on_lost: Callable[[list[str]], None],
        on_stall_end: Callable[[float], None],
    ) -> None:
        self._url = url
        self._redis_config = redis_config
        self._queue_settings = queue_settings
        self.policy = policy
        self._held = held
        self._blocker = blocker
        self._on_lost = on_lost
        self._on_stall_end = on_stall_end
        self._tick = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="runnerq-stall-guard", daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.renewals = 0  # renewals sent during stalls (for tests and diagnostics)
        # Read by the worker directly (a callback runs only after what was already due when
        # the loop wakes): the local time of the last renewal and the ids renewals found
        # lost, checked before a prefetched activity starts (a float store and set updates
        # are atomic in CPython).
        self.renewed_at = 0.0
        self.lost: set[str] = set()

    def start(self) -> None:
        """Start ticking on the running event loop, and the guard thread."""
        self._loop = asyncio.get_running_loop()
        self._stamp()
        self._thread.start()

    async def stop(self) -> None:
        self._stop.set()
        if self._timer is not None:
            self._timer.cancel()
        if self._thread.is_alive():
            await asyncio.to_thread(self._thread.join, _RENEW_TIMEOUT + 1)

    def _stamp(self) -> None:
        self._tick = time.monotonic()
        assert self._loop is not None
        self._timer = self._loop.call_later(self.policy.check, self._stamp)

    # -- the thread --------------------------------------------------------------------

    def _run(self) -> None:
        runner: asyncio.Runner | None = None
        store: QueueStore | None = None
        stalled_since: float | None = None
        last_renewal = 0.0
        gave_up = False
        policy = self.policy
        try:
            while not self._stop.wait(policy.check):
                now = time.monotonic()
                behind = now - self._tick
                if behind <= 2 * policy.check:
                    if stalled_since is not None:
                        self._call_loop(self._on_stall_end, now - stalled_since)
                        stalled_since = None
                        gave_up = False
                    continue
                if stalled_since is None:
                    stalled_since = self._tick
                    self._warn_blocked(behind)
                if behind > policy.limit:
                    if not gave_up:
                        gave_up = True
                        log.error(
                            "event loop blocked for %.1fs, longer than the stall limit (%gs):"
                            " leaving this worker's leases to expire; other workers will take"
                            " its activities over",
                            behind,
                            policy.limit,
                        )
                    continue
                if now - last_renewal < policy.renew_every:
                    continue
                held = self._snapshot()
                if not held:
                    continue
                if runner is None:
                    runner = asyncio.Runner()
                if store is None:
                    store = self._new_store()
                if runner.run(self._renew(store, held, now)):
                    last_renewal = now
        finally:
            if runner is not None:
                if store is not None:
                    runner.run(_close(store))
                runner.close()

    def _snapshot(self) -> Held:
        for _ in range(3):
            try:
                return self._held()
            except RuntimeError:  # changed while copied (the loop is busy, not blocked)
                continue
        return []

    def _warn_blocked(self, behind: float) -> None:
        blocker = None
        if self._loop is not None:
            try:
                blocker = self._blocker(asyncio.current_task(self._loop))
            except RuntimeError:
                blocker = None
        log.warning(
            "event loop blocked for %.1fs%s: a handler must not block it (use"
            " asyncio.to_thread for blocking calls); keeping this worker's leases meanwhile",
            behind,
            f" by activity {blocker}" if blocker else "",
        )

    def _new_store(self) -> QueueStore:
        client = connect(self._url, self._redis_config)
        return QueueStore(client, self._queue_settings, Scripts(client))

    async def _renew(self, store: QueueStore, held: Held, sent_at: float) -> bool:
        try:
            async with asyncio.timeout(_RENEW_TIMEOUT):
                lost = await store.heartbeat(self.policy.lease, held)
        except Exception as exc:
            log.warning("stall guard could not renew leases (%s: %s)", type(exc).__name__, exc)
            return False
        self.renewals += 1
        self.lost.update(lost)
        self.renewed_at = sent_at
        if lost:
            self._call_loop(self._on_lost, lost)
        return True

    def _call_loop(self, callback: Callable[..., None], *args: object) -> None:
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # closed: the worker is gone
                self._loop.call_soon_threadsafe(callback, *args)


async def _close(store: QueueStore) -> None:
    with contextlib.suppress(Exception):  # best effort at shutdown
        await store.redis.aclose()
