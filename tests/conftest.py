"""Fixtures shared by every test: a real redis-server for the session, fresh queue names,
and engines that are started in the background and always stopped, failing the test at
teardown when an engine raised there or crashed during it."""

from __future__ import annotations

import asyncio
import gc
import itertools
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator
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


# Teardown waits at most this for an engine to stop: a stop that never returns would hang the
# whole session (pytest-timeout's alarm does not end a teardown that awaits it). Far above
# what a stop takes with the tests' settings (each of its waits is bounded, the slots' by a
# shutdown_grace of a few seconds): only a stop that does not end reaches it.
STOP_LIMIT = 60.0


async def _stop(engine: WorkerEngine, errors: list[Exception], fixture: str) -> None:
    try:
        async with asyncio.timeout(STOP_LIMIT):
            await engine.stop()
    except TimeoutError as exc:
        exc.add_note(f"{fixture}: engine.stop() did not return within {STOP_LIMIT:.0f}s")
        errors.append(exc)
    except Exception as exc:
        exc.add_note(f"{fixture}: engine.stop() raised this at teardown")
        errors.append(exc)


# Engines whose run ``run_engine`` saw to the end at teardown (stopped, or ended by themselves
# with their outcome reported or taken by the test): ``make_engine`` only closes them.
_settled: weakref.WeakSet[WorkerEngine] = weakref.WeakSet()


def _raise_collected(errors: list[Exception], what: str) -> None:
    """Fail the test's teardown with what went wrong (every engine was cleaned up first)."""
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ExceptionGroup(what, errors)


@pytest.fixture
async def make_engine(redis_url: str, queue_name: str) -> AsyncIterator[EngineFactory]:
    """``make_engine(**kwargs)`` -> an engine for this test's queue (fast test defaults).
    Each is stopped and closed at teardown; a ``stop()`` or ``aclose()`` that raises fails
    the test there."""
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
    errors: list[Exception] = []
    for engine in engines:
        if engine not in _settled:
            await _stop(engine, errors, "make_engine")
        try:
            await engine.aclose()
        except Exception as exc:
            exc.add_note("make_engine: engine.aclose() raised this at teardown")
            errors.append(exc)
    _raise_collected(errors, "make_engine: engines failed at teardown")


class EngineRun:
    """An engine that ``run_engine`` started in a task.

    At teardown the fixture stops the engine and fails the test with whatever its task raised:
    an engine that crashed during the test is reported, never swallowed. A test that expects
    the engine to fail takes the outcome itself by awaiting this handle (``with
    pytest.raises(...): await run``); the fixture then leaves that outcome to it."""

    def __init__(self, engine: WorkerEngine, task: asyncio.Task[None]) -> None:
        self.engine = engine
        self.task = task
        self.outcome_taken = False

    def done(self) -> bool:
        return self.task.done()

    def __await__(self) -> Generator[Any, None, None]:
        try:
            return (yield from self.task.__await__())
        finally:
            self.outcome_taken = self.task.done()


EngineRunner = Callable[[WorkerEngine], Awaitable[EngineRun]]


@pytest.fixture
async def run_engine(make_engine: EngineFactory) -> AsyncIterator[EngineRunner]:
    """``await run_engine(engine)`` starts it in a task and waits until it claims.

    (It asks for ``make_engine`` only to be torn down before it: engines are stopped and their
    outcome checked here, before they are closed there.)"""
    runs: list[EngineRun] = []

    async def start(engine: WorkerEngine) -> EngineRun:
        run = EngineRun(engine, asyncio.create_task(engine.start(install_signal_handlers=False)))
        runs.append(run)
        async with asyncio.timeout(10):
            while engine.worker is None or not engine.worker.ready:
                if run.task.done():
                    run.outcome_taken = True  # raised here, in the test
                    run.task.result()
                await asyncio.sleep(0.005)
        return run

    yield start
    errors: list[Exception] = []
    for run in runs:
        if not run.task.done():  # (one that ended already has nothing to stop)
            await _stop(run.engine, errors, "run_engine")
            await asyncio.wait([run.task], timeout=STOP_LIMIT)
        if not run.task.done():
            errors.append(TimeoutError("run_engine: engine.start() went on after its stop"))
            run.task.cancel()
            continue
        _settled.add(run.engine)
        if run.outcome_taken or run.task.cancelled():
            continue
        failure = run.task.exception()
        if isinstance(failure, Exception):
            failure.add_note(
                "run_engine: the engine's task ended with this, and the test did not await it"
                " (a test that expects the engine to fail awaits the run it got)"
            )
            errors.append(failure)
        elif failure is not None:
            raise failure
    _raise_collected(errors, "run_engine: engines failed")
