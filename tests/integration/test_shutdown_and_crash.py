"""Graceful shutdown hands unfinished work back at once; a killed worker's work is
re-delivered after its lease expires and completes exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from runnerq import ActivityClient, ActivityContext, ActivityOption
from runnerq import worker as worker_module
from runnerq.keys import QueueKeys
from tests.conftest import EngineFactory
from tests.support.polling import eventually

ROOT = Path(__file__).resolve().parents[2]


async def test_graceful_stop_finishes_short_and_hands_back_long(
    client: ActivityClient, make_engine: EngineFactory, raw_redis: aioredis.Redis
) -> None:
    engine = make_engine(
        max_workers=4, shutdown_grace=0.5, lease_duration=60, heartbeat_interval=10
    )
    started: list[str] = []

    @engine.activity("work")
    async def work(payload: Any, ctx: ActivityContext) -> Any:
        started.append(payload)
        await asyncio.sleep(0.1 if payload == "short" else 30)
        return payload

    short = await client.execute_activity("work", "short")
    long = await client.execute_activity("work", "long")
    task = asyncio.create_task(engine.start(install_signal_handlers=False))
    await eventually(lambda: _value(len(started) == 2), what="both started")
    await engine.stop()
    await task

    assert await short.get_result(timeout=1) == "short"
    keys = QueueKeys(client.queue_name)
    # Handed back at once: ready again (not waiting in-flight for its 60 s lease to expire).
    assert await raw_redis.zrange(keys.ready, 0, -1) == [long.activity_id]
    assert await raw_redis.zcard(keys.inflight) == 0
    stats = await client.get_stats()
    assert (stats.completed, stats.pending, stats.running) == (1, 1, 0)

    again = make_engine(max_workers=4)

    @again.activity("work")
    async def quick(payload: Any, ctx: ActivityContext) -> Any:
        return f"{payload} (second worker)"

    task = asyncio.create_task(again.start(install_signal_handlers=False))
    assert await long.get_result(timeout=10) == "long (second worker)"
    await again.stop()
    await task


async def test_a_handler_that_ignores_cancellation_does_not_hold_up_shutdown(
    client: ActivityClient,
    make_engine: EngineFactory,
    raw_redis: aioredis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(worker_module, "CANCELLED_WAIT", 0.3)
    engine = make_engine(
        max_workers=1, prefetch=3, shutdown_grace=0.2, lease_duration=60, heartbeat_interval=10
    )
    started = asyncio.Event()
    let_go = asyncio.Event()

    @engine.activity("stubborn")
    async def stubborn(payload: Any, ctx: ActivityContext) -> Any:
        started.set()
        while not let_go.is_set():
            # Swallowed: the kind of handler a worker must still shut down past.
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(0.02)
        return payload

    stuck = await client.execute_activity("stubborn", "stuck")
    waiting = [await client.execute_activity("stubborn", i) for i in range(3)]
    task = asyncio.create_task(engine.start(install_signal_handlers=False))
    try:
        await asyncio.wait_for(started.wait(), 10)
        worker = engine.worker
        assert worker is not None
        await eventually(lambda: _value(len(worker.held) == 4), what="all four held")
        async with asyncio.timeout(5):  # grace 0.2 s + 0.3 s for the cancelled: not forever
            await engine.stop()
        keys = QueueKeys(client.queue_name)
        # What never started is handed back at once; the stuck one keeps its lease (it may
        # still be running) until the lease expires.
        ready = set(await raw_redis.zrange(keys.ready, 0, -1))
        assert ready == {f.activity_id for f in waiting}
        assert await raw_redis.zrange(keys.inflight, 0, -1) == [stuck.activity_id]
        assert stuck.activity_id in caplog.text
        assert "did not stop" in caplog.text
        let_go.set()  # it ends now, after the stop: its outcome cannot be sent, and says so
        await eventually(
            lambda: _value("ended after the worker stopped" in caplog.text), what="the warning"
        )
    finally:
        let_go.set()
        await task


async def test_clean_shutdown_loses_and_duplicates_nothing(
    client: ActivityClient, make_engine: EngineFactory
) -> None:
    runs: Counter[int] = Counter()

    def build() -> Any:
        engine = make_engine(max_workers=8, shutdown_grace=0.05)

        @engine.activity("n")
        async def n(payload: Any, ctx: ActivityContext) -> Any:
            await asyncio.sleep(0.01 * (payload % 5))
            runs[payload] += 1
            return payload

        return engine

    futures = await client.enqueue_many([("n", i) for i in range(300)])
    for _ in range(3):  # stop and restart engines while the queue drains
        engine = build()
        task = asyncio.create_task(engine.start(install_signal_handlers=False))
        await eventually(lambda: _value(sum(runs.values()) > 0))
        await asyncio.sleep(0.05)
        await engine.stop()
        await task
    engine = build()
    task = asyncio.create_task(engine.start(install_signal_handlers=False))
    results = [await f.get_result(timeout=30) for f in futures]
    await engine.stop()
    await task
    assert results == list(range(300))
    completed = [i for i, n in runs.items() if n >= 1]
    assert len(completed) == 300
    # A handler cut off by shutdown may have run partly; a completed activity ran to the end
    # exactly once when shutdown was clean.
    assert all(n == 1 for n in runs.values())
    stats = await client.get_stats()
    assert stats.completed == 300
    assert stats.redelivered == 0


def _worker(redis_url: str, queue: str, **env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runnerq",
            "worker",
            "tests.apps.crash_app:engine",
            "--redis-url",
            redis_url,
            "--queue",
            queue,
            "--log-level",
            "WARNING",
        ],
        cwd=ROOT,
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
    )


async def test_sigkill_mid_activity_redelivers_after_lease_and_completes_once(
    client: ActivityClient, redis_url: str, raw_redis: aioredis.Redis
) -> None:
    queue = client.queue_name
    first = _worker(redis_url, queue, CRASH_LEASE="1.0")
    second: subprocess.Popen[bytes] | None = None
    try:
        future = await client.execute_activity(
            "sleepy", {"seconds": 0.5}, ActivityOption(timeout=30)
        )
        await eventually(
            lambda: raw_redis.get(f"attempts:{future.activity_id}"),
            timeout=20,
            what="first attempt started",
        )
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        assert await raw_redis.get(f"finished:{future.activity_id}") is None
        stats = await client.get_stats()
        assert stats.running == 1  # still leased to the dead worker

        second = _worker(redis_url, queue, CRASH_LEASE="1.0")
        assert await future.get_result(timeout=30) == {"slept": 0.5}
        assert await raw_redis.get(f"attempts:{future.activity_id}") == "2"
        assert await raw_redis.get(f"finished:{future.activity_id}") == "1"
        stats = await client.get_stats()
        assert (stats.completed, stats.redelivered, stats.running) == (1, 1, 0)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def _running_worker(redis_url: str, queue: str, **env: str) -> Iterator[subprocess.Popen[bytes]]:
    proc = _worker(redis_url, queue, **env)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_sigterm_is_graceful(
    client: ActivityClient, redis_url: str, raw_redis: aioredis.Redis
) -> None:
    with _running_worker(redis_url, client.queue_name, CRASH_LEASE="30", CRASH_GRACE="10") as proc:
        future = await client.execute_activity("sleepy", {"seconds": 0.5})
        await eventually(lambda: raw_redis.get(f"attempts:{future.activity_id}"), timeout=20)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        # The running activity was allowed to finish within the grace period.
        assert await future.get_result(timeout=5) == {"slept": 0.5}
        assert (await client.get_stats()).redelivered == 0


async def test_sigterm_exits_even_with_a_handler_blocked_in_a_thread(
    client: ActivityClient, redis_url: str, raw_redis: aioredis.Redis
) -> None:
    # The handler is cancelled at the end of the grace period and its activity handed back;
    # its thread sleeps on. The process exits a few seconds later without it (status 3).
    with _running_worker(redis_url, client.queue_name, CRASH_LEASE="30", CRASH_GRACE="0.3") as proc:
        future = await client.execute_activity("blocking", {"seconds": 120})
        await eventually(lambda: _started(raw_redis, future.activity_id), timeout=20)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 3
        stats = await client.get_stats()
        assert (stats.pending, stats.running) == (1, 0)  # handed back, not left leased
        keys = QueueKeys(client.queue_name)
        assert await raw_redis.zrange(keys.ready, 0, -1) == [future.activity_id]


async def _started(raw_redis: aioredis.Redis, activity_id: str) -> bool:
    return activity_id in await raw_redis.lrange("started", 0, -1)


async def _value(value: Any) -> Any:
    return value
