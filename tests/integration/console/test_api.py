"""The console's JSON API against a real redis-server: every route, every role, CSRF, bad
input, and what each action does in Redis."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aioredis

from runnerq import ActivityClient, ActivityContext, ActivityError, Schedule
from runnerq.console.audit import AUDIT_KEY
from runnerq.console.routes import CONSOLE
from runnerq.console.telemetry import events_key, minutes_key, progress_key, worker_key
from runnerq.keys import QueueKeys
from tests.conftest import EngineFactory, EngineRunner
from tests.integration.console.conftest import CSRF, Api, MakeApi, write_dead
from tests.support.polling import eventually


def q(queue: str, rest: str = "") -> str:
    return f"/api/queues/{queue}{rest}"


# -- who may call --------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["viewer", "operator", "admin"])
async def test_session_names_the_caller_and_sets_the_csrf_cookie(api: Api, role: str) -> None:
    async with api.client.get("/api/session", headers=api.headers(role, csrf=False)) as r:
        assert r.status == 200
        doc = await r.json()
        cookie = r.headers["Set-Cookie"]
    assert doc["identity"] == {"name": f"{role}-user", "role": role, "via": "token"}
    assert doc["can"] == {"operate": role != "viewer", "administer": role == "admin"}
    assert "runnerq_csrf=" + doc["csrf"] in cookie
    assert "SameSite=Strict" in cookie


async def test_unknown_or_missing_token_is_401(api: Api) -> None:
    assert (await api.get("/api/queues", role=None))[0] == 401
    async with api.client.get("/api/queues", headers={"Authorization": "Bearer nope"}) as r:
        assert r.status == 401
        assert (await r.json())["error"]["code"] == "unauthenticated"


async def test_page_and_assets_are_served_without_a_token_with_a_strict_policy(api: Api) -> None:
    async with api.client.get("/") as r:
        assert r.status == 200
        assert 'data-testid="main"' in await r.text()
        assert "default-src 'self'" in r.headers["Content-Security-Policy"]
        assert r.headers["X-Frame-Options"] == "DENY"
    for asset in ("/static/console.js", "/static/console.css"):
        async with api.client.get(asset) as r:
            assert r.status == 200, asset
    async with api.client.get("/healthz") as r:
        assert r.status == 200


ACTIONS: list[tuple[str, str, Any]] = [
    ("operator", "/activities", {"type": "t"}),
    ("operator", "/activities/x/cancel", {}),
    ("operator", "/pause", {}),
    ("operator", "/resume", {}),
    ("operator", "/schedules/s/trigger", {}),
    ("operator", "/dead/requeue", {"ids": ["x"]}),
    ("admin", "/dead/requeue-all", {"through": 1}),
    ("admin", "/dead/purge", {}),
]


@pytest.mark.parametrize(("needed", "path", "body"), ACTIONS)
async def test_roles_are_enforced_by_the_server(
    api: Api, queue_name: str, needed: str, path: str, body: Any
) -> None:
    lower = ["viewer"] if needed == "operator" else ["viewer", "operator"]
    for role in lower:
        status, doc = await api.post(q(queue_name, path), body, role=role)
        assert status == 403, (role, path)
        assert doc["error"]["code"] == "forbidden"
        assert needed in doc["error"]["message"]


async def test_read_only_makes_everyone_a_viewer(make_api: MakeApi, queue_name: str) -> None:
    api = await make_api(read_only=True)
    status, doc = await api.get("/api/session", role="admin")
    assert doc["identity"]["role"] == "viewer" and doc["read_only"]
    status, doc = await api.post(q(queue_name, "/dead/purge"), role="admin")
    assert status == 403


async def test_csrf_is_required_for_every_action(api: Api, queue_name: str) -> None:
    status, doc = await api.post(q(queue_name, "/pause"), csrf=False)
    assert (status, doc["error"]["code"]) == (403, "csrf")
    headers = api.headers("operator", csrf=False)
    wrong = {**headers, "Cookie": f"runnerq_csrf={CSRF}", "X-CSRF-Token": CSRF + "x"}
    async with api.client.post(q(queue_name, "/pause"), headers=wrong) as r:
        assert r.status == 403
    cookie_only = {**headers, "Cookie": f"runnerq_csrf={CSRF}"}
    async with api.client.post(q(queue_name, "/pause"), headers=cookie_only) as r:
        assert r.status == 403
    # The token /api/session hands out, with its cookie, works.
    async with api.client.get("/api/session", headers=headers) as r:
        token = (await r.json())["csrf"]
    good = {**headers, "Cookie": f"runnerq_csrf={token}", "X-CSRF-Token": token}
    async with api.client.post(q(queue_name, "/pause"), headers=good) as r:
        assert r.status == 200


async def test_trusted_proxy_headers_map_groups_to_roles(
    make_api: MakeApi, queue_name: str, raw_redis: aioredis.Redis
) -> None:
    from runnerq.console import Role

    await raw_redis.hset(QueueKeys(queue_name).stats, "enqueued", 0)
    api = await make_api(
        trusted_proxies=("127.0.0.1/32",),
        group_roles={"ops": Role.OPERATOR, "sre": Role.ADMIN},
    )
    proxy = {"X-Forwarded-User": "alice@example.com", "X-Forwarded-Groups": "dev,ops"}
    async with api.client.get("/api/session", headers=proxy) as r:
        doc = await r.json()
    assert doc["identity"] == {"name": "alice@example.com", "role": "operator", "via": "proxy"}
    plain = {"X-Forwarded-User": "bob"}
    async with api.client.get("/api/session", headers=plain) as r:
        assert (await r.json())["identity"]["role"] == "viewer"
    # From an address that is not the proxy's, the same headers are ignored.
    elsewhere = await make_api(trusted_proxies=("10.0.0.0/8",), tokens_file=None)
    async with elsewhere.client.get("/api/session", headers=proxy) as r:
        assert r.status == 401


async def test_no_auth_on_loopback_lets_everyone_in_as_admin(make_api: MakeApi) -> None:
    api = await make_api(no_auth=True)
    status, doc = await api.get("/api/session", role=None)
    assert status == 200 and doc["identity"]["role"] == "admin"


async def test_redis_url_and_password_are_never_sent(api: Api, queue_name: str) -> None:
    url = api.client.app[CONSOLE].settings.redis_url
    port = url.rsplit(":", 1)[1]
    for path in ("/api/session", "/api/queues", q(queue_name)):
        async with api.client.get(path, headers=api.headers("admin", False)) as r:
            text = await r.text()
        assert url not in text and f":{port}" not in text, path


# -- reading -------------------------------------------------------------------------------


async def test_overview_counts_by_state_and_priority(api: Api, client: ActivityClient) -> None:
    await client.activity("t").priority("high").execute()
    await client.activity("t").execute()
    await client.activity("t").delay(60).execute()
    status, doc = await api.get("/api/queues")
    assert status == 200
    mine = next(x for x in doc["queues"] if x["queue"] == client.queue_name)
    assert mine["pending"] == 2 and mine["scheduled"] == 1 and not mine["paused"]
    assert mine["by_priority"] == {"critical": 0, "high": 1, "normal": 1, "low": 0}
    assert mine["throughput"] is None  # not recorded (yet): said so, no failure
    status, one = await api.get(q(client.queue_name))
    assert status == 200 and one["pending"] == 2 and one["workers"] == 0


async def test_unknown_and_invalid_queues_are_404(api: Api) -> None:
    for name in ("no-such-queue", "bad%20name", "x" * 201):
        status, doc = await api.get(q(name))
        assert (status, doc["error"]["code"]) == (404, "unknown_queue"), name
    status, doc = await api.post(q("no-such-queue", "/pause"))
    assert status == 404


async def test_fixed_queue_list_hides_the_others(make_api: MakeApi, client: ActivityClient) -> None:
    await client.execute_activity("t")
    api = await make_api(queues=("only-this",))
    _status, doc = await api.get("/api/queues")
    assert [x["queue"] for x in doc["queues"]] == ["only-this"]
    assert (await api.get(q(client.queue_name)))[0] == 404


async def test_list_pages_edges(api: Api, client: ActivityClient) -> None:
    queue = client.queue_name
    status, empty = await api.get(q(queue, "/lists/ready"))
    assert status == 200
    assert empty == {"list": "ready", "priority": None, "total": 0, "items": [], "next": None}
    ids = [(await client.execute_activity("t", {"n": n})).activity_id for n in range(3)]
    _, page = await api.get(q(queue, "/lists/ready"), limit=3)  # exactly one page
    assert [i["id"] for i in page["items"]] == ids and page["next"] is None
    _, first = await api.get(q(queue, "/lists/ready"), limit=2)
    assert [i["id"] for i in first["items"]] == ids[:2] and first["total"] == 3
    assert first["items"][0]["type"] == "t"
    _, second = await api.get(q(queue, "/lists/ready"), limit=2, cursor=first["next"])
    assert [i["id"] for i in second["items"]] == ids[2:] and second["next"] is None
    # The cursor's entry left the list meanwhile: the page goes on after where it was.
    await client.cancel(ids[1])
    _, after_gone = await api.get(q(queue, "/lists/ready"), limit=2, cursor=first["next"])
    assert [i["id"] for i in after_gone["items"]] == ids[2:] and after_gone["next"] is None
    # A cursor at the last entry: an empty page, no next.
    await client.cancel(ids[2])
    _, end = await api.get(q(queue, "/lists/ready"), limit=2, cursor=first["next"])
    assert end["items"] == [] and end["next"] is None and end["total"] == 1


async def test_bad_list_requests_are_400(api: Api, client: ActivityClient) -> None:
    queue = client.queue_name
    await client.execute_activity("t")
    await client.execute_activity("t")
    _, page = await api.get(q(queue, "/lists/ready"), limit=1)
    cases = [
        ("/lists/ready", {"cursor": "not-a-cursor!"}, "bad_cursor"),
        ("/lists/ready", {"cursor": "eyJrIjoxfQ"}, "bad_cursor"),
        ("/lists/dead", {"cursor": page["next"]}, "bad_cursor"),  # another list's cursor
        ("/lists/ready", {"priority": "high", "cursor": page["next"]}, "bad_cursor"),
        ("/lists/ready", {"limit": "0"}, "bad_request"),
        ("/lists/ready", {"limit": "many"}, "bad_request"),
        ("/lists/ready", {"priority": "urgent"}, "bad_request"),
        ("/lists/dead", {"priority": "high"}, "bad_request"),
        ("/lists/everything", {}, "bad_request"),
    ]
    for path, params, code in cases:
        status, doc = await api.get(q(queue, path), **params)
        assert (status, doc["error"]["code"]) == (400, code), (path, params)


async def test_every_list_shows_its_state(
    api: Api, client: ActivityClient, raw_redis: aioredis.Redis
) -> None:
    queue = client.queue_name
    high = await client.activity("h").priority("high").execute()
    await client.activity("n").execute()
    later = await client.activity("s").delay(300).execute()
    keyed = await client.activity("k").limit_key("tenant-1").execute()
    claim = await client.store.claim(1, 30, "host:1:abcd")  # takes the high one
    assert claim is not None and claim.items[0][0] == high.activity_id
    await write_dead(raw_redis, queue, ["boom: " + "x" * 1000])
    _, ready = await api.get(q(queue, "/lists/ready"), priority="normal")
    assert [i["type"] for i in ready["items"]] == ["n"]
    _, none_high = await api.get(q(queue, "/lists/ready"), priority="high")
    assert none_high["items"] == [] and none_high["total"] == 0
    _, keyed_page = await api.get(q(queue, "/lists/keyed"))
    assert [(i["id"], i["limit_key"]) for i in keyed_page["items"]] == [
        (keyed.activity_id, "tenant-1")
    ]
    _, scheduled = await api.get(q(queue, "/lists/scheduled"))
    assert scheduled["items"][0]["id"] == later.activity_id and scheduled["items"][0]["due_ms"]
    _, running = await api.get(q(queue, "/lists/running"))
    assert running["items"][0]["worker"] == "host:1:abcd"
    assert running["items"][0]["lease_expires_ms"] > 0
    _, dead = await api.get(q(queue, "/lists/dead"))
    entry = dead["items"][0]
    assert entry["reason"] == "failed" and entry["error"].startswith("boom: ")
    assert len(entry["error"]) <= 300 and entry["requeueable"]
    _, done = await api.get(q(queue, "/lists/completed"))
    assert done["items"] == []


async def test_activity_view_and_unknown_activity(
    api: Api, client: ActivityClient, raw_redis: aioredis.Redis
) -> None:
    queue = client.queue_name
    future = await client.activity("t").payload({"a": 1}).metadata({"m": 2}).execute()
    status, doc = await api.get(q(queue, f"/activities/{future.activity_id}"))
    assert status == 200
    assert doc["state"] == "ready" and doc["record"]["payload"] == {"a": 1}
    assert doc["record"]["metadata"] == {"m": 2} and doc["attempts"] == 0
    assert doc["events"] is None and doc["progress"] is None  # not recorded: no failure
    keys = QueueKeys(queue)
    await raw_redis.rpush(events_key(keys, future.activity_id), '{"t": 1, "e": "enqueued"}', "junk")
    await raw_redis.hset(progress_key(keys), future.activity_id, '{"f": 0.5, "m": "half", "t": 2}')
    _, doc = await api.get(q(queue, f"/activities/{future.activity_id}"))
    assert doc["events"] == [{"t": 1, "e": "enqueued"}]
    assert doc["progress"] == {"fraction": 0.5, "message": "half", "at_ms": 2}
    status, doc = await api.get(q(queue, "/activities/nope"))
    assert (status, doc["error"]["code"]) == (404, "not_found")
    [dead_id] = await write_dead(raw_redis, queue, ["it broke"])
    _, doc = await api.get(q(queue, f"/activities/{dead_id}"))
    assert doc["state"] == "dead_lettered" and doc["dead_letter"]["error"] == "it broke"
    assert doc["record"]["type"] == "broken"


async def test_workers_view_hides_workers_whose_entry_expired(
    api: Api, queue_name: str, raw_redis: aioredis.Redis
) -> None:
    keys = QueueKeys(queue_name)
    await raw_redis.zadd(keys.workers, {"w-live": 2000, "w-gone": 1000})
    await raw_redis.hset(
        worker_key(keys, "w-live"),
        mapping={"host": "h", "pod": "p", "pid": 7, "slots": 10, "busy": 3, "started_ms": 1},
    )
    status, doc = await api.get(q(queue_name, "/workers"))
    assert status == 200
    assert [(w["id"], w["busy"], w["slots"]) for w in doc["workers"]] == [("w-live", 3, 10)]
    _, overview = await api.get(q(queue_name))
    assert (overview["workers"], overview["busy"]) == (1, 3)


async def test_throughput_from_the_per_minute_counts(
    api: Api, queue_name: str, raw_redis: aioredis.Redis
) -> None:
    seconds, _ = await raw_redis.time()
    minute = int(seconds) // 60
    await raw_redis.hset(
        minutes_key(QueueKeys(queue_name)),
        mapping={f"{minute}:c": 5, f"{minute}:f": 1, f"{minute - 120}:c": 7, "junk": 1},
    )
    _, doc = await api.get(q(queue_name))
    assert doc["throughput"] == {
        "completed_hour": 5,
        "failed_hour": 1,
        "completed_day": 12,
        "failed_day": 1,
    }


async def test_schedules_and_limits_views_and_trigger(api: Api, client: ActivityClient) -> None:
    queue = client.queue_name
    await client.schedules.upsert(Schedule("nightly", "report", cron="0 3 * * *"))
    status, doc = await api.get(q(queue, "/schedules"))
    assert status == 200
    [info] = doc["schedules"]
    assert info["name"] == "nightly" and info["next_tick"] and info["trigger"]
    status, fired = await api.post(q(queue, "/schedules/nightly/trigger"))
    assert status == 201
    assert (await client.get_stats()).pending == 1
    status, doc = await api.post(q(queue, "/schedules/nope/trigger"))
    assert (status, doc["error"]["code"]) == (404, "not_found")
    status, doc = await api.post(q(queue, "/schedules/bad name!/trigger"))
    assert status == 400
    status, limits = await api.get(q(queue, "/limits"))
    assert status == 200 and limits["limits"] == {} and limits["stats"]["throttled"] == 0
    assert fired["id"]


# -- actions -------------------------------------------------------------------------------


async def test_enqueue_from_the_form(api: Api, client: ActivityClient) -> None:
    queue = client.queue_name
    status, doc = await api.post(
        q(queue, "/activities"),
        {"type": "mail", "payload": {"to": "x"}, "priority": "high", "idempotency_key": "k1"},
    )
    assert status == 201 and doc["created"]
    record = await client.redis.hget(QueueKeys(queue).jobs, doc["id"])
    assert record is not None and '"to":"x"' in record
    status, again = await api.post(
        q(queue, "/activities"), {"type": "mail", "idempotency_key": "k1"}
    )
    assert status == 200 and again == {"id": doc["id"], "created": False}
    status, bad = await api.post(q(queue, "/activities"), raw='{"type": "mail", payload: }')
    assert (status, bad["error"]["code"]) == (400, "bad_json")
    assert "not JSON" in bad["error"]["message"]
    for body, words in [
        ({"payload": 1}, "'type'"),
        ({"type": "t", "priority": "urgent"}, "priority"),
        ({"type": "t", "delay": "soon"}, "delay"),
        ({"type": "t", "max_retries": -1}, "max_retries"),
        ({"type": "t", "surprise": 1}, "unknown field"),
        (["t"], "object"),
    ]:
        status, bad = await api.post(q(queue, "/activities"), body)
        assert status == 400 and words in bad["error"]["message"], body
    assert (await client.get_stats()).pending == 1


async def test_cancel_pause_and_resume(api: Api, client: ActivityClient) -> None:
    queue = client.queue_name
    future = await client.execute_activity("t")
    status, doc = await api.post(q(queue, f"/activities/{future.activity_id}/cancel"))
    assert status == 200 and doc["was"] == "pending"
    status, doc = await api.post(q(queue, f"/activities/{future.activity_id}/cancel"))
    assert (status, doc["error"]["code"]) == (409, "not_unfinished")
    assert (await api.post(q(queue, "/pause")))[0] == 200
    assert (await client.get_stats()).paused
    assert (await api.post(q(queue, "/resume")))[0] == 200
    assert not (await client.get_stats()).paused


async def test_requeued_dead_letter_is_run_by_a_real_worker(
    api: Api, make_engine: EngineFactory, run_engine: EngineRunner
) -> None:
    engine = make_engine()
    runs: list[int] = []

    @engine.activity("flaky")
    async def flaky(payload: Any, ctx: ActivityContext) -> Any:
        runs.append(1)
        if len(runs) == 1:
            raise ActivityError.non_retry("first run fails")
        return "fine"

    await run_engine(engine)
    client = engine.get_activity_executor()
    queue = client.queue_name
    future = await client.execute_activity("flaky", {})
    keys = QueueKeys(queue)
    await eventually(lambda: client.redis.hexists(keys.dead, future.activity_id))
    _, dead = await api.get(q(queue, "/lists/dead"))
    assert dead["items"][0]["error"].endswith("first run fails")
    status, doc = await api.post(q(queue, "/dead/requeue"), {"ids": [future.activity_id, "gone"]})
    assert status == 200 and doc == {"requeued": 1, "asked": 2}
    assert await client.future(future.activity_id).get_result(timeout=10) == "fine"
    _, done = await api.get(q(queue, "/lists/completed"))
    assert done["items"][0]["id"] == future.activity_id and done["items"][0]["result"] == '"fine"'
    bad_bodies: list[Any] = [{}, {"ids": []}, {"ids": "x"}, {"ids": [1]}, {"ids": ["x"] * 1001}]
    for bad in bad_bodies:
        assert (await api.post(q(queue, "/dead/requeue"), bad))[0] == 400, bad


async def test_requeue_all_in_steps_with_a_preview(
    api: Api, client: ActivityClient, raw_redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runnerq.console import actions

    monkeypatch.setattr(actions, "REQUEUE_STEP", 250)
    queue = client.queue_name
    keys = QueueKeys(queue)
    await write_dead(raw_redis, queue, [f"e{n}" for n in range(600)])
    await raw_redis.hset(keys.dead, "zcorrupt", "{not json")  # stays: cannot be requeued
    await raw_redis.zadd(keys.dlq, {"zcorrupt": 300.5})
    status, preview = await api.get(q(queue, "/dead/requeue-all"))
    assert status == 200 and preview == {"count": 601, "through": 600}
    await write_dead(raw_redis, queue, ["late"], prefix="late")  # after the preview: order 1
    await raw_redis.zadd(keys.dlq, {"late0000000": 10_000})
    cursor, total, steps = None, 0, 0
    while True:
        status, step = await api.post(
            q(queue, "/dead/requeue-all"), {"through": 600, "cursor": cursor}, role="admin"
        )
        assert status == 200, step
        total += step["requeued"]
        steps += 1
        cursor = step["next"]
        if cursor is None:
            break
    assert total == 600 and steps == 2  # 400 (two batches of 200 pass 250), then 201
    assert await raw_redis.zcard(keys.ready) == 600
    assert await raw_redis.zrange(keys.dlq, 0, -1) == ["zcorrupt", "late0000000"]
    status, doc = await api.post(
        q(queue, "/dead/requeue-all"), {"through": 600, "cursor": "junk"}, role="admin"
    )
    assert (status, doc["error"]["code"]) == (400, "bad_cursor")
    status, doc = await api.post(q(queue, "/dead/requeue-all"), {}, role="admin")
    assert status == 400 and "preview" in doc["error"]["message"]
    status, doc = await api.post(q(queue, "/dead/purge"), role="admin")
    assert status == 200 and doc == {"purged": 2}
    assert await raw_redis.zcard(keys.dlq) == 0


async def test_every_action_is_audited_newest_first(
    api: Api, client: ActivityClient, raw_redis: aioredis.Redis
) -> None:
    queue = client.queue_name
    before = await raw_redis.xlen(AUDIT_KEY)
    await api.post(q(queue, "/pause"))
    await api.post(q(queue, "/resume"), role="admin")
    await api.post(q(queue, "/activities"), {"type": "t"})
    await api.post(q(queue, "/dead/purge"), role="admin")
    await api.post(q(queue, "/dead/purge"), role="viewer")  # refused: not audited
    assert await raw_redis.xlen(AUDIT_KEY) == before + 4
    status, page = await api.get("/api/audit", limit=2)
    assert status == 200
    assert [(a["action"], a["who"], a["queue"]) for a in page["items"]] == [
        ("purge", "admin-user", queue),
        ("enqueue", "operator-user", queue),
    ]
    assert page["items"][0]["role"] == "admin" and page["items"][1]["count"] == 1
    _, older = await api.get("/api/audit", limit=2, cursor=page["next"])
    assert [a["action"] for a in older["items"]] == ["resume", "pause"]
    status, _doc = await api.get("/api/audit", cursor="zzz")
    assert status == 400


async def test_redis_down_is_a_503_without_the_address(make_api: MakeApi) -> None:
    api = await make_api(redis_url="redis://127.0.0.1:1")
    status, doc = await api.get("/api/queues")
    assert status == 503 and doc["error"]["code"] == "redis_unavailable"
    assert "127.0.0.1" not in doc["error"]["message"]
