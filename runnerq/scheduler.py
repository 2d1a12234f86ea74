"""``Scheduler``: promotes scheduled activities (delayed, timed, retries) to the ready set
when they are due, sleeping until the next due time (a local timer, so precision does not
depend on Redis's 100 ms blocking-timeout resolution) or until an earlier one is added."""

from __future__ import annotations

import asyncio
import contextlib

from .backoff import Backoff
from .store import QueueStore
from .worker_state import WorkerState

__all__ = ["Scheduler"]


class Scheduler:
    def __init__(self, state: WorkerState, store: QueueStore) -> None:
        self._state = state
        self._store = store
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
                _, next_due = await self._store.promote_due()  # promoted ones wake claimers
            except Exception as exc:
                await backoff.sleep("promoting scheduled activities", exc)
                continue
            backoff.reset()
            wait = poll if next_due is None else min(next_due, poll)
            if wait <= 0:
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self.wake_event.wait()
