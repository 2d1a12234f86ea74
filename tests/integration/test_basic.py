from __future__ import annotations

from typing import Any

from runnerq import ActivityClient, ActivityContext
from tests.conftest import EngineFactory


async def test_enqueue_run_and_await_result(make_engine: EngineFactory, run_engine: Any) -> None:
    engine = make_engine()

    @engine.activity("add")
    async def add(payload: Any, ctx: ActivityContext) -> Any:
        return {"sum": payload["a"] + payload["b"], "id": ctx.activity_id}

    await run_engine(engine)
    future = (
        await engine.get_activity_executor().activity("add").payload({"a": 1, "b": 2}).execute()
    )
    result = await future.get_result(timeout=5)
    assert result == {"sum": 3, "id": future.activity_id}
    stats = await engine.get_stats()
    assert stats.completed == 1
    assert stats.pending == 0 and stats.running == 0


async def test_client_alone_enqueues(client: ActivityClient) -> None:
    future = await client.execute_activity("nothing", {"x": 1})
    stats = await client.get_stats()
    assert stats.pending == 1 and stats.enqueued == 1
    assert future.created
