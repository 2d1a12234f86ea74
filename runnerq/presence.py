"""Who is there: the registry of queue names and each queue's registry of live workers.

* ``runnerq:queues`` (SET): every queue a client enqueued into or a worker ran. It sits
  outside every queue's hash tag, so it is written with plain commands (never from a queue's
  script) and works on Redis Cluster: a client adds its queue once per lifetime, a worker at
  start. ``list_queues`` reads it.
* ``runnerq:{q}:workers`` (ZSET worker id -> last seen, ms) and ``runnerq:{q}:worker:<id>``
  (HASH, expiring after ``WORKER_TTL_BEATS`` heartbeat intervals): written by each worker's
  heartbeat, removed when it stops cleanly; a worker that died drops out when its hash
  expires. ``list_workers`` returns the live ones (docs/history.md).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from .keys import QUEUES_KEY, QueueKeys

__all__ = [
    "WORKER_TTL_BEATS",
    "WorkerInfo",
    "list_queues",
    "list_workers",
    "register_queue",
    "worker_fields",
]

# A worker's entry expires after this many heartbeat intervals without a beat.
WORKER_TTL_BEATS = 3
# Registry members not seen for this many intervals (at least a minute, as clocks differ)
# are pruned by every worker's beat.
_PRUNE_BEATS = 10


async def register_queue(redis: aioredis.Redis, queue: str) -> None:
    """Add ``queue`` to the registry of queue names."""
    await redis.sadd(QUEUES_KEY, queue)


async def list_queues(redis: aioredis.Redis) -> list[str]:
    """Every queue name in the registry, sorted."""
    return sorted(str(name) for name in await redis.smembers(QUEUES_KEY))


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """One live worker of a queue, as its last heartbeat wrote it (times in epoch seconds)."""

    id: str
    host: str
    pod: str
    pid: int
    version: str
    slots: int
    busy: int
    started_at: float
    last_seen: float

    @classmethod
    def from_hash(cls, worker_id: str, raw: dict[str, Any]) -> WorkerInfo:
        def num(name: str) -> int:
            try:
                return int(raw.get(name, 0))
            except (TypeError, ValueError):
                return 0

        return cls(
            id=worker_id,
            host=str(raw.get("host", "")),
            pod=str(raw.get("pod", "")),
            pid=num("pid"),
            version=str(raw.get("version", "")),
            slots=num("slots"),
            busy=num("busy"),
            started_at=num("started_ms") / 1000.0,
            last_seen=num("last_seen_ms") / 1000.0,
        )


def worker_fields(slots: int, busy: int, started_ms: int, now_ms: int) -> dict[str, str | int]:
    """This process's registry entry. The pod is ``POD_NAME`` (the chart sets it from the
    downward API), else ``HOSTNAME`` (a pod's name by default), else the host name."""
    from . import __version__  # (the package imports this module)

    host = socket.gethostname()
    return {
        "host": host,
        "pod": os.environ.get("POD_NAME") or os.environ.get("HOSTNAME") or host,
        "pid": os.getpid(),
        "version": __version__,
        "slots": slots,
        "busy": busy,
        "started_ms": started_ms,
        "last_seen_ms": now_ms,
    }


def beat_commands(
    pipe: Any, keys: QueueKeys, worker_id: str, fields: dict[str, str | int], interval: float
) -> None:
    """Queue a worker's registry writes on ``pipe``: its hash, refreshed with a TTL of
    ``WORKER_TTL_BEATS`` intervals, its member in the queue's set, and the set's members not
    seen for long pruned."""
    now_ms = int(fields["last_seen_ms"])
    ttl_ms = max(1000, int(WORKER_TTL_BEATS * interval * 1000))
    entry = keys.worker(worker_id)
    pipe.hset(entry, mapping=fields)
    pipe.pexpire(entry, ttl_ms)
    pipe.zadd(keys.workers, {worker_id: now_ms})
    stale = now_ms - max(60_000, int(_PRUNE_BEATS * interval * 1000))
    pipe.zremrangebyscore(keys.workers, "-inf", stale)


async def remove_worker(redis: aioredis.Redis, keys: QueueKeys, worker_id: str) -> None:
    """A worker stopping cleanly leaves the registry at once."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(keys.worker(worker_id))
        pipe.zrem(keys.workers, worker_id)
        await pipe.execute()


async def list_workers(redis: aioredis.Redis, queue: str) -> list[WorkerInfo]:
    """The queue's live workers (those whose entry has not expired), by id."""
    keys = QueueKeys(queue)
    ids = [str(i) for i in await redis.zrange(keys.workers, 0, -1)]
    if not ids:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for worker_id in ids:
            pipe.hgetall(keys.worker(worker_id))
        entries = await pipe.execute()
    return sorted(
        (WorkerInfo.from_hash(i, e) for i, e in zip(ids, entries, strict=True) if e),
        key=lambda w: w.id,
    )
