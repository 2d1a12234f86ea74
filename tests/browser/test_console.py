"""The console's page in Chromium against a real console process, a real redis-server and
real worker processes (issue 19's browser scenarios). Every wait is on what the page shows
(``expect``), never a fixed sleep."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
import redis
from playwright.sync_api import Page, expect

from runnerq import ActivityClient
from runnerq.keys import QueueKeys
from tests.browser.conftest import ROOT, Console, Pages, run_async
from tests.integration.console.conftest import write_dead

pytestmark = pytest.mark.browser

Workers = Callable[..., subprocess.Popen[bytes]]


def cli_enqueue(console: Console, queue: str, activity_type: str, *args: str) -> str:
    """``runnerq enqueue`` in a process of its own; the new activity's id."""
    where = ("--queue", queue, "--redis-url", console.redis_url)
    done = subprocess.run(
        [sys.executable, "-m", "runnerq", "enqueue", activity_type, *where, *args],
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=60,
    )
    return done.stdout.decode().strip()


def page_call(page: Page, method: str, path: str, body: Any = None) -> dict[str, Any]:
    """Call the API through the page's own ``api()`` (its token, its CSRF cookie and
    header): ``{"status": ..., "code": ...}`` of the answer."""
    result: dict[str, Any] = page.evaluate(
        """async ([method, path, body]) => {
             try {
               await api(path, { method, body });
               return { status: 200, code: null };
             } catch (e) { return { status: e.status, code: e.code, message: e.message }; }
           }""",
        [method, path, body],
    )
    return result


def row(page: Page, queue: str) -> Any:
    return page.locator(f'[data-testid=queue-row][data-queue="{queue}"]')


def test_overview_updates_live_after_an_enqueue_from_another_process(
    pages: Pages, console: Console, queue_name: str
) -> None:
    page = pages.open("viewer")
    expect(page.get_by_test_id("live-status")).to_have_text("live")
    expect(row(page, queue_name)).to_have_count(0)

    # A queue that did not exist when the page was opened appears...
    cli_enqueue(console, queue_name, "work")
    expect(row(page, queue_name).get_by_test_id("count-pending")).to_have_text("1")
    # ... and its counts follow enqueues made elsewhere (four more, from a Python process).
    code = (
        "import asyncio, sys\n"
        "from runnerq import ActivityClient\n"
        "async def main():\n"
        "    async with ActivityClient(sys.argv[1], sys.argv[2]) as c:\n"
        "        await c.enqueue_many([('work', {'n': n}) for n in range(3)])\n"
        "        await c.activity('work').priority('high').execute()\n"
        "asyncio.run(main())\n"
    )
    subprocess.run(
        [sys.executable, "-c", code, console.redis_url, queue_name],
        cwd=ROOT,
        check=True,
        timeout=60,
    )
    expect(row(page, queue_name).get_by_test_id("count-pending")).to_have_text("5")
    expect(row(page, queue_name).get_by_test_id("by-priority")).to_have_text("C:0 H:1 N:4 L:0")
    pages.shot(page, "overview-live")


def test_requeue_a_dead_letter_and_watch_it_complete(
    pages: Pages, console: Console, queue_name: str, workers: Workers
) -> None:
    workers(queue_name)
    activity_id = cli_enqueue(console, queue_name, "flaky", "--payload", '{"order": 42}')

    page = pages.open("operator", f"#/queue/{queue_name}/dead")
    dead = page.locator(f'[data-testid=list-row][data-id="{activity_id}"]')
    expect(dead).to_contain_text("first run fails on purpose")  # live: the worker failed it
    dead.get_by_test_id("activity-link").click()

    expect(page.get_by_test_id("activity-id")).to_have_text(activity_id)
    expect(page.get_by_test_id("activity-state")).to_have_text("dead_lettered")
    expect(page.get_by_test_id("activity-dead-letter")).to_contain_text(
        "first run fails on purpose"
    )
    pages.shot(page, "dead-letter")

    page.get_by_test_id("requeue").click()
    expect(page.get_by_test_id("activity-state")).to_have_text("completed")
    events = page.get_by_test_id("event")
    expect(events.last).to_have_attribute("data-event", "completed")
    kinds = events.evaluate_all("items => items.map((item) => item.dataset.event)")
    assert kinds[0] == "enqueued", kinds
    assert kinds.count("claimed") == 2, kinds
    assert kinds.index("dead_lettered") < kinds.index("requeued") < kinds.index("completed")
    expect(page.get_by_test_id("activity-result")).to_contain_text('"runs": 2')
    expect(page.get_by_test_id("requeue")).to_have_count(0)
    pages.shot(page, "requeued-completed")

    # One done at its first try has no history list: its claim and completion come from
    # its result document (the lease token) and the completed set.
    quick = cli_enqueue(console, queue_name, "work")
    page.goto(f"{console.url}#/activity/{queue_name}/{quick}")
    expect(page.get_by_test_id("activity-state")).to_have_text("completed")
    kinds = events.evaluate_all("items => items.map((item) => item.dataset.event)")
    assert kinds[-2:] == ["claimed", "completed"], kinds
    expect(events.last).to_contain_text(" by ")


def test_a_running_activity_shows_its_worker_and_progress_then_is_cancelled(
    pages: Pages, console: Console, queue_name: str, workers: Workers
) -> None:
    cli_enqueue(console, queue_name, "work")  # the queue exists before its worker starts
    worker = workers(queue_name)
    page = pages.open("operator", f"#/queue/{queue_name}/ready")
    page.get_by_test_id("enqueue-open").click()
    page.get_by_test_id("enqueue-type").fill("work")
    page.get_by_test_id("enqueue-payload").fill("{not json")
    page.get_by_test_id("enqueue-submit").click()
    expect(page.get_by_test_id("enqueue-error")).to_contain_text("payload is not JSON")
    page.get_by_test_id("enqueue-payload").fill('{"seconds": 60}')
    page.get_by_test_id("enqueue-submit").click()

    expect(page.get_by_test_id("activity-state")).to_have_text("running")
    expect(page.get_by_test_id("activity-worker")).to_contain_text(f":{worker.pid}:")
    expect(page.get_by_test_id("activity-progress")).to_contain_text("half way")
    expect(page.get_by_test_id("activity-facts")).not_to_contain_text("[object")
    pages.shot(page, "running")

    page.get_by_test_id("cancel").click()
    expect(page.get_by_test_id("confirm-text")).to_contain_text("Cancel")
    page.get_by_test_id("confirm-ok").click()
    expect(page.get_by_test_id("activity-state")).to_have_text("cancelled")
    expect(page.get_by_test_id("event").last).to_have_attribute("data-event", "cancelled")
    expect(page.get_by_test_id("activity-type")).to_have_text("work")  # the record it saw
    expect(page.get_by_test_id("cancel")).to_have_count(0)


def test_viewer_sees_no_action_buttons_and_the_server_refuses_its_actions(
    pages: Pages, console: Console, queue_name: str
) -> None:
    ready_id = cli_enqueue(console, queue_name, "work")

    async def dead_letter() -> list[str]:
        async with ActivityClient(console.redis_url, queue_name) as client:
            return await write_dead(client.redis, queue_name, ["disk full"])

    [dead_id] = run_async(dead_letter)

    # Signing in with the viewer's token through the form.
    page = pages.open(None, f"#/queue/{queue_name}/dead")
    page.get_by_test_id("login-token").fill("browser-viewer-token")
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("identity")).to_have_text("viewer-user (viewer)")

    expect(page.locator(f'[data-testid=list-row][data-id="{dead_id}"]')).to_be_visible()
    for button in ("pause", "resume", "enqueue-open", "requeue-selected", "requeue-all"):
        expect(page.get_by_test_id(button)).to_have_count(0)
    expect(page.get_by_test_id("purge")).to_have_count(0)
    expect(page.get_by_test_id("select-row")).to_have_count(0)
    expect(page.get_by_test_id("main")).not_to_contain_text("null")  # no missing parts
    pages.shot(page, "viewer-dead-letters")

    page.get_by_test_id("activity-link").click()
    expect(page.get_by_test_id("activity-state")).to_have_text("dead_lettered")
    expect(page.get_by_test_id("requeue")).to_have_count(0)
    page.goto(f"{console.url}#/activity/{queue_name}/{ready_id}")
    expect(page.get_by_test_id("activity-state")).to_have_text("ready")
    expect(page.get_by_test_id("cancel")).to_have_count(0)

    # The server refuses what the page does not offer, with a right CSRF token (403
    # 'forbidden', not 'csrf'), and nothing changes.
    base = f"/api/queues/{queue_name}"
    for method, path, body in [
        ("POST", f"{base}/pause", {}),
        ("POST", f"{base}/dead/requeue", {"ids": [dead_id]}),
        ("POST", f"{base}/activities/{ready_id}/cancel", {}),
        ("POST", f"{base}/dead/purge", {}),
    ]:
        answer = page_call(page, method, path, body)
        assert (answer["status"], answer["code"]) == (403, "forbidden"), (path, answer)
    keys = QueueKeys(queue_name)
    with redis.Redis.from_url(console.redis_url, decode_responses=True) as r:
        assert r.hget(keys.config, "paused") in (None, "0")
        assert r.zscore(keys.dlq, dead_id) is not None
        assert r.zscore(keys.ready, ready_id) is not None
    pages.shot(page, "viewer-activity")


def test_search_by_id_finds_one_among_100000(
    pages: Pages, console: Console, queue_name: str
) -> None:
    async def fill() -> list[str]:
        async with ActivityClient(console.redis_url, queue_name) as client:
            futures = await client.enqueue_many(("work", {"n": n}) for n in range(100_000))
            return [f.activity_id for f in futures]

    ids = run_async(fill)
    wanted = ids[61_803]

    page = pages.open("viewer", "#/search")
    expect(row(page, queue_name)).to_have_count(0)  # (the search view, not the overview)
    page.get_by_test_id("search-by").select_option("id")
    page.get_by_test_id("search-input").fill(wanted)
    page.get_by_test_id("search-submit").click()
    found = page.get_by_test_id("search-row")
    expect(found).to_have_count(1)
    expect(found).to_have_attribute("data-id", wanted)
    expect(found).to_contain_text(queue_name)
    pages.shot(page, "search-found")

    found.get_by_test_id("search-link").click()
    expect(page.get_by_test_id("activity-id")).to_have_text(wanted)
    expect(page.get_by_test_id("activity-state")).to_have_text("ready")
    expect(page.get_by_test_id("activity-payload")).to_contain_text('"n": 61803')

    page.get_by_test_id("nav-queues").click()
    expect(row(page, queue_name).get_by_test_id("count-pending")).to_have_text("100000")


def test_workers_view_drops_a_sigkilled_worker_once_its_ttl_passes(
    pages: Pages, console: Console, queue_name: str, workers: Workers
) -> None:
    cli_enqueue(console, queue_name, "work")  # the queue exists before its workers start
    # Heartbeats every 0.3 s: the registry entry's TTL is 1 s, the shortest the engine gives.
    worker = workers(queue_name)
    survivor = workers(queue_name)
    page = pages.open("viewer", f"#/queue/{queue_name}/workers")
    killed_row = page.locator(f'[data-testid=worker-row][data-pid="{worker.pid}"]')
    kept_row = page.locator(f'[data-testid=worker-row][data-pid="{survivor.pid}"]')
    expect(killed_row).to_be_visible()  # the view follows workers that come...
    expect(kept_row).to_be_visible()
    expect(killed_row).to_contain_text(re.compile(r"0 / \d+"))
    pages.shot(page, "workers")

    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(timeout=10)
    expect(killed_row).to_have_count(0)  # ... and those that are gone
    expect(kept_row).to_be_visible()
    # It was its entry's TTL, not a clean stop: the killed worker is still in the set.
    keys = QueueKeys(queue_name)
    with redis.Redis.from_url(console.redis_url, decode_responses=True) as r:
        assert r.zcard(keys.workers) == 2
    pages.shot(page, "worker-gone")


CLUSTER = {
    "namespace": "shop",
    "name": "emails",
    "replicas": 2,
    "desired": 3,
    "ready": "True",
    "last_scale": {"time": "2026-12-06T17:20:00Z", "message": "scaled 2 -> 3: 45 pending"},
    "conditions": [
        {
            "type": "Ready",
            "status": "True",
            "reason": "Reconciled",
            "message": "worker Deployment reconciled",
            "lastTransitionTime": "2026-12-06T17:00:00Z",
        },
        {
            "type": "RedisReachable",
            "status": "False",
            "reason": "ConnectionRefused",
            "message": "cannot reach Redis",
            "lastTransitionTime": "2026-12-06T17:19:00Z",
        },
    ],
}


def test_a_queues_cluster_status_is_shown_when_the_overview_has_one(
    pages: Pages, queue_name: str, console: Console
) -> None:
    """The overview's ``cluster`` field (an ActivityQueue's replicas, Ready, last scale),
    rendered by the page's own functions from the documented shapes: present, null, absent
    and malformed."""
    cli_enqueue(console, queue_name, "work")
    page = pages.open("viewer")
    expect(row(page, queue_name)).to_be_visible()
    rendered: list[dict[str, Any]] = page.evaluate(
        """([name, cluster]) => {
             const base = { queue: name, pending: 1, running: 0, scheduled: 0, dead_letter: 0,
                            by_priority: { normal: 1 }, workers: 0, completed: 0 };
             const partial = { namespace: "ns", name: "q", replicas: null, desired: null };
             const out = [];
             for (const c of [cluster, null, undefined, partial, "garbage", { conditions: 5 }]) {
               const doc = c === undefined ? base : { ...base, cluster: c };
               const tr = queueRow(doc);
               const summary = queueCluster(doc);
               const cell = tr.querySelector("[data-testid=cluster]");
               out.push({ row: cell ? cell.textContent : null,
                          summary: summary ? summary.textContent : null });
             }
             return out;
           }""",
        [queue_name, CLUSTER],
    )
    full, none, absent, partial, garbage, odd = rendered
    assert full["row"] is not None
    assert "2 / 3" in full["row"]
    assert "Ready" in full["row"]
    assert "scaled 2 -> 3: 45 pending" in full["row"]
    assert full["summary"] is not None
    for text in ("shop/emails", "2 / 3", "scaled 2 -> 3", "RedisReachable", "cannot reach"):
        assert text in full["summary"], (text, full["summary"])
    assert none == {"row": None, "summary": None}
    assert absent == {"row": None, "summary": None}
    assert garbage == {"row": None, "summary": None}
    assert partial["row"] is not None
    assert "— / —" in partial["row"]
    assert odd["row"] is not None

    # In the real overview table too, as a live update would leave it.
    page.evaluate(
        """([name, cluster]) => {
             const tr = document.querySelector(`tr[data-queue="${name}"]`);
             tr.replaceWith(queueRow({ queue: name, pending: 1, running: 0, scheduled: 0,
               dead_letter: 0, by_priority: {}, workers: 2, completed: 0, cluster }));
           }""",
        [queue_name, CLUSTER],
    )
    expect(row(page, queue_name).get_by_test_id("cluster")).to_contain_text("2 / 3")
    pages.shot(page, "cluster-row")
