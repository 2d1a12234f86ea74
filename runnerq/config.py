"""Settings, as frozen dataclasses grouped by concern, with their defaults.

Environment variables are read by the CLI (``runnerq.cli``) and ``runnerq.env`` only, never at
import time.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from .errors import ConfigurationError
from .keys import validate_queue_name

__all__ = [
    "DEFAULT_QUEUE",
    "DEFAULT_REDIS_URL",
    "BackoffPolicy",
    "QueueSettings",
    "RedisConfig",
    "WorkerSettings",
]

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379"
DEFAULT_QUEUE = "default"
DEFAULT_MAX_WORKERS = 10
DEFAULT_SCHEDULE_POLL_INTERVAL = 5.0
DEFAULT_LEASE = 30.0
DEFAULT_HEARTBEAT = 10.0
DEFAULT_SHUTDOWN_GRACE = 30.0
DEFAULT_MAX_RETRIES = 3
DEFAULT_TIMEOUT = 300.0
DEFAULT_RESULT_TTL = 24 * 3600.0
DEFAULT_IDEMPOTENCY_TTL = 24 * 3600.0
DEFAULT_COMPLETED_CAP = 10_000
DEFAULT_DEAD_LETTER_CAP = 100_000
DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024
DEFAULT_CLAIM_BATCH = 100
DEFAULT_MAX_REDELIVERIES = 5
NOTIFY_CAP = 256


def _positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"{name} must be a number, not {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigurationError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, not {value!r}")


@dataclass(frozen=True, slots=True)
class RedisConfig:
    """Connection-pool settings, mapped onto redis-py's pool.

    ``max_size`` is the most connections open at once (callers wait up to ``conn_timeout`` for
    a free one); ``min_idle`` connections are opened at connect time; a connection idle for
    longer than ``idle_timeout`` or older than ``max_lifetime`` is closed and replaced before
    its next use. ``socket_timeout`` bounds each reply's wait; by default there is none (TCP
    keepalive finds dead peers instead): a per-read timer costs an asyncio task per command in
    redis-py, about a third of the throughput. Times are in seconds; ``None`` turns a limit off.
    """

    max_size: int = 50
    min_idle: int = 5
    conn_timeout: float = 30.0
    idle_timeout: float | None = 600.0
    max_lifetime: float | None = 1800.0
    socket_timeout: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.max_size, int) or self.max_size < 2:
            raise ConfigurationError(f"max_size must be an integer >= 2, not {self.max_size!r}")
        if not isinstance(self.min_idle, int) or not 0 <= self.min_idle <= self.max_size:
            raise ConfigurationError(
                f"min_idle must be an integer between 0 and max_size, not {self.min_idle!r}"
            )
        _positive("conn_timeout", self.conn_timeout)
        if self.idle_timeout is not None:
            _positive("idle_timeout", self.idle_timeout)
        if self.max_lifetime is not None:
            _positive("max_lifetime", self.max_lifetime)
        if self.socket_timeout is not None:
            _positive("socket_timeout", self.socket_timeout)


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """Delay before retry ``n`` (1-based): ``min(cap, base * factor**(n-1))``, less a random
    share of up to ``jitter`` of it, so that activities failing together do not retry together.
    """

    base: float = 1.0
    factor: float = 2.0
    cap: float = 300.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        _positive("backoff base", self.base, allow_zero=True)
        _positive("backoff cap", self.cap, allow_zero=True)
        if self.factor < 1:
            raise ConfigurationError(f"backoff factor must be >= 1, not {self.factor!r}")
        if not 0 <= self.jitter <= 1:
            raise ConfigurationError(f"backoff jitter must be within [0, 1], not {self.jitter!r}")

    def delay(self, retry: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first retry)."""
        exponent = max(0, retry - 1)
        try:
            raw = self.base * self.factor**exponent
        except OverflowError:
            raw = self.cap
        ceiling = min(self.cap, raw)
        share = (rng or random).random() * self.jitter
        return ceiling * (1.0 - share)


@dataclass(frozen=True, slots=True)
class QueueSettings:
    """What clients and workers of one queue agree on: names, limits and retention."""

    name: str = DEFAULT_QUEUE
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    result_ttl: float = DEFAULT_RESULT_TTL
    idempotency_ttl: float = DEFAULT_IDEMPOTENCY_TTL
    completed_cap: int = DEFAULT_COMPLETED_CAP
    dead_letter_cap: int = DEFAULT_DEAD_LETTER_CAP

    def __post_init__(self) -> None:
        validate_queue_name(self.name)
        _positive("max_payload_bytes", self.max_payload_bytes)
        _positive("result_ttl", self.result_ttl)
        _positive("idempotency_ttl", self.idempotency_ttl)
        _positive("completed_cap", self.completed_cap)
        _positive("dead_letter_cap", self.dead_letter_cap)


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """How one engine runs activities: concurrency, leases, retries and shutdown."""

    max_workers: int = DEFAULT_MAX_WORKERS
    schedule_poll_interval: float = DEFAULT_SCHEDULE_POLL_INTERVAL
    lease_duration: float = DEFAULT_LEASE
    heartbeat_interval: float = DEFAULT_HEARTBEAT
    shutdown_grace: float = DEFAULT_SHUTDOWN_GRACE
    default_max_retries: int = DEFAULT_MAX_RETRIES
    default_timeout: float = DEFAULT_TIMEOUT
    claim_batch: int = DEFAULT_CLAIM_BATCH
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    # Activities claimed ahead of free slots (their leases are held and heartbeated, their
    # timeout starts when they start). None: as many as max_workers. 0 turns it off: best
    # when activities are long and many workers share a queue.
    prefetch: int | None = None
    # An activity whose lease expired this many times (it crashed or hung its workers) is
    # dead-lettered when next claimed, instead of being handed out again forever.
    max_redeliveries: int = DEFAULT_MAX_REDELIVERIES
    # While a handler blocks the event loop (and with it the heartbeat), a guard thread keeps
    # the worker's leases for up to this many seconds of one stall, so that neither the
    # blocking activity nor those sharing its worker are re-run elsewhere. None: as long as
    # default_timeout; 0 turns the guard off.
    loop_stall_limit: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.max_workers, int) or self.max_workers < 1:
            raise ConfigurationError(
                f"max_workers must be an integer >= 1, not {self.max_workers!r}"
            )
        _positive("schedule_poll_interval", self.schedule_poll_interval)
        _positive("lease_duration", self.lease_duration)
        _positive("heartbeat_interval", self.heartbeat_interval)
        _positive("shutdown_grace", self.shutdown_grace, allow_zero=True)
        _positive("default_timeout", self.default_timeout)
        if self.loop_stall_limit is not None:
            _positive("loop_stall_limit", self.loop_stall_limit, allow_zero=True)
        if self.heartbeat_interval >= self.lease_duration:
            raise ConfigurationError(
                f"heartbeat_interval ({self.heartbeat_interval}s) must be shorter than"
                f" lease_duration ({self.lease_duration}s), or leases expire while activities run"
            )
        if not isinstance(self.default_max_retries, int) or self.default_max_retries < 0:
            raise ConfigurationError(
                f"default_max_retries must be an integer >= 0, not {self.default_max_retries!r}"
            )
        if not isinstance(self.max_redeliveries, int) or self.max_redeliveries < 1:
            raise ConfigurationError(
                f"max_redeliveries must be an integer >= 1, not {self.max_redeliveries!r}"
            )
        if self.prefetch is not None and (not isinstance(self.prefetch, int) or self.prefetch < 0):
            raise ConfigurationError(f"prefetch must be an integer >= 0, not {self.prefetch!r}")
        if not isinstance(self.claim_batch, int) or self.claim_batch < 1:
            raise ConfigurationError(
                f"claim_batch must be an integer >= 1, not {self.claim_batch!r}"
            )
