"""An idle worker waits for work in Redis (BLPOP on the queue's notify list) with its next
claim written right behind the wait, so Redis claims for it the moment a wake-up arrives;
'1' tokens wake claimers, an 's' token the scheduler, and stopping ends the wait at once."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from runnerq import ActivityClient, ActivityContext, ActivityOption
from runnerq.keys import QueueKeys
from tests.conftest import EngineFactory
from tests.support.polling import eventually


async def _blocked_clients(raw_redis: aioredis.Redis) -> list[dict[str, Any]]:
    clients = await raw_redis.client_list()
    return [c for c in clients if c.get("cmd") == "blpop"]


async def test_the_idle_worker_waits_with_its_claim_queued_behind(
    client: ActivityClient, make_engine: EngineFactory, run_engine: Any, raw_redis: aioredis.Redis
) -> None:
    engine = make_engine()

    @engine.activity("echo")
    async def echo(payload: Any, ctx: ActivityContext) -> Any:
        return payload

    await run_engine(engine)
    # Redis holds the claim in the waiting connection's query buffer until the wait ends.
    blocked = await eventually(lambda: _blocked_clients(raw_redis), what="a blocked worker")
    assert len(blocked) == 1
    assert int(blocked[0]["qbuf"]) > 0
    for i in range(3):  # each enqueue is claimed through the queued claim, then it waits again
        assert await (await client.execute_activity("echo", i)).get_result(timeout=10) == i


async def test_a_schedule_wake_up_survives_the_claim_of_ready_work(
    client: ActivityClient, make_engine: EngineFactory, run_engine: Any
) -> None:
    """One enqueue call with a ready and a delayed activity pushes a '1' and an 's': the
    claim that takes the ready one leaves the 's' for the scheduler (it used to delete every
    token once the ready set was empty, and the delayed activity waited for the next poll)."""
    engine = make_engine(schedule_poll_interval=60)

    @engine.activity("echo")
    async def echo(payload: Any, ctx: ActivityContext) -> Any:
        return payload

    await run_engine(engine)
    ready, delayed = await client.enqueue_many(
        [("echo", "now"), ("echo", "later", ActivityOption(delay=0.5))]
    )
    assert await ready.get_result(timeout=10) == "now"
    assert await delayed.get_result(timeout=10) == "later"  # not 60 s


async def test_stopping_ends_the_wait_through_the_workers_own_list(
    client: ActivityClient, make_engine: EngineFactory, run_engine: Any, raw_redis: aioredis.Redis
) -> None:
    engine = make_engine(schedule_poll_interval=60)

    @engine.activity("echo")
    async def echo(payload: Any, ctx: ActivityContext) -> Any:
        return payload

    await run_engine(engine)
    await eventually(lambda: _blocked_clients(raw_redis), what="a blocked worker")
    worker = engine.worker
    assert worker is not None
    await engine.stop()
    wake_key = QueueKeys(client.queue_name).wake(worker.worker_id)
    assert await raw_redis.exists(wake_key) == 0  # the stop token was taken by the wait
    assert await _blocked_clients(raw_redis) == []


async def test_a_claim_that_empties_the_ready_set_drops_the_ready_tokens(
    client: ActivityClient, raw_redis: aioredis.Redis
) -> None:
    """'1' tokens left once nothing is ready would only wake workers for nothing: the claim
    that takes the last ready activity drops them, whether it asked for more than there were
    or for exactly as many; one that leaves work behind keeps them; an 's' always stays."""
    keys = QueueKeys(client.queue_name)
    store = client.store

    async def tokens() -> list[str]:
        return sorted(str(t) for t in await raw_redis.lrange(keys.notify, 0, -1))

    await client.enqueue_many([("t", i) for i in range(3)])
    await client.execute_activity("t", "later", ActivityOption(delay=60))
    assert await tokens() == ["1", "1", "1", "s"]
    claim = await store.claim(2, 30, "w")  # two of three: work is left
    assert claim is not None and len(claim.items) == 2
    assert await tokens() == ["1", "1", "1", "s"]
    claim = await store.claim(1, 30, "w")  # exactly what was left
    assert claim is not None and len(claim.items) == 1
    assert await tokens() == ["s"]

    await client.enqueue_many([("t", i) for i in range(2)])
    assert await tokens() == ["1", "1", "s"]
    claim = await store.claim(5, 30, "w")  # more than there is
    assert claim is not None and len(claim.items) == 2
    assert await tokens() == ["s"]
