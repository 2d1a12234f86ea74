"""``CancelListener``: stops the handlers of activities cancelled while they run (the
queue's cancel channel, over pub/sub)."""

from __future__ import annotations

import asyncio
import contextlib

from .backoff import Backoff
from .pubsub import read_messages
from .store import QueueStore
from .transport import close_subscription, subscribe_confirmed
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
                # A lost connection ends the read (it is not made again silently, losing
                # the cancellations published in between).
                await subscribe_confirmed(pubsub, self._store.keys.cancel_channel, 5.0)
                backoff.reset()
                await read_messages(pubsub, self._cancelled)
            except Exception as exc:
                await backoff.sleep("listening for cancellations", exc)
            finally:
                with contextlib.suppress(Exception):
                    closing = asyncio.ensure_future(close_subscription(pubsub))
                    self.closing.add(closing)
                    closing.add_done_callback(self.closing.discard)
                    await asyncio.shield(closing)  # the worker's stop waits for it
