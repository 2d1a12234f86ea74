"""``ProgressReporter``: what ``ActivityContext.progress`` writes, coalesced.

A handler may report progress in a tight loop; the reporter writes at most one value per
``PROGRESS_INTERVAL`` seconds per activity. A report within the interval of the last write
is kept (the last one wins) and written when the interval ends, and the slot flushes what is
left before the activity's outcome is sent, so the final value is never lost. Each write is
one script call that stores the value only while the worker holds the lease
(``progress.lua``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from .connection import REDIS_ERRORS
from .store import QueueStore

__all__ = ["PROGRESS_INTERVAL", "ProgressReporter"]

log = logging.getLogger("runnerq.worker")

# Seconds between two progress writes of one activity, at least.
PROGRESS_INTERVAL = 0.15


class ProgressReporter:
    __slots__ = ("_activity_id", "_asleep", "_last", "_pending", "_store", "_task", "_token")

    def __init__(self, store: QueueStore, activity_id: str, token: str) -> None:
        self._store = store
        self._activity_id = activity_id
        self._token = token
        self._last = -PROGRESS_INTERVAL  # monotonic time of the last write
        self._pending: tuple[str, str] | None = None
        self._task: asyncio.Task[None] | None = None  # a write later (sleeps, then writes)
        self._asleep = False

    async def report(self, args: tuple[str, str]) -> None:
        """Write ``args`` (progress.lua's fraction and message) now, or within the interval."""
        self._pending = args
        if self._task is not None:
            return  # a write is due: it takes the latest value
        wait = self._last + PROGRESS_INTERVAL - time.monotonic()
        if wait <= 0:
            await self._write()
        else:
            self._task = asyncio.create_task(self._later(wait), name="runnerq-progress")

    async def _later(self, wait: float) -> None:
        try:
            while True:
                self._asleep = True
                try:
                    await asyncio.sleep(wait)
                finally:
                    self._asleep = False
                await self._write()
                if self._pending is None:
                    return
                wait = PROGRESS_INTERVAL  # reported again while it wrote
        finally:
            if self._task is asyncio.current_task():
                self._task = None

    async def _write(self) -> None:
        args = self._pending
        if args is None:
            return
        self._pending = None
        self._last = time.monotonic()
        try:
            await self._store.report_progress(self._activity_id, self._token, *args)
        except REDIS_ERRORS as exc:  # progress is advisory: the activity goes on
            log.warning("activity %s: progress not written (%s)", self._activity_id, exc)

    async def flush(self) -> None:
        """Write what is pending now (the activity ended)."""
        task, self._task = self._task, None
        if task is not None:
            if self._asleep:  # not writing yet: this write takes its value
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task  # (one writing now ends first: writes stay in order)
        await self._write()

    def discard(self) -> None:
        """Drop what is pending (the lease is gone)."""
        self._pending = None
        if self._task is not None:
            self._task.cancel()
            self._task = None
