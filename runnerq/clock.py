"""Redis's clock, read in the round trip of other commands where the topology allows it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

__all__ = ["read_with_clock"]


async def read_with_clock(
    redis: aioredis.Redis, fill: Callable[[Any], None], transaction: bool = False
) -> tuple[list[Any], int]:
    """The replies of the commands ``fill`` queues on a pipeline, and Redis's clock (epoch
    milliseconds). One round trip on a single Redis (or through Sentinel); on a Cluster, where
    TIME cannot go in a pipeline (it names no key, so it has no slot), the clock is read by a
    call of its own just after."""
    cluster = isinstance(redis, RedisCluster)
    async with redis.pipeline(transaction=transaction) as pipe:
        fill(pipe)
        if not cluster:
            pipe.time()
        replies = list(await pipe.execute())
    now = await redis.time() if cluster else replies.pop()
    return replies, int(now[0]) * 1000 + int(now[1]) // 1000
