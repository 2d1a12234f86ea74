"""``ResultListener``: resolves waiting futures from one pub/sub subscription per client.

Every terminal transition (complete, dead-letter, cancel) publishes the activity id on the
queue's done channel. The listener subscribes once, keeps the waiters by id, and on a message
for an id someone waits for, reads the stored result. After a reconnect it re-reads the
state of every waiter, so nothing waits forever for a message lost while Redis was away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from .batching import Coalescer
from .connection import REDIS_ERRORS, drop_connections, translate_errors
from .errors import ActivityNotFoundError, RedisUnavailableError
from .pubsub import PUBSUB_IDLE, read_messages
from .record import ResultDocument
from .store import QueueStore
from .transport import close_subscription, subscribe_confirmed

__all__ = ["ResultListener"]

log = logging.getLogger("runnerq.results")

_RESULT_OR_GONE = ResultDocument | None | ActivityNotFoundError
# (TimeoutError: no confirmation of the subscription in time)
_LOST: tuple[type[BaseException], ...] = (*REDIS_ERRORS, TimeoutError)
# How long Redis has to confirm a subscription: a healthy one does in milliseconds.
CONFIRM = 5.0


class ResultListener:
    def __init__(self, store: QueueStore, connect_timeout: float = 30.0) -> None:
        self._store = store
        self._connect_timeout = connect_timeout
        self._waiters: dict[str, set[asyncio.Future[ResultDocument]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self._fetcher: Coalescer[str, _RESULT_OR_GONE] = Coalescer(self._fetch, 500)
        self._resolving: set[asyncio.Task[None]] = set()
        self._closing: set[asyncio.Future[None]] = set()

    async def wait(self, activity_id: str, timeout: float | None) -> ResultDocument:
        """The activity's terminal document. Raises ``TimeoutError`` after ``timeout``."""
        await self._ensure_subscribed()
        future: asyncio.Future[ResultDocument] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(activity_id, set()).add(future)
        try:
            async with asyncio.timeout(timeout):
                state = await self._read(activity_id)
                if isinstance(state, ActivityNotFoundError):
                    raise state
                if state is not None:
                    return state
                return await future
        finally:
            waiters = self._waiters.get(activity_id)
            if waiters is not None:
                waiters.discard(future)
                if not waiters:
                    del self._waiters[activity_id]

    async def _read(self, activity_id: str) -> _RESULT_OR_GONE:
        with translate_errors("cannot read the result"):
            return await self._fetcher.submit(activity_id)

    async def _fetch(self, ids: Sequence[str]) -> list[_RESULT_OR_GONE]:
        store = self._store
        async with store.redis.pipeline(transaction=True) as pipe:
            for activity_id in ids:
                pipe.get(store.keys.result(activity_id))
                # HSTRLEN, not HEXISTS: redis-py's cluster transactions trip over HEXISTS's
                # reply callback. A stored record is never empty: length > 0 means unfinished.
                pipe.hstrlen(store.keys.jobs, activity_id)
            raw = await pipe.execute()
        out: list[_RESULT_OR_GONE] = []
        for i, activity_id in enumerate(ids):
            doc, pending = raw[2 * i], raw[2 * i + 1]
            if doc is not None:
                out.append(ResultDocument.decode(doc))
            elif int(pending) > 0:
                out.append(None)
            else:
                out.append(ActivityNotFoundError(activity_id))
        return out

    async def _ensure_subscribed(self) -> None:
        if self._task is None or self._task.done():
            self._subscribed.clear()
            self._task = asyncio.create_task(self._listen(), name="runnerq-results")
        if not self._subscribed.is_set():
            try:
                async with asyncio.timeout(self._connect_timeout):
                    await self._subscribed.wait()
            except TimeoutError:
                raise RedisUnavailableError(
                    f"cannot subscribe to results within {self._connect_timeout:g}s"
                ) from None

    async def _listen(self) -> None:
        delay = 0.05
        first = True
        while True:
            pubsub = self._store.redis.pubsub()
            try:
                # Confirmed before the waiters are read again, so that a result stored
                # between the two is either read or announced; and a lost connection ends
                # the read below (it is not made again silently), so it is read again here.
                try:
                    await subscribe_confirmed(
                        pubsub, self._store.keys.done_channel, min(self._connect_timeout, CONFIRM)
                    )
                except TimeoutError:
                    # The pool handed out a connection that went silent (half-open): drop
                    # them all, so that the next try opens a new one.
                    await drop_connections(self._store.redis)
                    raise ConnectionError("no confirmation of the subscription") from None
                self._subscribed.set()
                delay = 0.05
                if not first:
                    await self._recheck_all()
                first = False
                await read_messages(pubsub, self._on_done)
            except _LOST as exc:
                self._subscribed.clear()
                log.warning("result subscription lost (%s); retrying in %.2fs", exc, delay)
                # The pool's other connections date from the same time, and may have gone
                # silent too (half-open): the next subscription and the re-read of the
                # waiters get new ones rather than wait on those.
                await drop_connections(self._store.redis)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
            finally:
                with contextlib.suppress(Exception):
                    # Closing goes on even if this task is cancelled; aclose() waits for it, so
                    # no socket outlives the client.
                    closing = asyncio.ensure_future(close_subscription(pubsub))
                    self._closing.add(closing)
                    closing.add_done_callback(self._closing.discard)
                    await asyncio.shield(closing)

    def _on_done(self, activity_id: str) -> None:
        if activity_id in self._waiters:
            task = asyncio.create_task(self._resolve(activity_id))
            self._resolving.add(task)
            task.add_done_callback(self._resolving.discard)

    async def _resolve(self, activity_id: str) -> None:
        try:
            state = await self._fetcher.submit(activity_id)
        except REDIS_ERRORS:
            return  # the recheck after reconnect resolves it
        self._settle(activity_id, state)

    def _settle(self, activity_id: str, state: _RESULT_OR_GONE) -> None:
        if state is None:
            return
        for future in list(self._waiters.get(activity_id, ())):
            if future.done():
                continue
            if isinstance(state, ActivityNotFoundError):
                future.set_exception(state)
            else:
                future.set_result(state)

    async def _recheck_all(self) -> None:
        ids = list(self._waiters)
        if not ids:
            return
        try:
            async with asyncio.timeout(PUBSUB_IDLE):
                states = await self._fetch(ids)
        except TimeoutError:
            # The pool's connections went silent too: drop them and try again.
            await drop_connections(self._store.redis)
            raise ConnectionError("no answer while re-reading waiters' results") from None
        for activity_id, state in zip(ids, states, strict=True):
            self._settle(activity_id, state)

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        for waiters in self._waiters.values():
            for future in waiters:
                if not future.done():
                    future.set_exception(RedisUnavailableError("the client was closed"))
