"""A stop at any moment of ``start()`` ends it promptly and loses nothing.

Each moment is reached through an event, not a sleep: the engine's own log records mark
where ``start()`` is (connecting, waiting for Redis, priming, running), and a log handler
acts at the record, synchronously, before ``start()`` takes its next step.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from runnerq import ActivityClient, ActivityContext, RedisConfig
from runnerq.keys import QueueKeys
from tests.chaos.proxy import ChaosProxy
from tests.conftest import EngineFactory
from tests.support.polling import eventually
from tests.support.redis_server import free_port

# Generous: only a start() that does not end at all fails these (it would run for ever).
_PROMPTLY = 10.0


class _At(logging.Handler):
    """Calls ``action`` (once) at the first runnerq.engine record whose message starts with
    ``prefix``, inside the logging call: before the engine goes on."""

    def __init__(self, prefix: str, action: Callable[[], None]) -> None:
        super().__init__(logging.DEBUG)
        self.prefix = prefix
        self.action = action
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if not self.seen.is_set() and record.msg.startswith(self.prefix):
            self.seen.set()
            self.action()


@pytest.fixture
def at() -> Iterator[Callable[[str, Callable[[], None]], _At]]:
    logger = logging.getLogger("runnerq.engine")
    handlers: list[_At] = []
    level = logger.level

    def install(prefix: str, action: Callable[[], None]) -> _At:
        handler = _At(prefix, action)
        handlers.append(handler)
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
        return handler

    yield install
    for handler in handlers:
        logger.removeHandler(handler)
    logger.setLevel(level)


async def _value(value: bool) -> bool:
    return value


async def _pending(client: ActivityClient) -> tuple[int, int]:
    stats = await client.get_stats()
    return stats.pending, stats.running


async def test_stop_before_start_runs(make_engine: EngineFactory, client: ActivityClient) -> None:
    engine = make_engine()
    ran: list[Any] = []

    @engine.activity("t")
    async def t(payload: Any, ctx: ActivityContext) -> None:
        ran.append(payload)

    await client.execute_activity("t", 1)
    task = asyncio.create_task(engine.start(install_signal_handlers=False))
    await engine.stop()  # before the task took its first step
    await asyncio.wait_for(task, _PROMPTLY)
    assert engine.worker is None
    assert ran == []
    assert await _pending(client) == (1, 0)


async def test_stop_while_connecting(
    make_engine: EngineFactory, redis_url: str, at: Any, client: ActivityClient
) -> None:
    """Connections go through a proxy that holds every byte: the connect never answers."""
    port = int(redis_url.rsplit(":", 1)[1])
    async with ChaosProxy("127.0.0.1", port) as proxy:
        proxy.stall()
        engine = make_engine(redis_url=proxy.url)
        stopping = at("connecting to Redis", engine.request_stop)
        task = asyncio.create_task(engine.start(install_signal_handlers=False))
        await stopping.seen.wait()
        await asyncio.wait_for(task, _PROMPTLY)
        assert engine.worker is None


async def test_stop_while_connect_hangs(
    make_engine: EngineFactory, redis_url: str, at: Any
) -> None:
    """The stop comes once the connection is open and its PING is stuck."""
    port = int(redis_url.rsplit(":", 1)[1])
    async with ChaosProxy("127.0.0.1", port) as proxy:
        proxy.stall()
        engine = make_engine(redis_url=proxy.url)
        task = asyncio.create_task(engine.start(install_signal_handlers=False))
        await eventually(lambda: _value(proxy.connections > 0), what="a connection opened")
        await engine.stop()
        await asyncio.wait_for(task, _PROMPTLY)
        assert not task.cancelled()


async def test_stop_while_waiting_for_unreachable_redis(
    make_engine: EngineFactory, at: Any
) -> None:
    engine = make_engine(
        redis_url=f"redis://127.0.0.1:{free_port()}", redis_config=RedisConfig(conn_timeout=1)
    )
    waiting = at("waiting for Redis", lambda: None)
    task = asyncio.create_task(engine.start(install_signal_handlers=False))
    await asyncio.wait_for(waiting.seen.wait(), _PROMPTLY)  # it backs off instead of failing
    assert not task.done()
    await engine.stop()
    await asyncio.wait_for(task, _PROMPTLY)


async def test_start_waits_for_redis_to_come_back(
    make_engine: EngineFactory, redis_url: str, at: Any, queue_name: str
) -> None:
    """Redis refuses the worker when it starts, then answers: the worker runs."""
    port = int(redis_url.rsplit(":", 1)[1])
    async with ChaosProxy("127.0.0.1", port) as proxy:
        proxy.refusing = True
        engine = make_engine(redis_url=proxy.url, redis_config=RedisConfig(conn_timeout=1))

        @engine.activity("t")
        async def t(payload: Any, ctx: ActivityContext) -> Any:
            return payload

        waiting = at("waiting for Redis", lambda: setattr(proxy, "refusing", False))
        task = asyncio.create_task(engine.start(install_signal_handlers=False))
        try:
            await asyncio.wait_for(waiting.seen.wait(), _PROMPTLY)
            async with ActivityClient(redis_url, queue_name) as client:
                future = await client.execute_activity("t", "after the wait")
                assert await future.get_result(timeout=_PROMPTLY) == "after the wait"
        finally:
            await engine.stop()
            await asyncio.wait_for(task, _PROMPTLY)


async def test_wrong_password_still_fails_at_once(make_engine: EngineFactory) -> None:
    from tests.support.redis_server import RedisServer

    with RedisServer(password="right") as server:
        engine = make_engine(redis_url=f"redis://:wrong@127.0.0.1:{server.port}")
        with pytest.raises(Exception, match="authentication failed"):
            await asyncio.wait_for(engine.start(install_signal_handlers=False), _PROMPTLY)


async def test_stop_while_priming(
    make_engine: EngineFactory, redis_url: str, at: Any, client: ActivityClient
) -> None:
    """Connected, then Redis stops answering just as the worker loads its scripts."""
    port = int(redis_url.rsplit(":", 1)[1])
    async with ChaosProxy("127.0.0.1", port) as proxy:
        engine = make_engine(redis_url=proxy.url)

        def stall_then_stop() -> None:
            proxy.stall()
            engine.request_stop()

        priming = at("priming worker", stall_then_stop)
        task = asyncio.create_task(engine.start(install_signal_handlers=False))
        await asyncio.wait_for(priming.seen.wait(), _PROMPTLY)
        await asyncio.wait_for(task, _PROMPTLY)
        assert engine.worker is None


async def test_stop_as_the_first_claim_goes_out_hands_it_back(
    make_engine: EngineFactory, at: Any, client: ActivityClient, raw_redis: aioredis.Redis
) -> None:
    engine = make_engine()
    ran: list[Any] = []

    @engine.activity("t")
    async def t(payload: Any, ctx: ActivityContext) -> None:
        ran.append(payload)

    futures = await client.enqueue_many([("t", i) for i in range(3)])
    running = at("worker %s running queue", engine.request_stop)
    task = asyncio.create_task(engine.start(install_signal_handlers=False))
    await asyncio.wait_for(running.seen.wait(), _PROMPTLY)
    await asyncio.wait_for(task, _PROMPTLY)
    keys = QueueKeys(client.queue_name)
    assert await raw_redis.hlen(keys.leases) == 0  # nothing left leased
    pending, in_flight = await _pending(client)
    assert in_flight == 0
    assert pending + len(ran) == len(futures)  # handed back, or ran to completion


@contextlib.contextmanager
def _worker_process(app: str, redis_url: str) -> Iterator[subprocess.Popen[str]]:
    """``runnerq worker app`` with its stderr to read; killed if it outlives the test."""
    env = dict(os.environ, RUNNERQ_REDIS_URL=redis_url)
    proc = subprocess.Popen(
        [sys.executable, "-m", "runnerq", "worker", app], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def _sigterm_after(proc: subprocess.Popen[str], line: str) -> str:
    """SIGTERM once the worker logs ``line`` (the event); returns what it logged after."""
    assert proc.stderr is not None
    for logged in proc.stderr:
        if line in logged:
            break
    else:
        pytest.fail(f"the worker ended before logging {line!r} (status {proc.wait()})")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    return proc.stderr.read()


def test_sigterm_while_redis_is_unreachable_exits_zero() -> None:
    unreachable = f"redis://127.0.0.1:{free_port()}"
    with _worker_process("tests.e2e.apps.noop_app:engine", unreachable) as proc:
        _sigterm_after(proc, "waiting for Redis")


def test_sigterm_while_the_app_is_imported_exits_zero(redis_url: str) -> None:
    """Before the engine exists (its handlers are not in place yet): the worker does not
    die of the signal, it does not start, and it exits 0."""
    with _worker_process("tests.apps.slow_import_app:engine", redis_url) as proc:
        assert "running queue" not in _sigterm_after(proc, "importing the app")
