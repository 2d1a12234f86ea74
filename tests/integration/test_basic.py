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


class Resize:
    """A handler object (the ActivityHandler protocol) rather than a function."""

    def activity_type(self) -> str:
        return "resize"

    async def handle(self, payload: Any, ctx: ActivityContext) -> Any:
        return {
            "size": payload["w"] // 2,
            "metadata": ctx.metadata,
            "priority": ctx.priority.value,
            "retry_count": ctx.retry_count,
            "type": ctx.activity_type,
        }


async def test_handler_object_and_context_fields(
    make_engine: EngineFactory, run_engine: Any
) -> None:
    engine = make_engine()
    engine.register_activity(Resize())
    await run_engine(engine)
    future = await (
        engine.get_activity_executor()
        .activity("resize")
        .payload({"w": 640})
        .metadata({"tenant": "acme", "trace": "t-1"})
        .priority("high")
        .execute()
    )
    assert await future.get_result(timeout=10) == {
        "size": 320,
        "metadata": {"tenant": "acme", "trace": "t-1"},
        "priority": "high",
        "retry_count": 0,
        "type": "resize",
    }


async def test_handlers_fan_out_and_await_children(
    make_engine: EngineFactory, run_engine: Any
) -> None:
    engine = make_engine(max_workers=4)

    @engine.activity("child")
    async def child(payload: Any, ctx: ActivityContext) -> Any:
        return payload * payload

    @engine.activity("parent")
    async def parent(payload: Any, ctx: ActivityContext) -> Any:
        futures = [await ctx.activity_executor.execute_activity("child", n) for n in payload]
        return [await f.get_result(timeout=10) for f in futures]

    await run_engine(engine)
    future = await engine.get_activity_executor().execute_activity("parent", [1, 2, 3, 4])
    assert await future.get_result(timeout=20) == [1, 4, 9, 16]
    assert (await engine.get_stats()).completed == 5
