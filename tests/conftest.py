"""Fixtures shared by every test: a real redis-server for the session, fresh queue names,
and engines that are started in the background and always stopped."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from runnerq import ActivityClient, WorkerEngine
from tests.support.redis_server import RedisServer

_names = itertools.count()


@pytest.fixture(autouse=True)
def _collect_garbage() -> Iterator[None]:
    """Collect after each test (and after its event loop closed): whatever the test left
    unclosed is reported against it, not against a later test that a random collection hits."""
    yield
    gc.collect()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def queue_name(request: pytest.FixtureRequest) -> str:
    base = request.node.name.replace("[", "-").replace("]", "").replace("/", "-")[:60]
    return f"t{next(_names)}-{base}"


@pytest.fixture
async def raw_redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
async def client(redis_url: str, queue_name: str) -> AsyncIterator[ActivityClient]:
    c = ActivityClient(redis_url, queue_name)
    yield c
    await c.aclose()


EngineFactory = Callable[..., WorkerEngine]


@pytest.fixture
async def make_engine(redis_url: str, queue_name: str) -> AsyncIterator[EngineFactory]:
    """``make_engine(**kwargs)`` -> an engine for this test's queue (fast test defaults)."""
    engines: list[WorkerEngine] = []

    def factory(**kwargs: Any) -> WorkerEngine:
        kwargs.setdefault("redis_url", redis_url)
        kwargs.setdefault("queue_name", queue_name)
        kwargs.setdefault("schedule_poll_interval", 1.0)
        kwargs.setdefault("shutdown_grace", 2.0)
        engine = WorkerEngine(**kwargs)
        engines.append(engine)
        return engine

    yield factory
    for engine in engines:
        with contextlib.suppress(Exception):
            await engine.stop()
        await engine.aclose()


@pytest.fixture
async def run_engine() -> AsyncIterator[Callable[[WorkerEngine], Awaitable[asyncio.Task[None]]]]:
    """``await run_engine(engine)`` starts it in a task and waits until it claims."""
    tasks: list[tuple[WorkerEngine, asyncio.Task[None]]] = []

    async def start(engine: WorkerEngine) -> asyncio.Task[None]:
        task = asyncio.create_task(engine.start(install_signal_handlers=False))
        tasks.append((engine, task))
        async with asyncio.timeout(10):
            while engine.worker is None or not engine.worker.ready:
                if task.done():
                    task.result()
                await asyncio.sleep(0.005)
        return task

    yield start
    for engine, task in tasks:
        await engine.stop()
        with contextlib.suppress(Exception):
            await task
