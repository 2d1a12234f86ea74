"""runnerq closes every connection it opens: a client and an engine taken through their whole
lives (enqueue, results, bulk enqueue, cancellation, stats, a blocked event loop that starts
the stall guard, stop, close) leave no socket open.

The rest of the suite shows unclosed sockets as warnings rather than failures (pyproject.toml:
a collection may find them during any test); here, after a collection of our own, any
ResourceWarning at all fails.
"""

from __future__ import annotations

import asyncio
import gc
import time
import warnings
from typing import Any

from runnerq import ActivityClient, ActivityContext, WorkerEngine


async def _one_life(redis_url: str, queue: str) -> None:
    engine = WorkerEngine(
        redis_url=redis_url,
        queue_name=queue,
        max_workers=4,
        lease_duration=0.6,
        heartbeat_interval=0.15,
        shutdown_grace=2.0,
    )

    @engine.activity("echo")
    async def echo(payload: Any, ctx: ActivityContext) -> Any:
        return payload

    @engine.activity("block")
    async def block(payload: Any, ctx: ActivityContext) -> None:
        time.sleep(0.5)  # blocks the loop: the stall guard opens its own connection

    @engine.activity("slow")
    async def slow(payload: Any, ctx: ActivityContext) -> None:
        await asyncio.sleep(30)

    running = asyncio.create_task(engine.start(install_signal_handlers=False))
    async with ActivityClient(redis_url, queue) as client:
        first = await client.execute_activity("echo", {"n": 1})
        assert await first.get_result(timeout=10) == {"n": 1}
        futures = await client.enqueue_many([("echo", i) for i in range(300)])
        assert [await f.get_result(timeout=10) for f in futures[:3]] == [0, 1, 2]
        await (await client.execute_activity("block", None)).get_result(timeout=10)
        long_one = await client.execute_activity("slow", None)
        await asyncio.sleep(0.2)
        assert await client.cancel(long_one.activity_id)
        await client.get_stats()
        await engine.stop()
        await running
    await engine.aclose()


async def test_a_client_and_an_engine_leave_no_socket_open(redis_url: str, queue_name: str) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i in range(3):
            await _one_life(redis_url, f"{queue_name}-{i}")
        for _ in range(3):  # let closing transports finish (their callbacks are queued)
            await asyncio.sleep(0.01)
        gc.collect()
    leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert leaks == []
