"""``Coalescer``: many concurrent callers, one round trip.

While one batch is on its way to Redis, new items queue up; they go together in the next
batch as soon as the first returns. A lone caller sends its item itself (no added latency);
a crowd shares round trips. Used for enqueues and for fetching results.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["Coalescer"]

T = TypeVar("T")
R = TypeVar("R")


class Coalescer(Generic[T, R]):
    """Sends submitted items through ``flush`` in batches of at most ``max_batch``.

    ``flush`` returns one result per item, in order; if it raises, every caller of that
    batch gets the exception.
    """

    def __init__(
        self, flush: Callable[[Sequence[T]], Awaitable[Sequence[R]]], max_batch: int = 1000
    ) -> None:
        self._flush = flush
        self._max_batch = max_batch
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._task: asyncio.Task[None] | None = None
        self._inline: asyncio.Future[None] | None = None  # the last lone caller's send

    async def submit(self, item: T) -> R:
        if not self._sending():
            # Send this one from the caller's own task (no task to start and switch to);
            # whoever comes meanwhile queues for the drain task started after.
            self._inline = sent = asyncio.get_running_loop().create_future()
            try:
                return (await self._flush([item]))[0]
            finally:
                sent.set_result(None)
                if self._pending:
                    self._task = asyncio.create_task(self._drain())
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        return await future

    def _sending(self) -> bool:
        inline = self._inline
        return self._task is not None or (inline is not None and not inline.done())

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                try:
                    results = await self._flush([item for item, _ in batch])
                except BaseException as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    if isinstance(exc, asyncio.CancelledError):
                        raise
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:
            self._task = None

    async def aclose(self) -> None:
        """Wait for what was submitted to be sent."""
        if self._inline is not None:  # a caller sending its own; the queue follows it
            await asyncio.shield(self._inline)
        task = self._task
        if task is not None:
            await asyncio.shield(task)
