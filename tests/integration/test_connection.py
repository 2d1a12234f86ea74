"""Connecting: clear errors when Redis is unreachable, passwords, TLS, and pool settings."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from runnerq import (
    ActivityClient,
    ActivityContext,
    ConfigurationError,
    RedisConfig,
    RedisUnavailableError,
    WorkerEngine,
)
from runnerq.connection import connect
from tests.support.redis_server import RedisServer, free_port


async def test_build_fails_clearly_when_redis_is_unreachable() -> None:
    url = f"redis://127.0.0.1:{free_port()}"
    builder = WorkerEngine.builder().redis_url(url).redis_config(RedisConfig(conn_timeout=1))
    with pytest.raises(RedisUnavailableError, match=f"cannot connect to Redis at {url}"):
        await builder.build()


async def test_unsupported_url_scheme() -> None:
    with pytest.raises(ConfigurationError, match="unsupported Redis URL"):
        ActivityClient("http://127.0.0.1:6379")


async def test_password_in_url_and_redacted_in_errors() -> None:
    with RedisServer(password="s3cret/p@ss") as server:
        engine = await WorkerEngine.builder().redis_url(server.url).queue_name("auth").build()

        @engine.activity("echo")
        async def echo(payload: Any, ctx: ActivityContext) -> Any:
            return payload

        task = asyncio.create_task(engine.start(install_signal_handlers=False))
        future = await engine.get_activity_executor().execute_activity("echo", "through auth")
        assert await future.get_result(timeout=10) == "through auth"
        await engine.stop()
        await task
        await engine.aclose()

        wrong = f"redis://:wrong@127.0.0.1:{server.port}"
        with pytest.raises(RedisUnavailableError) as info:
            await WorkerEngine.builder().redis_url(wrong).build()
        assert "wrong" not in str(info.value)
        assert "***" in str(info.value)


async def test_tls_rediss_url() -> None:
    with RedisServer(tls=True) as server:
        assert server.url.startswith("rediss://")
        engine = await WorkerEngine.builder().redis_url(server.url).queue_name("tls").build()

        @engine.activity("echo")
        async def echo(payload: Any, ctx: ActivityContext) -> Any:
            return payload

        task = asyncio.create_task(engine.start(install_signal_handlers=False))
        future = await engine.get_activity_executor().execute_activity("echo", {"secure": True})
        assert await future.get_result(timeout=10) == {"secure": True}
        await engine.stop()
        await task
        await engine.aclose()


async def test_redis_config_maps_onto_the_pool(redis_url: str, queue_name: str) -> None:
    config = RedisConfig(
        max_size=7, min_idle=3, conn_timeout=2.5, idle_timeout=0.05, max_lifetime=60
    )
    client = ActivityClient(redis_url, queue_name, redis_config=config)
    try:
        pool: Any = client.redis.connection_pool
        assert pool.max_connections == 7
        assert pool.timeout == 2.5
        assert pool.connection_kwargs["socket_connect_timeout"] == 2.5
        await client.connect()
        # min_idle connections are opened ahead of need.
        assert len(pool._available_connections) == 3
        first_id = await client.redis.client_id()
        await asyncio.sleep(0.1)  # idle longer than idle_timeout: replaced before next use
        assert await client.redis.client_id() != first_id
    finally:
        await client.aclose()


def test_redis_config_validation() -> None:
    with pytest.raises(ConfigurationError):
        RedisConfig(max_size=1)
    with pytest.raises(ConfigurationError):
        RedisConfig(max_size=5, min_idle=6)
    with pytest.raises(ConfigurationError):
        RedisConfig(conn_timeout=0)


async def test_the_pool_hands_out_free_connections_and_queues_when_exhausted(
    redis_url: str,
) -> None:
    redis = connect(redis_url, RedisConfig(max_size=2, min_idle=0, conn_timeout=5))
    pool: Any = redis.connection_pool
    try:
        held = [await pool.get_connection() for _ in range(2)]
        assert held[0] is not held[1]
        waiter = asyncio.create_task(pool.get_connection())
        await asyncio.sleep(0.05)
        assert not waiter.done()  # exhausted: it waits
        await pool.release(held[0])
        assert await waiter is held[0]
        await pool.release(held[0])
        assert await pool.get_connection() is held[0]  # a free one is reused, not a new one
        for conn in held:
            await pool.release(conn)
        assert await redis.ping()
    finally:
        await redis.aclose()
