"""Strict priority across the four levels, first-in-first-out within a level."""

from __future__ import annotations

import random
from typing import Any

from runnerq import ActivityClient, ActivityContext, ActivityOption, ActivityPriority
from tests.conftest import EngineFactory
from tests.support.polling import eventually


async def test_strict_priority_and_fifo_within_level(
    client: ActivityClient, make_engine: EngineFactory, run_engine: Any
) -> None:
    rng = random.Random(7)
    plan = [(rng.choice(list(ActivityPriority)), i) for i in range(200)]
    for priority, i in plan:
        await client.execute_activity("record", {"i": i}, ActivityOption(priority=priority))

    stats = await client.get_stats()
    for priority in ActivityPriority:
        assert stats.by_priority[priority] == sum(1 for p, _ in plan if p is priority)

    order: list[int] = []
    engine = make_engine(max_workers=1)

    @engine.activity("record")
    async def record(payload: Any, ctx: ActivityContext) -> None:
        order.append(payload["i"])

    await run_engine(engine)
    await eventually(lambda: _done(order, len(plan)), what="all activities ran")

    expected = [i for p in ActivityPriority for q, i in plan if q is p]
    assert order == expected


async def _done(order: list[int], n: int) -> bool:
    return len(order) >= n


async def test_higher_priority_enqueued_later_runs_first(
    client: ActivityClient, make_engine: EngineFactory, run_engine: Any
) -> None:
    await client.execute_activity("record", "low", ActivityOption(priority=ActivityPriority.LOW))
    await client.execute_activity("record", "normal")
    await client.execute_activity("record", "critical", ActivityOption(priority="critical"))  # type: ignore[arg-type]
    await client.execute_activity("record", "high", ActivityOption(priority=ActivityPriority.HIGH))
    order: list[str] = []
    engine = make_engine(max_workers=1)

    @engine.activity("record")
    async def record(payload: Any, ctx: ActivityContext) -> None:
        order.append(payload)

    await run_engine(engine)
    await eventually(lambda: _done(order, 4))  # type: ignore[arg-type]
    assert order == ["critical", "high", "normal", "low"]
