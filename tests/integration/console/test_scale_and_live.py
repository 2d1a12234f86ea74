"""Lists and searches over many entries (written with pipelines, not enqueues), and the live
stream."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from runnerq import ActivityClient
from runnerq.console import ConsoleSettings, create_app
from runnerq.console.cursors import encode_cursor
from runnerq.console.routes import CONSOLE
from runnerq.keys import QueueKeys
from runnerq.record import ActivityRecord
from tests.integration.console.conftest import Api, MakeApi, write_dead, write_ready
from tests.support.polling import eventually
from tests.support.redis_server import free_port

SPAN = 2**48


def q(queue: str, rest: str = "") -> str:
    return f"/api/queues/{queue}{rest}"


async def test_search_among_100000(
    api: Api, client: ActivityClient, raw_redis: aioredis.Redis
) -> None:
    queue = client.queue_name
    keys = QueueKeys(queue)
    ids = await write_ready(raw_redis, queue, 100_000)
    # Three of another type, far apart in the hash.
    for n in (17, 50_001, 99_998):
        record = ActivityRecord(ids[n], "needle", {}, created_at=1.0).encode()
        await raw_redis.hset(keys.jobs, ids[n], record)
    keyed = await client.activity("t").idempotency_key("order-77").execute()

    status, found = await api.get("/api/search", by="id", q=ids[54_321])
    assert status == 200
    assert found["items"] == [{"queue": queue, "id": ids[54_321], "where": "unfinished"}]
    _, none = await api.get("/api/search", by="id", q="a9999999")
    assert none["items"] == []
    _, by_key = await api.get("/api/search", by="idempotency_key", q="order-77", queue=queue)
    assert [i["id"] for i in by_key["items"]] == [keyed.activity_id]

    # By type: a bounded scan per request, resumed from its cursor to the end.
    seen: set[str] = set()
    cursor, requests, scanned = None, 0, 0
    while True:
        status, page = await api.get(
            "/api/search", by="type", q="needle", queue=queue, cursor=cursor, limit=10
        )
        assert status == 200, page
        requests += 1
        scanned += page["scanned"]
        assert page["scanned"] <= 5_000 + 500  # the budget, and at most a batch past it
        seen.update(i["id"] for i in page["items"])
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == {ids[17], ids[50_001], ids[99_998]}
    assert requests >= 100_000 // 5_500
    assert scanned >= 100_000


async def test_error_search_among_dead_letters_resumes_exactly(
    api: Api, client: ActivityClient, raw_redis: aioredis.Redis
) -> None:
    queue = client.queue_name
    errors = ["connection refused"] * 12_000
    for n in (3, 4, 5, 11_000):
        errors[n] = f"Needle Error number {n}"
    ids = await write_dead(raw_redis, queue, errors)
    found: list[str] = []
    cursor, requests = None, 0
    while True:
        status, page = await api.get(
            "/api/search", by="error", q="needle error", queue=queue, cursor=cursor, limit=2
        )
        assert status == 200, page
        requests += 1
        assert page["scanned"] <= 5_000 and len(page["items"]) <= 2
        found += [i["id"] for i in page["items"]]
        cursor = page["next"]
        if cursor is None:
            break
    # Newest first, each once, none lost where a page stopped inside a batch.
    assert found == [ids[11_000], ids[5], ids[4], ids[3]]
    assert requests >= 3
    bad = [
        {"by": "error", "q": "x"},  # no queue
        {"by": "type", "q": "x", "queue": queue, "cursor": "junk"},
        {"by": "colour", "q": "x"},
        {"by": "id", "q": ""},
    ]
    for params in bad:
        status, _doc = await api.get("/api/search", **params)
        assert status == 400, params


async def test_pages_deep_in_a_list_of_100000(
    api: Api, client: ActivityClient, raw_redis: aioredis.Redis
) -> None:
    queue = client.queue_name
    ids = await write_ready(raw_redis, queue, 100_000)
    near_end = encode_cursor("ready:normal", i=ids[99_990], s=float(2 * SPAN + 99_990))
    status, page = await api.get(q(queue, "/lists/ready"), priority="normal", cursor=near_end)
    assert status == 200
    assert [i["id"] for i in page["items"]] == ids[99_991:] and page["next"] is None
    assert page["total"] == 100_000
    _, first = await api.get(q(queue, "/lists/ready"), limit=500)
    _, second = await api.get(q(queue, "/lists/ready"), limit=500, cursor=first["next"])
    assert [i["id"] for i in second["items"]] == ids[500:1000]


async def test_page_after_a_removed_entry_among_equal_scores(
    api: Api, client: ActivityClient, raw_redis: aioredis.Redis
) -> None:
    """Scheduled activities share a due time: the page after one that left goes on by id."""
    queue = client.queue_name
    keys = QueueKeys(queue)
    members = {f"s{n:05d}": 5_000 for n in range(2_500)}
    await raw_redis.zadd(keys.scheduled, members)
    _, first = await api.get(q(queue, "/lists/scheduled"), limit=100)
    assert [i["id"] for i in first["items"]] == [f"s{n:05d}" for n in range(100)]
    await raw_redis.zrem(keys.scheduled, "s00099")
    _, second = await api.get(q(queue, "/lists/scheduled"), limit=100, cursor=first["next"])
    assert [i["id"] for i in second["items"]] == [f"s{n:05d}" for n in range(100, 200)]
    assert second["items"][0]["record"] == "missing"  # no record written for these


async def read_event(response: Any) -> tuple[str, Any]:
    """The next event of an SSE response: (name, parsed data)."""
    name, data = "message", ""
    while True:
        line = (await asyncio.wait_for(response.content.readline(), 10)).decode()
        if line == "\n":
            if data:
                return name, json.loads(data)
            name, data = "message", ""
            continue
        if line.startswith("event: "):
            name = line[7:].strip()
        elif line.startswith("data: "):
            data += line[6:].strip()


async def test_live_stream_sends_changes_only(make_api: MakeApi, client: ActivityClient) -> None:
    api = await make_api(sse_interval=0.05)
    queue = client.queue_name
    first = await client.execute_activity("t")
    params = {"queue": queue, "list": "ready", "activity": first.activity_id}
    async with api.client.get(
        "/api/events", params=params, headers=api.headers("viewer", csrf=False)
    ) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        name, doc = await read_event(response)
        assert name == "update"
        assert doc["queues"][0]["pending"] == 1
        assert doc["list"]["items"][0]["id"] == first.activity_id
        assert doc["activity"]["state"] == "ready"
        await client.execute_activity("t")
        name, doc = await read_event(response)
        assert doc["queues"][0]["pending"] == 2  # the next event is the change
    snapshots = api.client.app[CONSOLE].snapshots
    assert snapshots.reads >= 2


async def test_a_new_stream_starts_with_a_read_made_after_it_opened(
    make_api: MakeApi, client: ActivityClient
) -> None:
    """A page reads the API, then opens its stream: the stream's first update must not be
    a snapshot that another stream read earlier (up to an interval before), or the page
    goes back to what it showed before an action (seen in the browser: an activity
    requeued from its page shown dead-lettered again)."""
    api = await make_api(sse_interval=30.0)  # a shared read is kept this long
    queue = client.queue_name
    await client.execute_activity("t")
    params = {"queue": queue}
    headers = api.headers("viewer", csrf=False)
    async with api.client.get("/api/events", params=params, headers=headers) as first:
        _, doc = await read_event(first)
        assert doc["queues"][0]["pending"] == 1
        await client.execute_activity("t")
        async with api.client.get("/api/events", params=params, headers=headers) as second:
            _, doc = await read_event(second)
            assert doc["queues"][0]["pending"] == 2


async def test_live_stream_bad_requests(api: Api, client: ActivityClient) -> None:
    for params, status in [
        ({"list": "ready"}, 400),
        ({"activity": "x"}, 400),
        ({"queue": "no-such-queue"}, 404),
        ({"queue": client.queue_name, "list": "nope"}, 400),
    ]:
        async with api.client.get(
            "/api/events", params=params, headers=api.headers("viewer", csrf=False)
        ) as response:
            assert response.status == status, params
    async with api.client.get("/api/events") as response:
        assert response.status == 401


async def test_a_browser_leaving_its_stream_is_not_a_redis_failure(
    redis_url: str, client: ActivityClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A closed page makes the next write to its stream fail with a connection reset: that
    is the browser leaving, not Redis failing, and must not be logged as a warning (seen:
    one "Redis failed during GET /api/events" per closed stream, a flood when a hundred tabs
    close). Served as ``runnerq console`` serves it (aiohttp's test server would cancel the
    handler on the disconnect instead, which hides this)."""
    settings = ConsoleSettings(redis_url=redis_url, no_auth=True, sse_interval=0.05)
    app = create_app(settings)
    gate = app[CONSOLE].gate
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    caplog.set_level(logging.DEBUG, logger="runnerq.console")
    url = f"http://127.0.0.1:{port}/api/events?queue={client.queue_name}"
    try:
        await client.execute_activity("t")
        async with aiohttp.ClientSession() as http:
            for _ in range(3):
                async with http.get(url) as response:
                    assert response.status == 200
                    await read_event(response)
                    assert response.connection is not None
                    transport = response.connection.transport
                    assert transport is not None
                    transport.abort()  # the tab is closed
                await client.execute_activity("t")  # the next read differs: a write is due

                async def stream_ended() -> bool:  # its write met the reset
                    return gate.open == 0

                await eventually(stream_ended, what="the closed page's stream to end")
            async with http.get(f"http://127.0.0.1:{port}/api/queues") as response:
                assert response.status == 200
    finally:
        await runner.cleanup()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not warnings, caplog.text
