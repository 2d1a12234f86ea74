"""``Scheduler``: promotes scheduled activities (delayed, timed, retries) to the ready set
when they are due, and fires the queue's schedules (``schedules.ScheduleFirer``) when a tick
comes, sleeping until the next due time or tick (a local timer, so precision does not depend
on Redis's 100 ms blocking-timeout resolution) or until an earlier one is added."""

from __future__ import annotations

import asyncio
import contextlib

from .backoff import Backoff
from .schedules import ScheduleFirer
from .store import QueueStore
from .worker_state import WorkerState

__all__ = ["Scheduler"]


class Scheduler:
    def __init__(
        self, state: WorkerState, store: QueueStore, firer: ScheduleFirer | None = None
    ) -> None:
        self._state = state
        self._store = store
        self._firer = firer
        self.wake_event = asyncio.Event()  # the earliest due time may have changed

    def wake(self) -> None:
        self.wake_event.set()

    async def run(self) -> None:
        state = self._state
        backoff = Backoff()
        poll = state.settings.schedule_poll_interval
        while not state.stopping:
            self.wake_event.clear()
            try:
                # (promoted ones wake claimers; one round trip when no tick has come)
                _, next_due, next_tick = await self._store.promote_due()
                if next_tick is not None and next_tick <= 0 and self._firer is not None:
                    next_tick = await self._firer.fire_due()
            except Exception as exc:
                await backoff.sleep("promoting scheduled activities", exc)
                continue
            backoff.reset()
            waits = [poll] + [t for t in (next_due, next_tick) if t is not None]
            wait = min(waits)
            if wait <= 0:
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self.wake_event.wait()
