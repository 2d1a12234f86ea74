"""The README's picture of the console: ``python hack/console_screenshot.py`` writes
docs/images/console-overview.png.

It starts its own redis-server (or uses ``--redis-url``, whose database it empties first),
real workers of ``tests/browser/app.py`` and ``runnerq console --no-auth`` on loopback, puts
work in every state on a few queues (completed, dead-lettered, running, pending at each
priority, scheduled, a paused queue with no workers), waits until the overview shows it, and
saves the overview as Chromium draws it (Debian's /usr/bin/chromium: ``make setup``).
Everything it started is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
from playwright.sync_api import expect, sync_playwright  # noqa: E402

from runnerq import ActivityClient, ActivityOption, ActivityPriority  # noqa: E402
from runnerq.keys import QueueKeys  # noqa: E402
from tests.support.processes import terminate  # noqa: E402
from tests.support.redis_server import RedisServer, free_port  # noqa: E402

OUT = ROOT / "docs" / "images" / "console-overview.png"
CHROMIUM = "/usr/bin/chromium"
APP = "tests.browser.app:engine"
WIDTH, HEIGHT = 1280, 800
Entry = tuple[str, Any, ActivityOption]


@dataclass(frozen=True)
class Queue:
    """What one queue of the picture holds."""

    name: str
    workers: int = 0
    slots: int = 4
    completed: int = 0
    dead: int = 0
    running: int = 0  # at most workers x slots: each runs for an hour
    pending: dict[str, int] = field(default_factory=dict)
    scheduled: int = 0
    paused: bool = False


QUEUES = [
    Queue("emails", 2, 8, 1_840, 3, 16, {"critical": 4, "high": 120, "normal": 2_310}, 25),
    Queue("image-thumbnails", 1, 4, 620, 0, 4, {"normal": 734, "low": 5_210}),
    Queue("invoices", pending={"high": 12, "normal": 88}, scheduled=340, paused=True),
    Queue("webhooks", 1, 10, 4_105, 57, 3, {}, 6),
]


def runnerq(log: Path, *args: str) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "runnerq", *args],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def wait_until(what: str, probe: Callable[[], bool], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return
        time.sleep(0.1)
    raise SystemExit(f"console_screenshot: {what} not reached within {timeout:.0f}s")


async def enqueue(url: str, queue: Queue, entries: list[Entry]) -> None:
    async with ActivityClient(url, queue.name) as client:
        await client.enqueue_many(entries)
        if queue.paused:
            await client.set_queue_config(paused=True)


def fill(url: str, queue: Queue, started: list[subprocess.Popen[bytes]], log: Path) -> None:
    """Finished work first (completed and dead letters, with their per-minute counts), then
    hour-long activities that keep slots busy, then what waits behind them."""
    keys = QueueKeys(queue.name)
    r = redis.Redis.from_url(url, decode_responses=True)
    finished: list[Entry] = [("work", {"n": n}, ActivityOption()) for n in range(queue.completed)]
    finished += [
        ("broken", {"error": f"HTTP 502 from the partner's endpoint (try {n})"}, ActivityOption())
        for n in range(queue.dead)
    ]
    asyncio.run(enqueue(url, queue, finished))
    for _ in range(queue.workers):
        args = ["--redis-url", url, "--queue", queue.name, "--max-workers", str(queue.slots)]
        started.append(runnerq(log, "worker", APP, *args))
    want = queue.completed + queue.dead
    wait_until(
        f"{queue.name}: {want} finished",
        lambda: int(r.zcard(keys.done)) + int(r.zcard(keys.dlq)) >= want,
    )
    busy = ActivityOption(ActivityPriority.CRITICAL)
    asyncio.run(enqueue(url, queue, [("work", {"seconds": 3600}, busy)] * queue.running))
    wait_until(
        f"{queue.name}: {queue.running} running", lambda: r.zcard(keys.inflight) >= queue.running
    )
    waiting: list[Entry] = []
    for priority, count in queue.pending.items():
        option = ActivityOption(ActivityPriority.parse(priority))
        waiting += [("work", {"n": n}, option) for n in range(count)]
    waiting += [("work", {"n": n}, ActivityOption(delay=3600 + n)) for n in range(queue.scheduled)]
    asyncio.run(enqueue(url, queue, waiting))
    r.close()


def shoot(base: str, out: Path) -> None:
    """The overview once it shows every queue's work, cropped below its table."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
        page.goto(base + "#/")
        for queue in QUEUES:
            row = page.locator(f'[data-testid=queue-row][data-queue="{queue.name}"]')
            pending = str(sum(queue.pending.values()))
            expect(row.get_by_test_id("count-pending")).to_have_text(pending, timeout=30_000)
            expect(row.get_by_test_id("count-running")).to_have_text(str(queue.running))
            expect(row.get_by_test_id("count-workers")).to_have_text(str(queue.workers))
        expect(page.get_by_test_id("live-status")).to_have_text("live")
        box = page.get_by_test_id("queues-table").bounding_box()
        assert box is not None
        height = min(HEIGHT, int(box["y"] + box["height"] + 24))
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out), clip={"x": 0, "y": 0, "width": WIDTH, "height": height})
        browser.close()


@contextlib.contextmanager
def redis_url(given: str | None) -> Iterator[str]:
    if given:
        with redis.Redis.from_url(given) as r:
            r.flushdb()
        yield given
        return
    with RedisServer() as server:
        yield server.url


def main() -> None:
    parser = argparse.ArgumentParser(description="Write the README's picture of the console.")
    parser.add_argument("--redis-url", help="use this Redis (its database is emptied first)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"where to write ({OUT})")
    args = parser.parse_args()
    log = Path("/tmp") / "runnerq-console-screenshot.log"
    log.write_bytes(b"")
    started: list[subprocess.Popen[bytes]] = []
    with redis_url(args.redis_url) as url:
        try:
            for queue in QUEUES:
                fill(url, queue, started, log)
            port = free_port()
            console = ["--redis-url", url, "--no-auth", "--no-kube", "--port", str(port)]
            started.append(runnerq(log, "console", *console))
            base = f"http://127.0.0.1:{port}/"

            def up() -> bool:
                try:
                    with urllib.request.urlopen(base + "healthz", timeout=1):
                        return True
                except OSError:
                    return False

            wait_until("the console answering", up, timeout=60)
            shoot(base, args.out)
        finally:
            for process in started:
                terminate(process, timeout=10)
    print(f"wrote {args.out} (the processes' log: {log})")


if __name__ == "__main__":
    main()
