"""runnerq, from this repository (the harness's own interpreter)."""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

from benchmarks.peers import _common as c
from runnerq import ActivityClient, ActivityContext, ActivityOption, WorkerEngine
from runnerq.prometheus import PrometheusMetrics


def worker(a: argparse.Namespace) -> None:
    # Metrics on, as `runnerq worker --metrics-port` runs in production (nothing scrapes them
    # during the run; a scrape costs only when it comes).
    engine = WorkerEngine(
        redis_url=a.url,
        queue_name=a.queue,
        max_workers=a.concurrency,
        metrics=PrometheusMetrics(a.queue),
    )

    @engine.activity("noop")
    async def noop(payload: Any, ctx: ActivityContext) -> None:
        c.hit(payload)

    @engine.activity("tick")  # what the schedules of the schedule rows enqueue (counted too)
    async def tick(payload: Any, ctx: ActivityContext) -> None:
        c.hit(0)

    asyncio.run(engine.start())


def _limit_keys(spec: str) -> Any:
    """``RUNNERQ_BENCH_LIMIT_KEYS`` (the limit rows, benchmarks/limits.py): "spread:N" gives
    activity i the limit key i % N; "skew:P" gives P% of them one key and the rest 100 keys."""
    kind, _, arg = spec.partition(":")
    if kind == "spread":
        keys = [ActivityOption(limit_key=f"k{i}") for i in range(int(arg))]
        return lambda i: keys[i % len(keys)]
    if kind == "skew":
        big, small = (
            ActivityOption(limit_key="big"),
            [ActivityOption(limit_key=f"s{i}") for i in range(100)],
        )
        share = int(arg)
        return lambda i: big if i % 100 < share else small[i % len(small)]
    raise SystemExit(f"RUNNERQ_BENCH_LIMIT_KEYS: spread:N or skew:P, not {spec!r}")


class Producer:
    supports_bulk = True

    def __init__(self, a: argparse.Namespace) -> None:
        self.client = ActivityClient(a.url, a.queue)
        spec = os.environ.get("RUNNERQ_BENCH_LIMIT_KEYS")
        self.key_of = _limit_keys(spec) if spec else None

    async def open(self) -> None:
        await self.client.connect()

    async def one(self, idx: int, delay: float | None) -> None:
        options = ActivityOption(delay=delay) if delay else None
        await self.client.execute_activity("noop", idx, options)

    async def bulk(self, idxs: list[int]) -> None:
        if self.key_of is not None:
            await self.client.enqueue_many([("noop", i, self.key_of(i)) for i in idxs])
            return
        await self.client.enqueue_many([("noop", i) for i in idxs])

    async def close(self) -> None:
        await self.client.aclose()


if __name__ == "__main__":
    c.main(worker=worker, async_producer=Producer)
