"""A queue at a glance: depth by state and priority, paused, workers, throughput and failures
over the last hour and day, schedules and limits. Three round trips a queue (the stats'
``MULTI``, one pipeline of the rest, the live workers' hashes), queues read concurrently.

In a cluster each queue also gets ``cluster``: its ActivityQueue's replicas, conditions and
last scale (``cluster.cluster_view``), or null (no cluster, no ActivityQueue names the queue,
or the API server could not be read), from the list ``ClusterStatus`` keeps a few seconds."""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis

from ..clock import read_with_clock
from ..config import QueueSettings
from ..keys import QueueKeys
from ..scripts import Scripts
from ..store import QueueStore
from .cluster import ClusterIndex, ClusterStatus
from .telemetry import minutes_key, read_throughput, read_workers

__all__ = ["queue_counts", "queue_overview", "queues_overview"]


def _store(redis: aioredis.Redis, queue: str) -> QueueStore:
    return QueueStore(redis, QueueSettings(queue), Scripts(redis))


async def queue_counts(redis: aioredis.Redis, queue: str) -> dict[str, Any]:
    """The queue's depth by state and priority and its counters (``QueueStats``): one
    ``MULTI`` of 15 commands."""
    stats = await _store(redis, queue).stats()
    doc = stats.as_dict()
    for alias in ("pending_count", "running_count", "completed_count", "failed_count"):
        doc.pop(alias, None)
    doc.pop("dead_letter_count", None)
    return doc


async def queue_overview(
    redis: aioredis.Redis, queue: str, cluster: ClusterStatus | None = None
) -> dict[str, Any]:
    if cluster is None:
        return {**await _redis_overview(redis, queue), "cluster": None}
    doc, index = await asyncio.gather(_redis_overview(redis, queue), cluster.index())
    return {**doc, "cluster": _cluster_of(index, queue)}


def _cluster_of(index: ClusterIndex | None, queue: str) -> dict[str, Any] | None:
    return None if index is None else index.views.get(queue)


async def _redis_overview(redis: aioredis.Redis, queue: str) -> dict[str, Any]:
    keys = QueueKeys(queue)
    counts = await queue_counts(redis, queue)

    def fill(pipe: Any) -> None:
        pipe.hgetall(minutes_key(keys))
        pipe.hexists(keys.config, "limits")
        pipe.hlen(keys.schedules)

    (minutes, limited, schedules), now_ms = await read_with_clock(redis, fill)
    workers = await read_workers(redis, keys)
    throughput = read_throughput({str(a): str(b) for a, b in minutes.items()}, now_ms)
    return {
        **counts,
        "workers": len(workers),
        "slots": sum(w.as_dict()["slots"] or 0 for w in workers),
        "busy": sum(w.as_dict()["busy"] or 0 for w in workers),
        "throughput": None if throughput is None else throughput.as_dict(),
        "has_limits": bool(limited),
        "schedules": int(schedules),
        "now_ms": now_ms,
    }


async def queues_overview(
    redis: aioredis.Redis, queues: list[str], cluster: ClusterStatus | None = None
) -> list[dict[str, Any]]:
    """Every queue's overview; the ActivityQueues are read (or taken from the cache) once,
    while Redis is read."""
    docs = asyncio.gather(*(_redis_overview(redis, q) for q in queues))
    if cluster is None:
        return [{**doc, "cluster": None} for doc in await docs]
    found, index = await asyncio.gather(docs, cluster.index())
    return [{**doc, "cluster": _cluster_of(index, q)} for q, doc in zip(queues, found, strict=True)]
