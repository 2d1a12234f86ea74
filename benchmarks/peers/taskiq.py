"""taskiq with taskiq-redis's ``RedisStreamBroker`` (acknowledged streams), one receiver in
one process; no result backend (the default)."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from taskiq.api import run_receiver_task  # type: ignore[import-not-found,import-untyped,unused-ignore]
from taskiq_redis import RedisStreamBroker  # type: ignore[import-not-found,import-untyped,unused-ignore]

from benchmarks.peers import _common as c


def _broker(url: str) -> tuple[Any, Any]:
    broker = RedisStreamBroker(url=url)

    @broker.task(task_name="noop")  # type: ignore[untyped-decorator,unused-ignore]
    async def noop(i: int) -> None:
        c.hit(i)

    return broker, noop


def worker(a: argparse.Namespace) -> None:
    broker, _ = _broker(a.url)
    asyncio.run(run_receiver_task(broker, max_async_tasks=a.concurrency, run_startup=True))


class Producer:
    supports_bulk = False

    def __init__(self, a: argparse.Namespace) -> None:
        self.broker, self.task = _broker(a.url)

    async def open(self) -> None:
        await self.broker.startup()

    async def one(self, idx: int, delay: float | None) -> None:
        await self.task.kiq(idx)

    async def bulk(self, idxs: list[int]) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        await self.broker.shutdown()


if __name__ == "__main__":
    c.main(worker=worker, async_producer=Producer)
