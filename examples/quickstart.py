"""Quick start: one process that runs a worker, enqueues, and awaits results.

python examples/quickstart.py            # needs a Redis at RUNNERQ_REDIS_URL or 127.0.0.1:6379
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from runnerq import ActivityContext, ActivityPriority, WorkerEngine


async def main() -> None:
    engine = await (
        WorkerEngine.builder()
        .redis_url(os.environ.get("RUNNERQ_REDIS_URL", "redis://127.0.0.1:6379"))
        .queue_name("quickstart")
        .max_workers(4)
        .build()
    )

    @engine.activity("greet")
    async def greet(payload: Any, ctx: ActivityContext) -> Any:
        return f"hello, {payload['name']} (priority {ctx.priority.value})"

    worker = asyncio.create_task(engine.start())
    executor = engine.get_activity_executor()
    future = (
        await executor.activity("greet")
        .payload({"name": "Ada"})
        .priority(ActivityPriority.HIGH)
        .execute()
    )
    print(await future.get_result(timeout=10))
    await engine.stop()
    await worker
    await engine.aclose()


if __name__ == "__main__":
    asyncio.run(main())
