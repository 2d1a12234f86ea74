"""The worker app of the chaos suite: ``python -m runnerq worker tests.chaos.app:engine``.

Settings come from the environment (``CHAOS_*``, below). Every execution of a handler is
recorded on a separate *audit* Redis (``CHAOS_AUDIT_URL``), which no fault touches: the
activity id, the worker's pid, the attempt (retry count), when it started and whether it ran
to its end, so the audit can tell a re-run after a crash from a duplicate.

``CHAOS_CLOCK`` skews this process's wall clock (``time.time``), to show that leases do not
depend on it: ``"+30"`` runs 30 s ahead for good; ``"0:+30,2:-45"`` starts 30 s ahead and
jumps to 45 s behind two seconds after import. (libfaketime does the same from outside.)
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import redis.asyncio as aioredis

from runnerq import (
    ActivityContext,
    ActivityError,
    BackoffPolicy,
    QueueSettings,
    RedisConfig,
    WorkerEngine,
)
from tests.chaos.audit import AUDIT_SCRIPT, audit_keys

_real_time = time.time
_started = time.monotonic()


def _parse_clock(spec: str) -> list[tuple[float, float]]:
    """``"+30"`` or ``"0:+30,2:-45"`` -> [(seconds after import, offset seconds)]."""
    steps: list[tuple[float, float]] = []
    for part in spec.split(","):
        at, sep, offset = part.strip().partition(":")
        steps.append((float(at), float(offset)) if sep else (0.0, float(at)))
    return sorted(steps)


def _install_clock(spec: str) -> None:
    steps = _parse_clock(spec)

    def skewed() -> float:
        elapsed = time.monotonic() - _started
        offset = 0.0
        for at, value in steps:
            if elapsed >= at:
                offset = value
        return _real_time() + offset

    time.time = skewed


if os.environ.get("CHAOS_CLOCK"):
    _install_clock(os.environ["CHAOS_CLOCK"])


def _env(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


LEASE = _env("CHAOS_LEASE", 1.0)

engine = WorkerEngine(
    max_workers=int(_env("CHAOS_MAX_WORKERS", 8)),
    lease_duration=LEASE,
    heartbeat_interval=_env("CHAOS_HEARTBEAT", LEASE / 4),
    shutdown_grace=_env("CHAOS_GRACE", 5.0),
    schedule_poll_interval=0.5,
    default_max_retries=int(_env("CHAOS_MAX_RETRIES", 2)),
    default_timeout=_env("CHAOS_TIMEOUT", 30.0),
    # Unset: the engine's default; 0 turns the stall guard off (scenarios that need a worker
    # whose blocked loop loses its leases).
    loop_stall_limit=_env("CHAOS_LOOP_STALL_LIMIT", 0)
    if os.environ.get("CHAOS_LOOP_STALL_LIMIT")
    else None,
    backoff=BackoffPolicy(base=0.05, factor=2.0, cap=0.5, jitter=0.5),
    redis_config=RedisConfig(conn_timeout=_env("CHAOS_CONN_TIMEOUT", 5.0)),
    # `done` keeps every completion of a run, so the audit can read completion times.
    queue_settings=QueueSettings(completed_cap=10_000_000),
)

_audit: aioredis.Redis | None = None


def _audit_client() -> aioredis.Redis:
    global _audit
    if _audit is None:
        _audit = aioredis.Redis.from_url(
            os.environ.get("CHAOS_AUDIT_URL", "redis://127.0.0.1:6379"), decode_responses=True
        )
    return _audit


async def _record(event: str, ctx: ActivityContext) -> None:
    """Record that this execution started (``"start"``) or ran to its end (``"finish"``)."""
    keys = audit_keys(ctx.activity_executor.queue_name)
    wall_ms = round(time.time() * 1000)  # this worker's (maybe skewed) wall clock
    await _audit_client().eval(
        AUDIT_SCRIPT,
        2,
        keys.execs if event == "start" else keys.finishes,
        keys.skew,
        ctx.activity_id,
        f"{os.getpid()}:{ctx.retry_count}",
        wall_ms,
        os.getpid(),
    )


@engine.activity("work")
async def work(payload: Any, ctx: ActivityContext) -> Any:
    """Sleeps ``ms``; fails its first ``fail`` attempts; blocks the event loop for
    ``block_ms`` (every execution) or ``block_first_ms`` (its first execution only)."""
    await _record("start", ctx)
    await asyncio.sleep(payload.get("ms", 0) / 1000)
    if payload.get("block_ms"):
        time.sleep(payload["block_ms"] / 1000)  # a handler that blocks the whole worker
    if payload.get("block_first_ms"):
        key = audit_keys(ctx.activity_executor.queue_name).skew + ":blocked"
        if await _audit_client().hincrby(key, ctx.activity_id, 1) == 1:
            time.sleep(payload["block_first_ms"] / 1000)  # only its first execution blocks
            return {"n": payload["n"]}  # at once: no await between the block and the end
    if ctx.retry_count < payload.get("fail", 0):
        raise RuntimeError(f"planned failure {ctx.retry_count + 1}")
    if payload.get("fatal"):
        raise ActivityError.non_retry("planned fatal error")
    await _record("finish", ctx)
    return {"n": payload["n"]}


@engine.activity("hang")
async def hang(payload: Any, ctx: ActivityContext) -> Any:
    """Runs far past its timeout."""
    await _record("start", ctx)
    await asyncio.sleep(3600)
    return None


@engine.activity("odd_error")
async def odd_error(payload: Any, ctx: ActivityContext) -> Any:
    """Raises an unusual ``Exception``: chained, huge message, non-ASCII, or no message."""
    await _record("start", ctx)
    kind = payload.get("kind")
    if kind == "huge":
        raise ValueError("x" * 2_000_000)
    if kind == "unicode":
        raise UnicodeError("\udcff bad surrogate and \U0001f4a5")
    if kind == "chained":
        try:
            empty: dict[str, int] = {}
            empty["missing"]
        except KeyError as exc:
            raise RuntimeError("wrapped") from exc
    if kind == "empty":
        raise Exception
    if kind == "exception_group":
        raise ExceptionGroup("several", [ValueError("a"), TypeError("b")])
    raise RecursionError("deep")


@engine.activity("bad_result")
async def bad_result(payload: Any, ctx: ActivityContext) -> Any:
    await _record("start", ctx)
    if payload.get("kind") == "huge":
        return "y" * (payload.get("bytes", 4_000_000))
    return {"not json": {1, 2}}


class WeirdBaseException(BaseException):
    """Neither ``Exception`` nor one of the interpreter's own."""


class UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("this exception cannot be printed")


@engine.activity("base_exception")
async def base_exception(payload: Any, ctx: ActivityContext) -> Any:
    """Raises a ``BaseException`` that is not an ``Exception`` (see test_known_bugs.py)."""
    await _record("start", ctx)
    kind = payload.get("kind")
    if kind == "SystemExit":
        raise SystemExit(3)
    if kind == "KeyboardInterrupt":
        raise KeyboardInterrupt
    if kind == "CancelledError":
        raise asyncio.CancelledError
    if kind == "GeneratorExit":
        raise GeneratorExit
    if kind == "unprintable":
        raise UnprintableError
    raise WeirdBaseException("custom BaseException")
