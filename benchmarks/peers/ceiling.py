"""The bare-bones reference queue of ``benchmarks.ceiling`` (the harness's interpreter)."""

from __future__ import annotations

import argparse
import asyncio
import json

from benchmarks.ceiling import CeilingClient, CeilingWorker
from benchmarks.peers import _common as c


async def _noop(payload: int) -> None:
    c.hit(payload)


def worker(a: argparse.Namespace) -> None:
    asyncio.run(CeilingWorker(a.url, a.queue, _noop, a.concurrency).run())


class Producer:
    supports_bulk = True

    def __init__(self, a: argparse.Namespace) -> None:
        self.client = CeilingClient(a.url, a.queue)

    async def open(self) -> None:
        await self.client.connect()

    async def one(self, idx: int, delay: float | None) -> None:
        await self.client.enqueue(json.dumps(idx), delay or 0.0)

    async def bulk(self, idxs: list[int]) -> None:
        await self.client.enqueue_many([json.dumps(i) for i in idxs])

    async def close(self) -> None:
        await self.client.aclose()


if __name__ == "__main__":
    c.main(worker=worker, async_producer=Producer)
