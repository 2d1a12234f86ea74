"""What the engine records for people to look at, read in this one place: the registry of
queue names, worker heartbeats, each activity's event timeline and progress, and per-minute
counts of completed and failed activities.

Every key name the console reads beyond the queue's own (``runnerq.keys``) is built here, so
a rename on the engine side is one edit. Each reader tolerates the data being absent (an
engine that does not record it yet, or it expired): it returns ``None`` or nothing, and the
page says "not recorded".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from ..errors import ConfigurationError
from ..keys import KEY_PREFIX, QueueKeys, validate_queue_name

__all__ = [
    "QUEUES_KEY",
    "Throughput",
    "WorkerInfo",
    "discover_queues",
    "events_key",
    "minutes_key",
    "parse_events",
    "parse_progress",
    "progress_key",
    "read_throughput",
    "read_workers",
    "worker_key",
    "workers_key",
]

# SET of every queue name (clients add theirs on first enqueue, workers at start).
QUEUES_KEY = f"{KEY_PREFIX}:queues"
# Queue names read from the registry, or keys looked at by the SCAN fallback, at most.
MAX_QUEUES = 1000
SCAN_BUDGET = 100_000
# Workers listed per queue, at most (the most recently seen first).
MAX_WORKERS = 500


def workers_key(keys: QueueKeys) -> str:
    """ZSET worker id -> last seen (ms)."""
    return keys.workers


def worker_key(keys: QueueKeys, worker_id: str) -> str:
    """HASH of one worker (host, pod, pid, version, slots, busy, started_ms, last_seen_ms),
    with a TTL: gone once the worker stops heartbeating."""
    return f"{keys.base}worker:{worker_id}"


def events_key(keys: QueueKeys, activity_id: str) -> str:
    """LIST of an activity's events (JSON), oldest first, bounded."""
    return f"{keys.base}events:{activity_id}"


def progress_key(keys: QueueKeys) -> str:
    """HASH id -> JSON {"f": fraction, "m": message, "t": ms}."""
    return f"{keys.base}progress"


def minutes_key(keys: QueueKeys) -> str:
    """HASH "<epoch minute>:c" / "<epoch minute>:f" -> completed / failed in that minute."""
    return f"{keys.base}minutes"


async def discover_queues(redis: aioredis.Redis) -> list[str]:
    """Every queue name: the registry set, or when it is empty, the queues whose ``stats`` or
    ``config`` hash a bounded SCAN finds (``SCAN_BUDGET`` keys looked at, at most)."""
    names: set[str] = set()
    async for name in redis.sscan_iter(QUEUES_KEY, count=500):
        names.add(str(name))
        if len(names) >= MAX_QUEUES:
            break
    if not names:
        names = await _scan_queues(redis)
    out = []
    for name in names:
        try:
            out.append(validate_queue_name(name))
        except ConfigurationError:
            continue  # not a queue runnerq could have made
    return sorted(out)


async def _scan_queues(redis: aioredis.Redis) -> set[str]:
    found: set[str] = set()
    seen = 0
    for suffix in ("stats", "config"):
        pattern = f"{KEY_PREFIX}:{{*}}:{suffix}"
        async for key in redis.scan_iter(match=pattern, count=1000):
            seen += 1
            text = str(key)
            start, end = text.find("{"), text.rfind("}")
            if 0 <= start < end:
                found.add(text[start + 1 : end])
            if seen >= SCAN_BUDGET or len(found) >= MAX_QUEUES:
                return found
    return found


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    id: str
    last_seen_ms: int
    fields: dict[str, str]

    def as_dict(self) -> dict[str, Any]:
        def number(name: str) -> int | None:
            try:
                return int(self.fields[name])
            except (KeyError, ValueError):
                return None

        return {
            "id": self.id,
            "host": self.fields.get("host"),
            "pod": self.fields.get("pod"),
            "pid": number("pid"),
            "version": self.fields.get("version"),
            "slots": number("slots"),
            "busy": number("busy"),
            "started_ms": number("started_ms"),
            "last_seen_ms": number("last_seen_ms") or self.last_seen_ms,
        }


async def read_workers(redis: aioredis.Redis, keys: QueueKeys) -> list[WorkerInfo]:
    """The queue's live workers, most recently seen first. A member whose hash expired has
    dropped out and is not shown (the engine removes it from the set)."""
    members: Any = await redis.zrevrange(workers_key(keys), 0, MAX_WORKERS - 1, withscores=True)
    if not members:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for worker_id, _ in members:
            pipe.hgetall(worker_key(keys, str(worker_id)))
        hashes = await pipe.execute()
    return [
        WorkerInfo(str(worker_id), int(score), {str(a): str(b) for a, b in fields.items()})
        for (worker_id, score), fields in zip(members, hashes, strict=True)
        if fields
    ]


def parse_events(raw: list[Any]) -> list[dict[str, Any]]:
    """An activity's events, oldest first; entries that are not JSON objects are skipped."""
    out = []
    for item in raw:
        try:
            doc = json.loads(item)
        except (TypeError, ValueError):
            continue
        if isinstance(doc, dict):
            out.append(doc)
    return out


def parse_progress(raw: Any) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        doc = json.loads(raw)
    except (TypeError, ValueError):
        return None
    if not isinstance(doc, dict):
        return None
    fraction = doc.get("f")
    return {
        "fraction": fraction if isinstance(fraction, int | float) else None,
        "message": doc.get("m") if isinstance(doc.get("m"), str) else None,
        "at_ms": doc.get("t") if isinstance(doc.get("t"), int) else None,
    }


@dataclass(frozen=True, slots=True)
class Throughput:
    """Completed and failed activities over the last hour and day (None: not recorded)."""

    completed_hour: int
    failed_hour: int
    completed_day: int
    failed_day: int

    def as_dict(self) -> dict[str, int]:
        return {
            "completed_hour": self.completed_hour,
            "failed_hour": self.failed_hour,
            "completed_day": self.completed_day,
            "failed_day": self.failed_day,
        }


def read_throughput(fields: dict[str, str], now_ms: int) -> Throughput | None:
    """Sums of the per-minute counts (``minutes_key``'s fields) up to the minute of
    ``now_ms``; None when there are none."""
    if not fields:
        return None
    now_minute = now_ms // 60_000
    sums = {"c": [0, 0], "f": [0, 0]}
    for name, value in fields.items():
        minute_text, _, kind = name.partition(":")
        if not minute_text.isdigit():
            continue
        try:
            age = now_minute - int(minute_text)
            count = int(value)
        except ValueError:
            continue
        if kind not in sums or age < 0 or age >= 1440:
            continue
        sums[kind][1] += count
        if age < 60:
            sums[kind][0] += count
    return Throughput(sums["c"][0], sums["f"][0], sums["c"][1], sums["f"][1])
