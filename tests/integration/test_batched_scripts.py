"""The claim and complete scripts do their bookkeeping for a whole batch in a few calls:
what one activity of the batch does must still hold for each."""

from __future__ import annotations

from runnerq import ActivityClient
from runnerq.record import ResultDocument


async def test_an_id_completed_twice_in_one_call_counts_once(client: ActivityClient) -> None:
    await client.store.load_scripts()  # run_calls pipelines EVALSHA only
    future = await client.execute_activity("t", 1)
    claim = await client.store.claim(10, 30.0, "w")
    assert claim is not None and [i for i, _ in claim.items] == [future.activity_id]
    doc = ResultDocument.completed_json("1")
    item = (future.activity_id, claim.token, doc)
    replies = await client.store.run_calls([client.store.complete_call([item, item])])
    assert [int(x) for x in replies[0]] == [1, 0]
    stats = await client.get_stats()
    assert (stats.completed, stats.running, stats.pending) == (1, 0, 0)
    assert await future.get_result(timeout=5) == 1


async def test_claims_larger_than_one_unpack(client: ActivityClient) -> None:
    """More ids than Lua unpacks at once (the scripts slice their arguments)."""
    await client.store.load_scripts()
    n = 5_000
    futures = await client.enqueue_many([("t", i) for i in range(n)])
    claim = await client.store.claim(n, 30.0, "w")
    assert claim is not None
    assert [i for i, _ in claim.items] == [f.activity_id for f in futures]
    assert all(raw for _, raw in claim.items)
    items = [(f.activity_id, claim.token, ResultDocument.completed_json("0")) for f in futures]
    replies = await client.store.run_calls([client.store.complete_call(items)])
    assert sum(int(x) for x in replies[0]) == n
    stats = await client.get_stats()
    assert (stats.completed, stats.running) == (n, 0)
