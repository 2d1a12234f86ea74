"""A worker app: ``runnerq worker examples.app:engine``.

The engine is created unconnected at import time; the CLI applies ``--redis-url``,
``--queue`` and ``--max-workers`` (or RUNNERQ_* variables) and runs it.
"""

from __future__ import annotations

from typing import Any

from runnerq import ActivityContext, ActivityError, WorkerEngine, non_retryable

engine = WorkerEngine()


@engine.activity("send_email")
async def send_email(payload: Any, ctx: ActivityContext) -> Any:
    with non_retryable("send_email payload"):
        to = str(payload["to"])
    if to.endswith(".invalid"):
        raise ActivityError.non_retry(f"cannot deliver to {to}")
    return {"delivered_to": to, "attempt": ctx.retry_count + 1}


@engine.activity("resize_image")
async def resize_image(payload: Any, ctx: ActivityContext) -> Any:
    width = int(payload.get("width", 100))
    return {"thumbnail": f"{payload['name']}@{width // 4}px"}


@engine.activity("signup")
async def signup(payload: Any, ctx: ActivityContext) -> Any:
    """Fans out: enqueues a welcome email and an avatar resize, and waits for both."""
    executor = ctx.activity_executor
    email = await executor.activity("send_email").payload({"to": payload["email"]}).execute()
    avatar = await executor.activity("resize_image").payload({"name": payload["avatar"]}).execute()
    return {
        "email": await email.get_result(timeout=60),
        "avatar": await avatar.get_result(timeout=60),
    }
