"""Settings, as frozen dataclasses grouped by concern, with their defaults.

Environment variables are read by the CLI (``runnerq.cli``) and ``runnerq.env`` only, never at
import time.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from .durations import Duration, seconds
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
DEFAULT_HEARTBEAT = DEFAULT_LEASE / 3  # when not given: a third of the lease
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


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ConfigurationError(f"{name} must be True or False, not {value!r}")
    return value


def _positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise ConfigurationError(f"{name} must be a number, not {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigurationError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, not {value!r}")


def _seconds(name: str, value: Duration, *, allow_zero: bool = False) -> float:
    """``value`` (seconds or a timedelta) in seconds, refused unless finite and > 0 (>= 0)."""
    found = seconds(value)
    if found is None:
        raise ConfigurationError(
            f"{name} must be a finite number of seconds or a timedelta, not {value!r}"
        )
    if found < 0 or (found == 0 and not allow_zero):
        raise ConfigurationError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, not {value!r}")
    return found


def _seconds_or_none(
    name: str, value: Duration | None, *, allow_zero: bool = False
) -> float | None:
    return None if value is None else _seconds(name, value, allow_zero=allow_zero)


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _init(obj: object, **values: object) -> None:
    """Set the fields of a frozen dataclass whose ``__init__`` takes other types than it keeps
    (durations as seconds or timedeltas, kept as seconds)."""
    for name, value in values.items():
        object.__setattr__(obj, name, value)


@dataclass(frozen=True, slots=True, init=False)
class RedisConfig:
    """Connection-pool settings, mapped onto redis-py's pool.

    ``max_size`` is the most connections open at once (callers wait up to ``conn_timeout`` for
    a free one); ``min_idle`` connections are opened at connect time; a connection idle for
    longer than ``idle_timeout`` or older than ``max_lifetime`` is closed and replaced before
    its next use. ``socket_timeout`` bounds each reply's wait; by default there is none (TCP
    keepalive finds dead peers instead): a per-read timer costs an asyncio task per command in
    redis-py, about a third of the throughput. Times are in seconds or ``timedelta``s (kept as
    seconds); ``None`` turns a limit off.
    """

    max_size: int
    min_idle: int
    conn_timeout: float
    idle_timeout: float | None
    max_lifetime: float | None
    socket_timeout: float | None

    def __init__(
        self,
        max_size: int = 50,
        min_idle: int = 5,
        conn_timeout: Duration = 30.0,
        idle_timeout: Duration | None = 600.0,
        max_lifetime: Duration | None = 1800.0,
        socket_timeout: Duration | None = None,
    ) -> None:
        if not isinstance(max_size, int) or max_size < 2:
            raise ConfigurationError(f"max_size must be an integer >= 2, not {max_size!r}")
        if not isinstance(min_idle, int) or not 0 <= min_idle <= max_size:
            raise ConfigurationError(
                f"min_idle must be an integer between 0 and max_size, not {min_idle!r}"
            )
        _init(
            self,
            max_size=max_size,
            min_idle=min_idle,
            conn_timeout=_seconds("conn_timeout", conn_timeout),
            idle_timeout=_seconds_or_none("idle_timeout", idle_timeout),
            max_lifetime=_seconds_or_none("max_lifetime", max_lifetime),
            socket_timeout=_seconds_or_none("socket_timeout", socket_timeout),
        )


@dataclass(frozen=True, slots=True, init=False)
class BackoffPolicy:
    """Delay before retry ``n`` (1-based): ``min(cap, base * factor**(n-1))``, less a random
    share of up to ``jitter`` of it, so that activities failing together do not retry together.
    ``base`` and ``cap`` take seconds or a ``timedelta``.
    """

    base: float
    factor: float
    cap: float
    jitter: float

    def __init__(
        self,
        base: Duration = 1.0,
        factor: float = 2.0,
        cap: Duration = 300.0,
        jitter: float = 0.5,
    ) -> None:
        base_s = _seconds("backoff base", base, allow_zero=True)
        cap_s = _seconds("backoff cap", cap, allow_zero=True)
        if not _number(factor) or not 1 <= factor < math.inf:
            raise ConfigurationError(f"backoff factor must be a number >= 1, not {factor!r}")
        if not _number(jitter) or not 0 <= jitter <= 1:
            raise ConfigurationError(f"backoff jitter must be within [0, 1], not {jitter!r}")
        _init(self, base=base_s, factor=factor, cap=cap_s, jitter=jitter)

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


@dataclass(frozen=True, slots=True, init=False)
class QueueSettings:
    """What clients and workers of one queue agree on: names, limits and retention
    (``result_ttl`` and ``idempotency_ttl`` in seconds or as ``timedelta``s).

    ``claim_history`` (on by default): each lease records when it was claimed, and a
    completion's result keeps its lease, so an activity's events say which worker claimed
    it and when (docs/history.md). Off, a worker of the queue saves that on its hot path
    (about 7% of processing no-op activities at concurrency 10, measured there): events have
    no "claimed", everything else is kept."""

    name: str
    max_payload_bytes: int
    result_ttl: float
    idempotency_ttl: float
    completed_cap: int
    dead_letter_cap: int
    claim_history: bool

    def __init__(
        self,
        name: str = DEFAULT_QUEUE,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        result_ttl: Duration = DEFAULT_RESULT_TTL,
        idempotency_ttl: Duration = DEFAULT_IDEMPOTENCY_TTL,
        completed_cap: int = DEFAULT_COMPLETED_CAP,
        dead_letter_cap: int = DEFAULT_DEAD_LETTER_CAP,
        claim_history: bool = True,
    ) -> None:
        validate_queue_name(name)
        _positive("max_payload_bytes", max_payload_bytes)
        _positive("completed_cap", completed_cap)
        _positive("dead_letter_cap", dead_letter_cap)
        _init(
            self,
            name=name,
            max_payload_bytes=max_payload_bytes,
            result_ttl=_seconds("result_ttl", result_ttl),
            idempotency_ttl=_seconds("idempotency_ttl", idempotency_ttl),
            completed_cap=completed_cap,
            dead_letter_cap=dead_letter_cap,
            claim_history=_flag("claim_history", claim_history),
        )


@dataclass(frozen=True, slots=True, init=False)
class WorkerSettings:
    """How one engine runs activities: concurrency, leases, retries and shutdown.

    Durations take seconds or a ``timedelta`` and are kept as seconds. ``heartbeat_interval``
    not given (``None``) is a third of ``lease_duration``; one given must be shorter than it.
    """

    max_workers: int
    schedule_poll_interval: float
    lease_duration: float
    heartbeat_interval: float
    shutdown_grace: float
    default_max_retries: int
    default_timeout: float
    claim_batch: int
    backoff: BackoffPolicy
    # Activities claimed ahead of free slots (their leases are held and heartbeated, their
    # timeout starts when they start). None: as many as max_workers. 0 turns it off: best
    # when activities are long and many workers share a queue.
    prefetch: int | None
    # An activity whose lease expired this many times (it crashed or hung its workers) is
    # dead-lettered when next claimed, instead of being handed out again forever.
    max_redeliveries: int
    # While a handler blocks the event loop (and with it the heartbeat), a guard thread keeps
    # the worker's leases for up to this many seconds of one stall, so that neither the
    # blocking activity nor those sharing its worker are re-run elsewhere. None: as long as
    # default_timeout; 0 turns the guard off.
    loop_stall_limit: float | None

    def __init__(
        self,
        max_workers: int = DEFAULT_MAX_WORKERS,
        schedule_poll_interval: Duration = DEFAULT_SCHEDULE_POLL_INTERVAL,
        lease_duration: Duration = DEFAULT_LEASE,
        heartbeat_interval: Duration | None = None,
        shutdown_grace: Duration = DEFAULT_SHUTDOWN_GRACE,
        default_max_retries: int = DEFAULT_MAX_RETRIES,
        default_timeout: Duration = DEFAULT_TIMEOUT,
        claim_batch: int = DEFAULT_CLAIM_BATCH,
        backoff: BackoffPolicy | None = None,
        prefetch: int | None = None,
        max_redeliveries: int = DEFAULT_MAX_REDELIVERIES,
        loop_stall_limit: Duration | None = None,
    ) -> None:
        if not isinstance(max_workers, int) or max_workers < 1:
            raise ConfigurationError(f"max_workers must be an integer >= 1, not {max_workers!r}")
        lease = _seconds("lease_duration", lease_duration)
        if heartbeat_interval is None:
            heartbeat = lease / 3
        else:
            heartbeat = _seconds("heartbeat_interval", heartbeat_interval)
            if heartbeat >= lease:
                raise ConfigurationError(
                    f"heartbeat_interval ({heartbeat}s) must be shorter than lease_duration"
                    f" ({lease}s), or leases expire while activities run; leave it out to"
                    " take a third of the lease"
                )
        if not isinstance(default_max_retries, int) or default_max_retries < 0:
            raise ConfigurationError(
                f"default_max_retries must be an integer >= 0, not {default_max_retries!r}"
            )
        if not isinstance(max_redeliveries, int) or max_redeliveries < 1:
            raise ConfigurationError(
                f"max_redeliveries must be an integer >= 1, not {max_redeliveries!r}"
            )
        if prefetch is not None and (not isinstance(prefetch, int) or prefetch < 0):
            raise ConfigurationError(f"prefetch must be an integer >= 0, not {prefetch!r}")
        if not isinstance(claim_batch, int) or claim_batch < 1:
            raise ConfigurationError(f"claim_batch must be an integer >= 1, not {claim_batch!r}")
        _init(
            self,
            max_workers=max_workers,
            schedule_poll_interval=_seconds("schedule_poll_interval", schedule_poll_interval),
            lease_duration=lease,
            heartbeat_interval=heartbeat,
            shutdown_grace=_seconds("shutdown_grace", shutdown_grace, allow_zero=True),
            default_max_retries=default_max_retries,
            default_timeout=_seconds("default_timeout", default_timeout),
            claim_batch=claim_batch,
            backoff=BackoffPolicy() if backoff is None else backoff,
            prefetch=prefetch,
            max_redeliveries=max_redeliveries,
            loop_stall_limit=_seconds_or_none(
                "loop_stall_limit", loop_stall_limit, allow_zero=True
            ),
        )
