"""``runnerq worker tests.e2e.apps.noop_app:engine``: activities of type ``noop`` that take
a few milliseconds (``{"sleep": seconds}`` makes one take longer)."""

from __future__ import annotations

import asyncio
from typing import Any

from runnerq import ActivityContext, WorkerEngine

engine = WorkerEngine()


@engine.activity("noop")
async def noop(payload: Any, ctx: ActivityContext) -> dict[str, Any]:
    seconds = payload.get("sleep", 0.005) if isinstance(payload, dict) else 0.005
    await asyncio.sleep(float(seconds))
    return {"id": ctx.activity_id}
