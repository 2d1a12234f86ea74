"""The engine on a real Redis Cluster and a real Sentinel set, through a failover."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from runnerq import (
    ActivityClient,
    ActivityContext,
    ActivityDeadLetteredError,
    ActivityError,
    ActivityFuture,
    ActivityOption,
    ActivityPriority,
    RedisConfig,
    RedisUnavailableError,
    WorkerEngine,
)
from runnerq.console import ConsoleSettings, create_app
from runnerq.keys import QueueKeys
from runnerq.presence import list_queues
from tests.support.polling import eventually
from tests.support.redis_server import free_port
from tests.support.redis_topologies import RedisClusterSet, SentinelSet

pytestmark = [
    pytest.mark.slow,
    pytest.mark.topology,
    # redis-py drops the connections of a failed node without closing them; the leak is
    # in the library's failover path, not in runnerq, and would otherwise fail the run.
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


@pytest.fixture(autouse=True)
def _collect_leaked_connections() -> Iterator[None]:
    """Collect what redis-py leaked while this module's warning filters still apply."""
    yield
    _quiet_collect()


def _quiet_collect() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        for _ in range(3):
            gc.collect()


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterSet]:
    with RedisClusterSet() as c:
        yield c
    _quiet_collect()


@pytest.fixture(scope="module")
def sentinels() -> Iterator[SentinelSet]:
    with SentinelSet() as s:
        yield s
    _quiet_collect()


def _engine(
    url: str, queue: str, order: list[Any], runs: Counter[str] | None = None
) -> WorkerEngine:
    """An engine whose ``record`` handler appends its payload to ``order`` and counts its
    executions by activity id in ``runs``."""
    engine = WorkerEngine(
        url,
        queue,
        max_workers=1,
        heartbeat_interval=0.5,
        lease_duration=5,
        schedule_poll_interval=1,
        redis_config=RedisConfig(conn_timeout=2),
    )

    @engine.activity("record")
    async def record(payload: Any, ctx: ActivityContext) -> Any:
        order.append(payload)
        if runs is not None:
            runs[ctx.activity_id] += 1
        return payload

    @engine.activity("fail")
    async def fail(payload: Any, ctx: ActivityContext) -> Any:
        raise ActivityError.non_retry("no")

    return engine


async def _behaviour(url: str, queue: str) -> None:
    """Priorities, results, scheduling, dead letters, cancel, idempotency and stats."""
    client = ActivityClient(url, queue)
    order: list[Any] = []
    await client.execute_activity("record", "low", ActivityOption(priority=ActivityPriority.LOW))
    await client.execute_activity(
        "record", "critical", ActivityOption(priority=ActivityPriority.CRITICAL)
    )
    cancelled = await client.execute_activity("record", "cancelled")
    assert await cancelled.cancel()
    first = await client.activity("record").payload("idem").idempotency_key("k").execute()
    again = await client.activity("record").payload("idem-2").idempotency_key("k").execute()
    assert again.activity_id == first.activity_id
    engine = _engine(url, queue, order)
    task = asyncio.create_task(engine.start(install_signal_handlers=False))
    try:
        delayed = await client.execute_activity("record", "delayed", ActivityOption(delay=0.2))
        assert await delayed.get_result(timeout=20) == "delayed"
        assert await first.get_result(timeout=20) == "idem"
        with pytest.raises(ActivityDeadLetteredError):
            await (await client.execute_activity("fail", None)).get_result(timeout=20)
        assert order[:3] == ["critical", "idem", "low"]
        stats = await client.get_stats()
        assert (stats.completed, stats.cancelled, stats.dead_letter) == (4, 1, 1)
    finally:
        await engine.stop()
        await task
        await engine.aclose()
        await client.aclose()


async def _survives_failover(
    url: str, queue: str, master_port: Callable[[], int], fail_over: Callable[[], object]
) -> None:
    """Activities enqueued before the failover (run, and replicated before the master is
    killed) and after it, while the client finds the new master: counted as the chaos suite's
    audit counts them. Every acknowledged activity completes once; an enqueue that raised may
    or may not have gone in, so the counters may hold up to that many more, each run once."""
    client = ActivityClient(url, queue, redis_config=RedisConfig(conn_timeout=2))
    order: list[Any] = []
    runs: Counter[str] = Counter()  # activity id -> executions
    engine = _engine(url, queue, order, runs)
    engine.configure(max_workers=4)
    task = asyncio.create_task(engine.start(install_signal_handlers=False))
    try:
        before = await client.enqueue_many([("record", i) for i in range(20)])
        assert [await f.get_result(timeout=20) for f in before] == list(range(20))
        # Replication is asynchronous: what the replica had not received when its master died
        # is lost, and an activity whose completion is lost runs again. That is Redis's
        # guarantee, not runnerq's, so the test waits for it here and the counts below can be
        # exact: nothing lost, nothing run twice.
        await _replicated(master_port(), queue)
        await asyncio.to_thread(fail_over)
        after: list[ActivityFuture] = []
        unacked = 0  # enqueue calls that raised: each may have gone in or not
        for i in range(20, 40):
            for _ in range(100):  # the client may take a few tries to find the new master
                try:
                    after.append(await client.execute_activity("record", i))
                    break
                except RedisUnavailableError:
                    unacked += 1
                    await asyncio.sleep(0.1)
        assert len(after) == 20
        assert [await f.get_result(timeout=60) for f in after] == list(range(20, 40))
        acked = {f.activity_id for f in [*before, *after]}
        assert len(acked) == 40

        # What a raised enqueue put in runs too: wait until the queue holds nothing to run.
        async def drained() -> bool:
            stats = await client.get_stats()
            return stats.pending + stats.running + stats.scheduled == 0

        await eventually(drained, timeout=30, what="the queue drained")
        stats = await client.get_stats()
        unacked_applied = set(runs) - acked
        assert acked <= set(runs)  # nothing acknowledged was lost
        assert [i for i, n in runs.items() if n > 1] == []  # nothing ran twice
        assert len(unacked_applied) <= unacked
        assert stats.enqueued == 40 + len(unacked_applied)
        assert (stats.completed, stats.dead_letter, stats.redelivered) == (len(runs), 0, 0)
        assert not task.done()
    finally:
        await engine.stop()
        await task
        await engine.aclose()
        await client.aclose()


async def _replicated(port: int, queue: str) -> None:
    """Wait until every replica of the master at ``port`` holds what it was sent so far (a
    write in the queue's slot, then WAIT on the same connection: replication is in order)."""
    node = aioredis.Redis(port=port)
    try:
        info = await node.info("replication")
        replicas = int(info["connected_slaves"])
        assert replicas >= 1
        await node.set(f"test:{{{queue}}}:replicated", 1)
        assert await node.wait(replicas, 10_000) == replicas
    finally:
        await node.aclose()


async def test_cluster_behaviour(cluster: RedisClusterSet) -> None:
    await _behaviour(cluster.url, "cluster-behaviour")


async def test_queues_spread_over_cluster_slots(cluster: RedisClusterSet) -> None:
    masters = {cluster.master_of(QueueKeys(f"q{i}").ready) for i in range(12)}
    assert len(masters) > 1
    for i in range(3):
        keys = QueueKeys(f"q{i}")
        assert (
            len({cluster.master_of(getattr(keys, k)) for k in ("jobs", "ready", "inflight", "dlq")})
            == 1
        )


async def test_cluster_failover(cluster: RedisClusterSet) -> None:
    queue = "cluster-failover"
    ready = QueueKeys(queue).ready
    await _survives_failover(
        cluster.url, queue, lambda: cluster.master_of(ready), lambda: cluster.fail_over(ready)
    )


async def test_a_cluster_enqueue_whose_reply_is_late_is_not_sent_again(
    cluster: RedisClusterSet,
) -> None:
    # The queue's node is busy for a second (a script spinning on it): the enqueue's read
    # times out while the call waits in Redis. It must raise, not be sent again behind the
    # caller's back (each resend would run when the node is free again).
    queue = "cluster-no-resend"
    port = cluster.master_of(QueueKeys(queue).ready)
    config = RedisConfig(socket_timeout=0.15, conn_timeout=2)
    async with ActivityClient(cluster.url, queue, redis_config=config) as client:
        await client.store.load_scripts()
        spin = subprocess.Popen(
            ["redis-cli", "-p", str(port), "EVAL", _SPIN_ONE_SECOND, "0"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            await eventually(lambda: _busy(port), timeout=5, what="the node busy")
            with pytest.raises(RedisUnavailableError):
                await client.execute_activity("t", 1)
            await asyncio.to_thread(spin.wait, 10)
        finally:
            if spin.poll() is None:
                spin.kill()
                spin.wait()
    async with ActivityClient(cluster.url, queue) as client:
        stats = await client.get_stats()
    assert (stats.enqueued, stats.pending) == (1, 1)  # run once, when the node was free


async def _busy(port: int) -> bool:
    """Whether the node at ``port`` is held by a script (a PING gets no answer in time)."""
    node = aioredis.Redis(port=port)
    try:
        await asyncio.wait_for(node.ping(), 0.05)
        return False
    except TimeoutError:
        return True
    finally:
        await node.aclose()


# Holds a node for one second (a busy script blocks every other client, under the
# cluster's node timeout of 1.5 s).
_SPIN_ONE_SECOND = """
local t = redis.call('TIME')
local start = t[1] * 1000000 + t[2]
repeat
  t = redis.call('TIME')
until t[1] * 1000000 + t[2] - start > 1000000
return 1
"""


async def test_sentinel_behaviour(sentinels: SentinelSet) -> None:
    await _behaviour(sentinels.url, "sentinel-behaviour")


async def test_sentinel_failover(sentinels: SentinelSet) -> None:
    await _survives_failover(
        sentinels.url, "sentinel-failover", sentinels.master_port, sentinels.fail_over
    )


async def test_operator_reads_depths_and_writes_config_on_cluster_and_sentinel(
    cluster: RedisClusterSet, sentinels: SentinelSet
) -> None:
    import time

    from runnerq_operator.redis_queues import (
        DepthQuery,
        RedisPools,
        read_depths,
        write_queue_config,
    )
    from runnerq_operator.redis_target import RedisTarget
    from runnerq_operator.spec import QueueConfigSpec

    pools = RedisPools()
    try:
        for url in (cluster.url, sentinels.url):
            queues = [f"op-q{i}" for i in range(4)]  # spread over the cluster's slots
            for n, queue in enumerate(queues):
                async with ActivityClient(url, queue) as c:
                    await c.enqueue_many([("t", i) for i in range(n + 1)])
            client = pools.client(RedisTarget(url))
            depths = await read_depths(
                client, [DepthQuery(q) for q in queues], int(time.time() * 1000)
            )
            assert [d.ready for d in depths] == [1, 2, 3, 4]
            await write_queue_config(client, queues[0], QueueConfigSpec(paused=True))
            async with ActivityClient(url, queues[0]) as c:
                assert (await c.get_stats()).paused
    finally:
        await pools.aclose()


async def test_console_and_history_on_cluster(cluster: RedisClusterSet) -> None:
    """Issue 19 on a real Redis Cluster: the registry of queue names (a SET outside every
    queue's slot) lists queues that live on different nodes; the worker registry, an
    activity's events and progress, and the console's API over them all work there."""
    queues = [f"console-cluster-{i}" for i in range(6)]
    assert len({cluster.master_of(QueueKeys(q).ready) for q in queues}) > 1
    clients = [ActivityClient(cluster.url, q) for q in queues]
    engine = WorkerEngine(cluster.url, queues[0], max_workers=2)

    @engine.activity("t")
    async def t(payload: Any, ctx: ActivityContext) -> Any:
        await ctx.progress(0.5, "half way")
        return payload

    task = asyncio.create_task(engine.start(install_signal_handlers=False))
    settings = ConsoleSettings(redis_url=cluster.url, no_auth=True)
    runner = web.AppRunner(create_app(settings))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    base = f"http://127.0.0.1:{port}/api"
    try:
        for c in clients[1:]:
            await c.execute_activity("t", c.queue_name)  # registers the queue, stays pending
        future = await clients[0].execute_activity("t", 7)
        assert await future.get_result(timeout=20) == 7
        assert set(queues) <= set(await list_queues(clients[0].redis))
        kinds = [e.kind for e in await clients[0].get_events(future.activity_id)]
        assert kinds == ["claimed", "completed"]
        progress = await future.progress()
        assert progress is not None and progress.message == "half way"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/queues") as response:
                assert response.status == 200
                shown = {q["queue"] for q in (await response.json())["queues"]}
            assert set(queues) <= shown
            one = f"{base}/queues/{queues[0]}"
            async with http.get(f"{one}/activities/{future.activity_id}") as response:
                assert response.status == 200
                activity = await response.json()
            assert activity["state"] == "completed" and activity["result"]["result"] == 7
            async with http.get(f"{one}/workers") as response:
                assert response.status == 200
                assert len((await response.json())["workers"]) == 1
            async with http.get(f"{base}/queues/{queues[1]}/lists/ready") as response:
                assert response.status == 200
                assert (await response.json())["total"] == 1
    finally:
        await runner.cleanup()
        await engine.stop()
        await task
        await engine.aclose()
        for c in clients:
            await c.aclose()
