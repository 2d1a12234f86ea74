"""A worker's cost per activity, old code against new, in alternating runs.

``python -m benchmarks.worker_cost --base REF [--new REF] [--rounds 24] [--concurrency 10]``

Each run is one process with the side's ``runnerq`` first on its path: it fills a queue of
one ``redis-server`` (started here, shared by every run, flushed by each) with ``--n``
no-op activities, then runs a ``WorkerEngine`` in the same process until all are completed,
and reports for that stretch alone: the process's CPU per activity (Python: the engine, its
client and the handler), Redis's CPU per activity (``INFO cpu``) and the rate. The sides take
turns, the first one alternating; each figure's median and in how many rounds the new side's
figure was the higher are printed. No harness, no producer process, no metrics sink: a
smaller and steadier measure than ``benchmarks.alternate``'s rows, for a change to the
worker's hot path. Run it with ``--base`` and ``--new`` the same commit (an A/A run) to see
this machine's noise.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from runnerq.embedded import embedded_redis

from .alternate import worktree

REPO = Path(__file__).resolve().parent.parent
ROWS = ("python_us", "redis_us", "rate")

# One run, given the Redis URL, the count and the concurrency. It uses only what every
# runnerq so far has (ActivityClient, WorkerEngine, enqueue_many, get_stats).
_RUN = r"""
import asyncio, json, os, sys, time
import redis
import runnerq
from runnerq import ActivityClient, QueueSettings, WorkerEngine

here = os.path.realpath(os.getcwd())
assert os.path.realpath(runnerq.__file__).startswith(here), runnerq.__file__
URL, N, CONC = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
QUEUE = "worker-cost"


def redis_cpu(r):
    info = r.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def run():
    r = redis.Redis.from_url(URL)
    r.flushall()
    settings = QueueSettings(QUEUE)
    if os.environ.get("RUNNERQ_BENCH_SETTINGS"):  # (a side that has no such setting: none)
        try:
            settings = QueueSettings(QUEUE, **json.loads(os.environ["RUNNERQ_BENCH_SETTINGS"]))
        except TypeError:
            pass
    client = ActivityClient(URL, QUEUE, queue_settings=settings)
    for start in range(0, N, 5000):
        await client.enqueue_many(("noop", {"i": i}) for i in range(start, min(N, start + 5000)))
    engine = WorkerEngine(URL, QUEUE, max_workers=CONC, queue_settings=settings)
    ran = 0
    all_ran = asyncio.Event()

    @engine.activity("noop")
    async def noop(payload, ctx):
        nonlocal ran
        ran += 1
        if ran >= N:
            all_ran.set()

    redis0, py0, t0 = redis_cpu(r), time.process_time(), time.perf_counter()
    runner = asyncio.ensure_future(engine.start())
    await all_ran.wait()
    while (await client.get_stats()).completed < N:  # the last outcomes written
        await asyncio.sleep(0.005)
    t1, py1, redis1 = time.perf_counter(), time.process_time(), redis_cpu(r)
    await engine.stop()
    await runner
    await client.aclose()
    print(json.dumps({
        "python_us": (py1 - py0) / N * 1e6,
        "redis_us": (redis1 - redis0) / N * 1e6,
        "rate": N / (t1 - t0),
    }))


asyncio.run(run())
"""


def _run(tree: Path, url: str, n: int, concurrency: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", _RUN, url, str(n), str(concurrency)],
        cwd=tree,  # (first on the path of ``python -c``: the side's runnerq)
        env={**os.environ, "PYTHONPATH": str(tree)},
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    values: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return values


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.worker_cost", description=__doc__)
    ap.add_argument("--base", required=True, help="the old code: a commit, tag or branch")
    ap.add_argument("--new", help="the new code (default: this working tree)")
    ap.add_argument("--rounds", type=int, default=24)
    ap.add_argument("--n", type=int, default=30000, help="activities per run")
    ap.add_argument("--concurrency", type=int, default=10)
    ap.add_argument(
        "--settings",
        help="QueueSettings for both sides, as JSON (e.g. '{\"claim_history\": false}');"
        " a side whose QueueSettings does not take them runs with the defaults",
    )
    args = ap.parse_args(argv)
    if args.settings:
        os.environ["RUNNERQ_BENCH_SETTINGS"] = args.settings
    sides = {"old": worktree(args.base), "new": REPO if args.new is None else worktree(args.new)}
    results: dict[str, list[dict[str, float]]] = {"old": [], "new": []}
    with embedded_redis() as url:
        for round_no in range(args.rounds):
            order = ["old", "new"] if round_no % 2 == 0 else ["new", "old"]
            for side in order:
                values = _run(sides[side], url, args.n, args.concurrency)
                results[side].append(values)
                shown = ", ".join(f"{k}={values[k]:,.2f}" for k in ROWS)
                print(f"round {round_no + 1} {side}: {shown}", flush=True)
    print(
        f"\nmedians of {args.rounds} rounds each, concurrency {args.concurrency}, "
        f"{args.n:,} activities a run (old = {args.base}, new = {args.new or 'working tree'})"
    )
    print(f"{'row':<10} {'old':>12} {'new':>12} {'change':>8}  new higher in")
    for key in ROWS:
        olds = [r[key] for r in results["old"]]
        news = [r[key] for r in results["new"]]
        old, new = statistics.median(olds), statistics.median(news)
        higher = sum(b > a for a, b in zip(olds, news, strict=True))
        print(
            f"{key:<10} {old:>12,.2f} {new:>12,.2f} {new / old - 1:>+8.1%}  {higher}/{args.rounds}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
