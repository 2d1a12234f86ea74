"""One acknowledgement that cannot be written never holds back the others of its batch: it
is dead-lettered as ``corrupt`` with the error, and the rest are recorded at once."""

from __future__ import annotations

import asyncio
import math

import pytest
import redis.asyncio as aioredis

from runnerq import ActivityClient, ActivityDeadLetteredError
from runnerq.acks import AckBatcher
from runnerq.keys import QueueKeys
from runnerq.metrics import NoopMetrics
from runnerq.outcome import Complete, DeadLetter, Retry
from runnerq.record import ActivityRecord, DeadLetterEntry, ResultDocument


async def test_a_bad_acknowledgement_is_dead_lettered_and_the_rest_recorded(
    client: ActivityClient, raw_redis: aioredis.Redis
) -> None:
    futures = await client.enqueue_many([("t", i) for i in range(4)])
    store = client.store
    await store.load_scripts()
    claim = await store.claim(4, 30, "w")
    assert claim is not None and len(claim.items) == 4
    held = {activity_id: claim.token for activity_id, _ in claim.items}
    records = {i: ActivityRecord.decode(raw) for i, raw in claim.items}
    a, b, c, d = (f.activity_id for f in futures)
    token = claim.token
    batcher = AckBatcher(store, NoopMetrics(), held, lambda: None)
    batcher.add(Complete(a, token, ResultDocument.completed_json("1")))
    # An error text that is not Unicode: its dead-letter entry cannot be encoded.
    bad_entry = DeadLetterEntry(b, "\udcff", "failed", 1.0, records[b])
    batcher.add(DeadLetter(b, token, bad_entry))
    # A delay that is not a number: its retry call cannot be made.
    batcher.add(Retry(c, token, records[c].retried("x").encode(), math.nan))
    batcher.add(Complete(d, token, ResultDocument.completed_json("4")))
    task = asyncio.create_task(batcher.run())
    await batcher.drain(5)
    batcher.close()
    await asyncio.wait_for(task, 5)
    assert await futures[0].get_result(timeout=1) == 1
    assert await futures[3].get_result(timeout=1) == 4
    for future in (futures[1], futures[2]):
        with pytest.raises(ActivityDeadLetteredError, match="could not be recorded") as info:
            await future.get_result(timeout=1)
        assert info.value.reason == "corrupt"
    assert held == {}
    keys = QueueKeys(client.queue_name)
    assert await raw_redis.hlen(keys.leases) == 0
