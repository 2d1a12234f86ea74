"""``CancelListener``: stops the handlers of activities cancelled while they run (the
queue's cancel channel, over pub/sub)."""

from __future__ import annotations

import asyncio
import contextlib

from .backoff import Backoff
from .pubsub import read_messages
from .store import QueueStore
from .worker_state import WorkerState

__all__ = ["CancelListener"]


class CancelListener:
    def __init__(self, state: WorkerState, store: QueueStore) -> None:
        self._state = state
        self._store = store
        self.closing: set[asyncio.Future[None]] = set()  # subscriptions being closed

    def _cancelled(self, activity_id: str) -> None:
        self._state.stop_activity(activity_id, "cancelled")

    async def run(self) -> None:
        state = self._state
        backoff = Backoff()
        while not state.stopping:
            pubsub = self._store.redis.pubsub()
            try:
                await pubsub.subscribe(self._store.keys.cancel_channel)
                backoff.reset()
                await read_messages(pubsub, self._cancelled)
            except Exception as exc:
                await backoff.sleep("listening for cancellations", exc)
            finally:
                with contextlib.suppress(Exception):
                    closing = asyncio.ensure_future(pubsub.aclose())
                    self.closing.add(closing)
                    closing.add_done_callback(self.closing.discard)
                    await asyncio.shield(closing)  # the worker's stop waits for it
