"""Every Redis key and channel name of a queue, built in this one place.

All of a queue's keys carry the hash tag ``{<queue>}``, so that in Redis Cluster one queue
lives in one slot and its scripts can touch all of its keys atomically.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .errors import ConfigurationError

__all__ = ["KEY_PREFIX", "QUEUES_KEY", "QueueKeys", "validate_queue_name"]

KEY_PREFIX = "runnerq"
# The registry of queue names (a SET): outside every queue's hash tag, so it is written with
# plain commands (never from a queue's script) and works on Redis Cluster (docs/history.md).
QUEUES_KEY = f"{KEY_PREFIX}:queues"
_QUEUE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$")


def validate_queue_name(name: str) -> str:
    """Queue names are 1-200 characters of letters, digits and ``. _ : -``.

    Braces are refused: they would break the hash tag.
    """
    if not isinstance(name, str) or not _QUEUE_NAME.match(name):
        raise ConfigurationError(
            f"invalid queue name {name!r}: use 1-200 letters, digits, '.', '_', ':' or '-',"
            " starting with a letter or digit"
        )
    return name


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """Names of one queue's keys. ``QueueKeys("emails").ready == "runnerq:{emails}:ready"``."""

    queue: str
    base: str = field(init=False)
    jobs: str = field(init=False)
    ready: str = field(init=False)
    scheduled: str = field(init=False)
    inflight: str = field(init=False)
    leases: str = field(init=False)
    dead: str = field(init=False)
    dlq: str = field(init=False)
    done: str = field(init=False)
    stats: str = field(init=False)
    config: str = field(init=False)
    notify: str = field(init=False)
    seq: str = field(init=False)
    workers: str = field(init=False)
    redeliveries: str = field(init=False)
    schedules: str = field(init=False)
    schedule_next: str = field(init=False)
    # Limits (docs/limits.md): token buckets, per-type counters and holds; and the type of
    # each activity leased by the claim's limited path, until its lease ends.
    limit_state: str = field(init=False)
    limited: str = field(init=False)
    # Activities with a limit key: their ready set (fair between keys), id -> key while they
    # are not finished, and each key's last virtual start time (docs/limits.md).
    kready: str = field(init=False)
    keyof: str = field(init=False)
    kvt: str = field(init=False)
    # Limit keys held back by a handler (RateLimitedError(hold="key")): key -> hold's end (ms).
    kholds: str = field(init=False)
    # History and live state for the console (docs/history.md): progress reported by
    # handlers, per-minute throughput counts, and the unfinished activities that have a
    # history list (id -> 1: their completion is added to it).
    historied: str = field(init=False)
    progress: str = field(init=False)
    minutes: str = field(init=False)
    done_channel: str = field(init=False)
    cancel_channel: str = field(init=False)

    def __post_init__(self) -> None:
        validate_queue_name(self.queue)
        base = f"{KEY_PREFIX}:{{{self.queue}}}:"
        for name in (
            "jobs",
            "ready",
            "scheduled",
            "inflight",
            "leases",
            "dead",
            "dlq",
            "done",
            "stats",
            "config",
            "notify",
            "seq",
            "workers",
            "redeliveries",
            "schedules",
            "schedule_next",
            "limited",
            "kready",
            "keyof",
            "kvt",
            "kholds",
            "progress",
            "minutes",
            "historied",
        ):
            object.__setattr__(self, name, base + name)
        object.__setattr__(self, "limit_state", base + "limits")
        object.__setattr__(self, "base", base)
        object.__setattr__(self, "done_channel", base + "events:done")
        object.__setattr__(self, "cancel_channel", base + "events:cancel")

    def result(self, activity_id: str) -> str:
        return f"{self.base}result:{activity_id}"

    def schedule_state(self, name: str) -> str:
        """A schedule's progress (next and last tick, counts)."""
        return f"{self.base}schedule:{name}"

    def idempotency(self, key: str) -> str:
        return f"{self.base}idem:{key}"

    def events(self, activity_id: str) -> str:
        """An activity's event history (LIST of JSON events, oldest first, bounded)."""
        return f"{self.base}events:{activity_id}"

    def worker(self, worker_id: str) -> str:
        """A worker's registry entry (HASH with a TTL, refreshed by its heartbeat)."""
        return f"{self.base}worker:{worker_id}"

    def wake(self, worker_id: str) -> str:
        """A worker's own wake-up list: what stops its blocking wait for work at once."""
        return f"{self.base}wake:{worker_id}"
