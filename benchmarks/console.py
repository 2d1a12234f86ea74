"""The console's speed at scale: ``python -m benchmarks.console [--pending 1000000]``.

Fills one queue of an embedded ``redis-server`` with ``--dead`` dead letters (made by a real
worker whose handler fails, one in 1,000 with a rare error) and then ``--pending`` pending
activities (all four priorities, one in 100,000 of a rare type, one in 10 with an idempotency
key), starts ``runnerq console`` as a process (``--no-auth`` on loopback) and times its HTTP
API from a client in this process, the way the page and scripts call it:

* a page of 50 of each list: the first page, a page that starts half-way (its cursor made
  at the 500,000th entry), 100 pages walked one after the other by their ``next`` cursors;
* search by id and by idempotency key (random existing ones), by type (one request scans at
  most 5,000 records; the whole scan is many requests) and by error text among dead letters;
* Redis commands per live update (server-sent events): the commands Redis ran while streams
  were open, less those of a same-length window with none open, per update sent, for the
  overview, a list and an activity, with 1 and with 100 streams on the same view (one read
  per interval is shared by every stream of a view: 100 streams should cost what one does).

Prints p50/p99 in milliseconds (issue 19's goal: under 100 ms a page) and commands per
update. Numbers only: nothing is asserted. About 2 minutes and 2 GB of Redis memory at the
defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import subprocess
import sys
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import redis
import redis.asyncio as aioredis

from runnerq import (
    ActivityClient,
    ActivityOption,
    ActivityPriority,
    NonRetryableError,
    QueueSettings,
    WorkerEngine,
)
from runnerq.embedded import embedded_redis
from runnerq.keys import QueueKeys
from tests.support.processes import terminate
from tests.support.redis_server import free_port

from .stats import percentile

REPO = Path(__file__).resolve().parent.parent
QUEUE = "console-bench"
RARE_TYPE = "rare-report"
RARE_ERROR = "quota exceeded for tenant 42"
PRIORITIES = list(ActivityPriority)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- filling ---------------------------------------------------------------------------


async def _make_dead_letters(url: str, settings: QueueSettings, n: int) -> None:
    engine = WorkerEngine(url, QUEUE, max_workers=50, queue_settings=settings)

    ran = 0
    all_ran = asyncio.Event()

    @engine.activity("charge")
    async def charge(payload: Any, ctx: Any) -> None:
        nonlocal ran
        ran += 1
        if ran >= n:
            all_ran.set()
        rare = payload["n"] % 1000 == 7
        raise NonRetryableError(RARE_ERROR if rare else f"card declined (code {payload['n']})")

    client = ActivityClient(url, QUEUE, queue_settings=settings)
    for start in range(0, n, 10_000):
        await client.enqueue_many(
            ("charge", {"n": i}) for i in range(start, min(n, start + 10_000))
        )
    runner = asyncio.ensure_future(engine.start())
    await all_ran.wait()
    await engine.stop()  # (after the outcomes waiting to be sent are written)
    await runner
    dead = (await client.get_stats()).dead_letter
    if dead != n:
        raise RuntimeError(f"{dead} dead letters made, not {n}")
    await client.aclose()


async def _make_pending(url: str, settings: QueueSettings, n: int) -> None:
    client = ActivityClient(url, QUEUE, queue_settings=settings)
    for start in range(0, n, 10_000):
        entries = []
        for i in range(start, min(n, start + 10_000)):
            kind = RARE_TYPE if i % 100_000 == 99_999 else "resize"
            option = ActivityOption(
                priority=PRIORITIES[i % 4],
                idempotency_key=f"upload-{i}" if i % 10 == 0 else None,
            )
            entries.append((kind, {"image": f"img-{i}.png", "width": 640}, option))
        await client.enqueue_many(entries)
    await client.aclose()


# -- the console -----------------------------------------------------------------------


@contextlib.contextmanager
def _console(url: str, interval: float) -> Any:
    port = free_port()
    cmd = [sys.executable, "-m", "runnerq", "console", "--redis-url", url, "--port", str(port)]
    cmd += ["--no-auth", "--no-kube", "--live-interval", str(interval)]
    process = subprocess.Popen(cmd, cwd=REPO, stdin=subprocess.DEVNULL)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        terminate(process)


async def _wait_healthy(http: aiohttp.ClientSession, base: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(aiohttp.ClientError):
            async with http.get(f"{base}/healthz") as response:
                if response.status == 200:
                    return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"runnerq console did not answer on {base}")


async def _get(http: aiohttp.ClientSession, url: str) -> tuple[float, Any]:
    """Milliseconds from the request to the whole body read, and the decoded body."""
    started = time.perf_counter()
    async with http.get(url) as response:
        body = await response.json()
        if response.status != 200:
            raise RuntimeError(f"GET {url}: {response.status} {body}")
    return (time.perf_counter() - started) * 1000, body


def _row(name: str, times: list[float], extra: str = "") -> None:
    p50, p99 = percentile(times, 50), percentile(times, 99)
    print(f"{name:<52} {p50:>9.1f} {p99:>9.1f} {len(times):>6}  {extra}", flush=True)


async def _timed(samples: int, call: Callable[[int], Awaitable[float]]) -> list[float]:
    await call(-1)  # warm-up
    return [await call(i) for i in range(samples)]


# -- rows ------------------------------------------------------------------------------


async def _list_rows(
    http: aiohttp.ClientSession, base: str, r: aioredis.Redis, samples: int, pending: int
) -> None:
    api = f"{base}/api/queues/{QUEUE}"
    keys = QueueKeys(QUEUE)

    async def first_page(_: int) -> float:
        return (await _get(http, f"{api}/lists/ready"))[0]

    _row("pending, first page (all priorities)", await _timed(samples, first_page))

    async def priority_page(_: int) -> float:
        return (await _get(http, f"{api}/lists/ready?priority=low"))[0]

    _row("pending, first page of one priority (low)", await _timed(samples, priority_page))

    # A cursor made at the middle entry (cursors are positions, not secrets: cursors.py).
    from runnerq.console.cursors import encode_cursor

    middle: Any = await r.zrange(keys.ready, pending // 2, pending // 2, withscores=True)
    member, score = middle[0]
    cursor = encode_cursor("ready:*", i=member, s=score)

    async def middle_page(_: int) -> float:
        return (await _get(http, f"{api}/lists/ready?cursor={cursor}"))[0]

    _row(f"pending, page at entry {pending // 2:,}", await _timed(samples, middle_page))

    walked: list[float] = []
    next_cursor: str | None = cursor
    for _ in range(100):
        ms, body = await _get(http, f"{api}/lists/ready?cursor={next_cursor}")
        walked.append(ms)
        next_cursor = body["next"]
    _row("pending, 100 pages walked by next cursor", walked)

    async def dead_page(_: int) -> float:
        return (await _get(http, f"{api}/lists/dead"))[0]

    _row("dead letters, first page", await _timed(samples, dead_page))


async def _search_rows(
    http: aiohttp.ClientSession, base: str, r: aioredis.Redis, samples: int, pending: int
) -> None:
    keys = QueueKeys(QUEUE)
    rng = random.Random(19)
    ids: Any = [
        (await r.zrange(keys.ready, n, n))[0] for n in rng.sample(range(pending), samples + 1)
    ]
    found = 0

    async def by_id(i: int) -> float:
        nonlocal found
        ms, body = await _get(http, f"{base}/api/search?by=id&q={ids[i]}")
        found += bool(body["items"])
        return ms

    _row("search by id (among all queues)", await _timed(samples, by_id), f"{found} found")

    async def by_key(i: int) -> float:
        key = f"upload-{rng.randrange(0, pending, 10)}"
        return (await _get(http, f"{base}/api/search?by=idempotency_key&q={key}"))[0]

    _row("search by idempotency key", await _timed(samples, by_key))

    for kind, text in (("type", RARE_TYPE), ("error", RARE_ERROR)):
        query = f"{base}/api/search?by={kind}&queue={QUEUE}&q={urllib.parse.quote(text)}"
        times: list[float] = []
        hits = scanned = 0
        started = time.perf_counter()
        cursor: str | None = None
        while True:
            ms, body = await _get(http, query + (f"&cursor={cursor}" if cursor else ""))
            times.append(ms)
            hits += len(body["items"])
            scanned += body.get("scanned", 0)
            cursor = body["next"]
            if cursor is None:
                break
        whole = time.perf_counter() - started
        extra = f"{hits} found; whole scan {whole:.1f} s, {scanned:,} entries"
        _row(f"search by {kind}, one request (scans <= 5,000)", times, extra)


async def _count_commands(r: aioredis.Redis) -> int:
    stats: Any = await r.info("commandstats")
    return sum(int(v["calls"]) for v in stats.values())


@contextlib.asynccontextmanager
async def _streams(
    http: aiohttp.ClientSession, url: str, n: int, updates: list[int]
) -> AsyncIterator[None]:
    async def one(index: int) -> None:
        async with http.get(url, timeout=aiohttp.ClientTimeout(total=None)) as response:
            async for line in response.content:
                if index == 0 and line.startswith(b"event: update"):
                    updates[0] += 1

    tasks = [asyncio.ensure_future(one(i)) for i in range(n)]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _sse_rows(
    http: aiohttp.ClientSession,
    base: str,
    url: str,
    r: aioredis.Redis,
    interval: float,
    seconds: float,
) -> None:
    client = ActivityClient(url, QUEUE, queue_settings=QueueSettings(QUEUE))
    some = (await _get(http, f"{base}/api/queues/{QUEUE}/lists/ready?limit=1"))[1]
    one = some["items"][0]["id"]
    views = {
        "overview": f"{base}/api/events",
        "queue + pending list": f"{base}/api/events?queue={QUEUE}&list=ready",
        "queue + one activity": f"{base}/api/events?queue={QUEUE}&activity={one}",
    }

    async def window(view: str | None, streams: int) -> tuple[int, int]:
        """Commands Redis ran in ``seconds`` while an activity is enqueued every interval
        (so that every read finds something new), and the updates the first stream got."""
        updates = [0]
        async with contextlib.AsyncExitStack() as stack:
            if view is not None:
                await stack.enter_async_context(_streams(http, views[view], streams, updates))
                await asyncio.sleep(interval * 2)  # opened and first update sent
                updates[0] = 0
            before = await _count_commands(r)
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                await client.execute_activity("resize", {"image": "live.png"})
                await asyncio.sleep(interval)
            after = await _count_commands(r)
        return after - before - 1, updates[0]

    for view in views:
        for streams in (1, 100):
            quiet, _ = await window(None, 0)
            busy, updates = await window(view, streams)
            per = (busy - quiet) / updates if updates else float("nan")
            print(
                f"{'SSE ' + view + f', {streams} stream(s)':<52} {per:>9.1f} commands/update"
                f"  ({updates} updates, {busy - quiet} commands in {seconds:.0f} s)",
                flush=True,
            )
    await client.aclose()


# -- main ------------------------------------------------------------------------------


async def _run(url: str, args: argparse.Namespace) -> None:
    settings = QueueSettings(QUEUE, dead_letter_cap=max(args.dead, 1))
    started = time.perf_counter()
    _say(f"filling: {args.dead:,} dead letters through a worker ...")
    await _make_dead_letters(url, settings, args.dead)
    _say(f"filling: {args.pending:,} pending activities ...")
    await _make_pending(url, settings, args.pending)
    memory: Any = await aioredis.Redis.from_url(url).info("memory")
    _say(
        f"filled in {time.perf_counter() - started:.0f} s; Redis uses "
        f"{int(memory['used_memory']) / 2**20:,.0f} MiB"
    )
    r = aioredis.Redis.from_url(url, decode_responses=True)
    with _console(url, args.interval) as base:
        async with aiohttp.ClientSession() as http:
            await _wait_healthy(http, base)
            print(f"{'row':<52} {'p50 ms':>9} {'p99 ms':>9} {'n':>6}")
            await _list_rows(http, base, r, args.samples, args.pending)
            await _search_rows(http, base, r, args.samples, args.pending)
            await _sse_rows(http, base, url, r, args.interval, args.seconds)
    await r.aclose()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.console", description=__doc__)
    ap.add_argument("--pending", type=int, default=1_000_000)
    ap.add_argument("--dead", type=int, default=100_000)
    ap.add_argument("--samples", type=int, default=200, help="requests timed per row")
    ap.add_argument("--interval", type=float, default=0.5, help="the console's --live-interval")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each SSE window")
    ap.add_argument(
        "--redis-url", help="use this Redis (it is flushed!) instead of an embedded one"
    )
    args = ap.parse_args(argv)
    if args.redis_url:
        redis.Redis.from_url(args.redis_url).flushall()
        asyncio.run(_run(args.redis_url, args))
        return 0
    with embedded_redis() as url:
        asyncio.run(_run(url, args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
