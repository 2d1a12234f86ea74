"""The worker app of the console's browser tests (and of ``hack/console_screenshot.py``):
``runnerq worker tests.browser.app:engine --queue Q``.

Heartbeats come every ``BROWSER_HEARTBEAT`` seconds (0.3 by default), so a worker's registry
entry expires one second (the shortest TTL the engine gives it) after its last beat. No
prefetch: a worker claims only for its free slots, so a busy one leaves the rest pending.

* ``flaky``: fails its first run with "first run fails on purpose" and succeeds after
  (it counts its runs in ``browser:runs:<id>``), so a dead letter requeued from the page
  then completes.
* ``work``: sleeps ``{"seconds": s}`` (0 by default) and returns ``{"done": true}``.
* ``broken``: always fails with ``{"error": text}``.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from runnerq import ActivityContext, NonRetryableError, WorkerEngine

heartbeat = float(os.environ.get("BROWSER_HEARTBEAT", "0.3"))
engine = WorkerEngine(
    lease_duration=max(1.0, 4 * heartbeat),
    heartbeat_interval=heartbeat,
    shutdown_grace=2.0,
    schedule_poll_interval=1.0,
    prefetch=0,
)


@engine.activity("flaky")
async def flaky(payload: Any, ctx: ActivityContext) -> Any:
    runs = await ctx.activity_executor.redis.incr(f"browser:runs:{ctx.activity_id}")
    if runs == 1:
        raise NonRetryableError("first run fails on purpose")
    return {"runs": runs}


@engine.activity("work")
async def work(payload: Any, ctx: ActivityContext) -> Any:
    seconds = float(payload.get("seconds", 0)) if isinstance(payload, dict) else 0.0
    if seconds:
        await ctx.progress(0.5, "half way")
        await asyncio.sleep(seconds)
    return {"done": True}


@engine.activity("broken")
async def broken(payload: Any, ctx: ActivityContext) -> Any:
    text = payload.get("error", "broken") if isinstance(payload, dict) else "broken"
    raise NonRetryableError(str(text))
