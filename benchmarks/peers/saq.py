"""SAQ: asyncio worker, BLMOVE dequeue, scheduled jobs swept every second by default."""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from saq import Queue, Worker  # type: ignore[import-not-found,import-untyped,unused-ignore]

from benchmarks.peers import _common as c


async def noop(ctx: dict[str, Any], *, i: int) -> None:
    c.hit(i)


def worker(a: argparse.Namespace) -> None:
    async def run() -> None:
        queue = Queue.from_url(a.url)
        await queue.connect()
        await Worker(queue, functions=[("noop", noop)], concurrency=a.concurrency).start()

    asyncio.run(run())


class Producer:
    supports_bulk = False

    def __init__(self, a: argparse.Namespace) -> None:
        self.queue = Queue.from_url(a.url)

    async def open(self) -> None:
        await self.queue.connect()

    async def one(self, idx: int, delay: float | None) -> None:
        if delay:
            await self.queue.enqueue("noop", i=idx, scheduled=time.time() + delay)
        else:
            await self.queue.enqueue("noop", i=idx)

    async def bulk(self, idxs: list[int]) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        await self.queue.disconnect()


if __name__ == "__main__":
    c.main(worker=worker, async_producer=Producer)
