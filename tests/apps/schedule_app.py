"""A worker app for the schedule tests: ``runnerq worker tests.apps.schedule_app:engine``.

It declares an every-second schedule (``SCHEDULE_EVERY`` seconds) whose handler records each
run in Redis: ``ran:<queue>`` gets ``<tick> <activity id> <pid>`` per run."""

from __future__ import annotations

import os
from typing import Any

from runnerq import ActivityContext, WorkerEngine

engine = WorkerEngine(schedule_poll_interval=5.0, shutdown_grace=5.0)
engine.schedule("heartbeat", "beat", every=float(os.environ.get("SCHEDULE_EVERY", "1")))


@engine.activity("beat")
async def beat(payload: Any, ctx: ActivityContext) -> None:
    redis = ctx.activity_executor.redis
    tick = ctx.metadata["runnerq_tick"]
    await redis.rpush(f"ran:{engine.queue_name}", f"{tick} {ctx.activity_id} {os.getpid()}")
