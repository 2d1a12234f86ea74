"""A worker app for the limits tests: ``runnerq worker tests.apps.limits_app:engine``.

Settings from the environment: LIMITS_WORKERS (concurrency, default 10), LIMITS_LEASE
(seconds, default 30). The ``work`` handler (payload: seconds to sleep) keeps, in Redis, for
its queue ``q``: ``live:q`` the activities running now, ``max:q`` the most seen at once,
``starts:q`` a list of "<Redis time in ms> <id>" per start, ``done:q`` a list of the ids it
finished (so a test can count what ran and how often)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from runnerq import ActivityContext, WorkerEngine

lease = float(os.environ.get("LIMITS_LEASE", "30"))
engine = WorkerEngine(
    max_workers=int(os.environ.get("LIMITS_WORKERS", "10")),
    lease_duration=lease,
    heartbeat_interval=lease / 4,
    schedule_poll_interval=min(1.0, lease / 2),
    shutdown_grace=5.0,
)

# Start: live += 1, max = max(max, live), the start's Redis time; in one step.
_START = """
local live = redis.call('INCR', KEYS[1])
if live > tonumber(redis.call('GET', KEYS[2]) or '0') then
  redis.call('SET', KEYS[2], live)
end
local t = redis.call('TIME')
redis.call('RPUSH', KEYS[3], (t[1] * 1000 + math.floor(t[2] / 1000)) .. ' ' .. ARGV[1])
return live
"""


@engine.activity("work")
async def work(payload: Any, ctx: ActivityContext) -> None:
    redis = ctx.activity_executor.redis
    q = engine.queue_name
    await redis.eval(_START, 3, f"live:{q}", f"max:{q}", f"starts:{q}", ctx.activity_id)
    try:
        await asyncio.sleep(float(payload or 0))
    finally:
        await redis.decr(f"live:{q}")
    await redis.rpush(f"done:{q}", ctx.activity_id)
