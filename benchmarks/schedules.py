"""Schedule rows (``python -m benchmarks --only runnerq --rows schedules``; runnerq only, not
part of the default run).

* tick lateness, workers firing: ``lateness_workers`` worker processes, each declaring the
  same ``lateness_schedules`` every-1-second schedules in code (so every one of them fires);
  each run's handler start minus its tick (``ctx.metadata["runnerq_tick"]``), for
  ``lateness_seconds`` (the first 2 s left out). A (schedule, tick) run twice is reported in
  a note (it should never happen);
* tick lateness, firer only: no worker at all (a queue scaled to zero), one process running
  ``ScheduleFirer`` in a minimal loop shaped like the operator's (fire what is due, sleep until
  the next tick, at most 1 s); an observer blocked on the queue's wake-up list reads each
  activity as it lands in the ready set: arrival minus tick. This is not the operator's own
  loop (being written in ``operator/runnerq_operator`` at the time of writing);
* cost of schedules: processing throughput at concurrency 10 (the processing row's method:
  ``cost_n`` no-ops enqueued first, then one worker) with ``cost_schedules`` schedules on the
  queue, every one firing once a minute on its own second (6-field cron ``S * * * * *``, S
  spread over 0-59: about cost_schedules/60 ticks a second), against none; the worker runs
  the ticks' activities too and the rate counts them (claims per second). Rounds alternate
  the two, ``cost_rounds`` times; medians.

Run as ``python -m benchmarks.schedules worker|firer ...`` for the subprocesses.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .proc import REPO, Adapter, AdapterError
from .scenarios import Cell, Scenarios
from .stats import percentile

__all__ = ["KEYS", "ScheduleSettings", "run_schedule_rows"]

KEYS = (
    "tick_workers_p50",
    "tick_workers_p99",
    "tick_firer_p50",
    "tick_firer_p99",
    "process_c10_no_schedules",
    "process_c10_schedules",
    "schedules_cost_pct",
)
_WARMUP = 2.0  # seconds of ticks left out at the start
_FIRER_CAP = 1.0  # the minimal firer loop sleeps at most this


@dataclass(frozen=True, slots=True)
class ScheduleSettings:
    lateness_seconds: float = 20.0
    lateness_schedules: int = 10
    lateness_workers: int = 2
    cost_schedules: int = 10_000
    cost_n: int = 50_000
    cost_rounds: int = 3

    @classmethod
    def quick(cls) -> ScheduleSettings:
        return cls(lateness_seconds=8.0, cost_n=30_000, cost_rounds=2)


def run_schedule_rows(
    scenarios: Scenarios, ad: Adapter, ss: ScheduleSettings, say: Callable[[str], None]
) -> dict[str, Cell]:
    out: dict[str, Cell] = {}
    url = ad.url
    for prefix, fn in (("tick_workers", _lateness_workers), ("tick_firer", _lateness_firer)):
        scenarios.flush()
        try:
            out.update(fn(url, ss, prefix))
        except (AdapterError, OSError) as exc:
            out.update({f"{prefix}_p50": Cell(None, f"error: {exc}")})
        finally:
            scenarios.flush()
        say(f"   {prefix}: " + ", ".join(f"{k}={c.value}" for k, c in out.items() if prefix in k))
    out.update(_cost(scenarios, ad, ss, say))
    return out


# -- lateness -------------------------------------------------------------------------------


def _spawn(role: str, url: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "benchmarks.schedules", role, "--url", url, *args],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def _stop(procs: list[subprocess.Popen[str]]) -> list[str]:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    lines: list[str] = []
    for p in procs:
        try:
            stdout, _ = p.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            stdout, _ = p.communicate()
        lines += stdout.splitlines()
    return lines


def _summary(
    prefix: str, samples: list[tuple[str, float, float]], note: str | None
) -> dict[str, Cell]:
    """(name, tick, lateness in seconds) -> p50/p99 in ms, the warm-up left out."""
    if not samples:
        return {f"{prefix}_p50": Cell(None, note or "no tick ran"), f"{prefix}_p99": Cell(None)}
    first = min(tick for _, tick, _ in samples)
    kept = [late * 1000 for _, tick, late in samples if tick >= first + _WARMUP]
    text = f"{len(kept)} ticks" + (f"; {note}" if note else "")
    return {
        f"{prefix}_p50": Cell(percentile(kept, 50) if kept else None, text),
        f"{prefix}_p99": Cell(percentile(kept, 99) if kept else None, text),
    }


def _lateness_workers(url: str, ss: ScheduleSettings, prefix: str) -> dict[str, Cell]:
    procs = [
        _spawn("worker", url, "--schedules", str(ss.lateness_schedules))
        for _ in range(ss.lateness_workers)
    ]
    time.sleep(ss.lateness_seconds + _WARMUP)
    runs: dict[tuple[str, float], list[float]] = {}
    for line in _stop(procs):
        event = json.loads(line)
        runs.setdefault((event["name"], event["tick"]), []).append(event["late"])
    twice = sum(1 for lates in runs.values() if len(lates) > 1)
    note = f"{ss.lateness_workers} workers, {ss.lateness_schedules} every-1s schedules"
    if twice:
        note += f"; {twice} ticks ran more than once"
    samples = [(name, tick, min(lates)) for (name, tick), lates in runs.items()]
    return _summary(prefix, samples, note)


def _lateness_firer(url: str, ss: ScheduleSettings, prefix: str) -> dict[str, Cell]:
    asyncio.run(_upsert(url, [(f"s{i}", {"every": 1}) for i in range(ss.lateness_schedules)]))
    firer = _spawn("firer", url)
    try:
        samples = asyncio.run(_observe(url, ss.lateness_seconds + _WARMUP))
    finally:
        _stop([firer])
    note = f"no worker; {ss.lateness_schedules} every-1s schedules; minimal firer loop"
    return _summary(prefix, samples, note)


async def _observe(url: str, seconds: float) -> list[tuple[str, float, float]]:
    """Each activity as it lands in the ready set (woken by the queue's wake-up list, which
    no worker takes from here): (schedule, tick, arrival - tick)."""
    import redis.asyncio as aioredis

    from runnerq.keys import QueueKeys
    from runnerq.record import ActivityRecord

    keys = QueueKeys("bench")
    r = aioredis.Redis.from_url(url, decode_responses=True)
    samples: list[tuple[str, float, float]] = []
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            await r.blpop([keys.notify], timeout=0.5)
            seen = time.time()
            ids = [str(i) for i in await r.zrange(keys.ready, 0, -1)]
            if not ids:
                continue
            raws = await r.hmget(keys.jobs, ids)
            await r.zrem(keys.ready, *ids)
            await r.hdel(keys.jobs, *ids)
            for raw in raws:
                if raw is None:
                    continue
                meta = ActivityRecord.decode(raw).metadata
                tick = float(meta["runnerq_tick"])
                samples.append((str(meta["runnerq_schedule"]), tick, seen - tick))
    finally:
        await r.aclose()
    return samples


# -- cost -----------------------------------------------------------------------------------


def _cost(
    scenarios: Scenarios, ad: Adapter, ss: ScheduleSettings, say: Callable[[str], None]
) -> dict[str, Cell]:
    spread = [(f"s{i}", {"cron": f"{i % 60} * * * * *"}) for i in range(ss.cost_schedules)]

    def prepare() -> None:
        t0 = time.monotonic()
        asyncio.run(_upsert(ad.url, spread))
        say(f"   {ss.cost_schedules} schedules written in {time.monotonic() - t0:.1f}s")

    rates: dict[bool, list[float]] = {False: [], True: []}
    notes: list[str] = []
    for _ in range(ss.cost_rounds):
        for with_schedules in (False, True):
            try:
                cell, _ = scenarios.throughput(
                    ad, 10, n=ss.cost_n, prepare=prepare if with_schedules else None
                )
            except AdapterError as exc:
                notes.append(str(exc))
                continue
            if cell.value is not None:
                rates[with_schedules].append(cell.value)
            if cell.note:
                notes.append(cell.note)
            say(f"   schedules={with_schedules}: {cell.value:,.0f}/s")
    note = "; ".join(dict.fromkeys(notes)) or None
    base = statistics.median(rates[False]) if rates[False] else None
    loaded = statistics.median(rates[True]) if rates[True] else None
    cost = None if not base or loaded is None else (base - loaded) / base * 100
    rounds = f"median of {ss.cost_rounds} alternating rounds: {rates}"
    return {
        "process_c10_no_schedules": Cell(base, note, rates[False] or None),
        "process_c10_schedules": Cell(loaded, note, rates[True] or None),
        "schedules_cost_pct": Cell(cost, rounds),
    }


async def _upsert(url: str, specs: list[tuple[str, dict[str, Any]]]) -> None:
    from runnerq import ActivityClient, Schedule

    async with ActivityClient(url, "bench") as client:
        store = client.schedules
        for i in range(0, len(specs), 200):
            await asyncio.gather(
                *(store.upsert(Schedule(n, "tick", **kw)) for n, kw in specs[i : i + 200])
            )


# -- the subprocesses -----------------------------------------------------------------------


def _worker(a: argparse.Namespace) -> None:
    from runnerq import ActivityContext, WorkerEngine

    engine = WorkerEngine(redis_url=a.url, queue_name="bench", max_workers=10)
    for i in range(a.schedules):
        engine.schedule(f"s{i}", "tick", every=1)

    @engine.activity("tick")
    async def tick(payload: Any, ctx: ActivityContext) -> None:
        late = time.time() - float(ctx.metadata["runnerq_tick"])
        event = {"name": ctx.metadata["runnerq_schedule"], "tick": ctx.metadata["runnerq_tick"]}
        sys.stdout.write(json.dumps({**event, "late": late}) + "\n")
        sys.stdout.flush()

    asyncio.run(engine.start())


def _firer(a: argparse.Namespace) -> None:
    """Fire the queue's schedules with no worker: what the operator does for a queue it
    serves, in the smallest loop (fire what is due; sleep until the next tick, at most
    ``_FIRER_CAP``)."""
    from redis.exceptions import NoScriptError

    from runnerq import ActivityClient
    from runnerq.schedules import ScheduleFirer

    async def loop() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        async with ActivityClient(a.url, "bench") as client:
            firer = ScheduleFirer(client.store)
            while not stop.is_set():
                try:
                    wait = await firer.fire_due()
                except NoScriptError:  # Redis had not loaded the script (reloaded by now)
                    continue
                pause = _FIRER_CAP if wait is None else min(wait, _FIRER_CAP)
                if pause > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), pause)

    asyncio.run(loop())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.schedules")
    ap.add_argument("role", choices=["worker", "firer"])
    ap.add_argument("--url", required=True)
    ap.add_argument("--schedules", type=int, default=10)
    a = ap.parse_args(argv)
    (_worker if a.role == "worker" else _firer)(a)


if __name__ == "__main__":
    main()
