"""arq: asyncio worker polling a ZSET (``poll_delay`` 0.5 s by default), results kept."""

from __future__ import annotations

import argparse
from typing import Any

from arq import create_pool  # type: ignore[import-not-found,import-untyped,unused-ignore]
from arq.connections import RedisSettings  # type: ignore[import-not-found,import-untyped,unused-ignore]
from arq.worker import Worker, func  # type: ignore[import-not-found,import-untyped,unused-ignore]

from benchmarks.peers import _common as c


async def noop(ctx: dict[str, Any], i: int) -> None:
    c.hit(i)


def worker(a: argparse.Namespace) -> None:
    w = Worker(
        functions=[func(noop, name="noop")],
        redis_settings=RedisSettings.from_dsn(a.url),
        max_jobs=a.concurrency,
    )
    w.run()  # what ``arq`` itself runs (on the loop the worker was made with)


class Producer:
    supports_bulk = False

    def __init__(self, a: argparse.Namespace) -> None:
        self.settings = RedisSettings.from_dsn(a.url)

    async def open(self) -> None:
        self.pool = await create_pool(self.settings)

    async def one(self, idx: int, delay: float | None) -> None:
        await self.pool.enqueue_job("noop", idx, _defer_by=delay)

    async def bulk(self, idxs: list[int]) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        await self.pool.aclose()


if __name__ == "__main__":
    c.main(worker=worker, async_producer=Producer)
