"""A worker app for process-level tests (crash, SIGTERM, CLI).

Settings come from the environment so tests can tune them: CRASH_LEASE (seconds).
Every handler records each attempt in Redis (``attempts:<id>`` counter) so that the
test can tell which activities ran and how often.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from runnerq import ActivityContext, WorkerEngine

lease = float(os.environ.get("CRASH_LEASE", "1.0"))
engine = WorkerEngine(
    lease_duration=lease,
    heartbeat_interval=lease / 4,
    shutdown_grace=float(os.environ.get("CRASH_GRACE", "5")),
    schedule_poll_interval=1.0,
)


@engine.activity("sleepy")
async def sleepy(payload: Any, ctx: ActivityContext) -> Any:
    redis = ctx.activity_executor.redis
    await redis.incr(f"attempts:{ctx.activity_id}")
    await redis.rpush("started", ctx.activity_id)
    await asyncio.sleep(float(payload.get("seconds", 0)))
    await redis.incr(f"finished:{ctx.activity_id}")
    return {"slept": payload.get("seconds", 0)}


@engine.activity("echo")
async def echo(payload: Any, ctx: ActivityContext) -> Any:
    return payload


@engine.activity("blocking")
async def blocking(payload: Any, ctx: ActivityContext) -> Any:
    """Blocking code in a thread: cancelling the handler does not stop the thread."""
    await ctx.activity_executor.redis.rpush("started", ctx.activity_id)
    await asyncio.to_thread(time.sleep, float(payload["seconds"]))
    return "slept"
