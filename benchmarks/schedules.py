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
  activity as it lands in the ready set: arrival minus tick;
* tick lateness, operator only: the same observed, with the operator itself firing (a real
  control plane started for the row; see ``_lateness_operator``);
* cost of schedules: processing throughput at concurrency 10 with ``cost_schedules``
  schedules on the queue, every one firing once a minute on its own second (6-field cron
  ``S * * * * *``, S spread over 0-59: about cost_schedules/60 ticks a second), against none.
  Each run is a fresh process (``cost-run``): ``cost_n`` no-ops enqueued, the schedules
  written and moved to their first tick from now (none overdue: a worker joining a queue
  whose schedules are being fired finds them so), on the worker's queue or, for the side
  without, on a queue nobody serves (the same writing, and a Redis of the same size), then
  an in-process worker until every no-op ran; the rate, and the CPU per activity of the
  worker and of Redis. Rounds alternate the two, ``cost_rounds`` times; the row is the
  median of each round's own difference;
* CPU per tick fired: a firer alone over the same schedules (``tick-cost``).

Run as ``python -m benchmarks.schedules worker|firer|cost-run|tick-cost ...`` for the
subprocesses.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
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
    "tick_python_us",
    "tick_redis_us",
    "tick_workers_p50",
    "tick_workers_p99",
    "tick_firer_p50",
    "tick_firer_p99",
    "tick_operator_p50",
    "tick_operator_p99",
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
    cost_n: int = 60_000
    cost_rounds: int = 12

    @classmethod
    def quick(cls) -> ScheduleSettings:
        return cls(lateness_seconds=8.0, cost_n=30_000, cost_rounds=4)


def run_schedule_rows(
    scenarios: Scenarios, ad: Adapter, ss: ScheduleSettings, say: Callable[[str], None]
) -> dict[str, Cell]:
    out: dict[str, Cell] = {}
    url = ad.url
    rows = (
        ("tick_workers", _lateness_workers),
        ("tick_firer", _lateness_firer),
        ("tick_operator", _lateness_operator),
    )
    for prefix, fn in rows:
        scenarios.flush()
        try:
            out.update(fn(url, ss, prefix))
        except (AdapterError, OSError, RuntimeError, subprocess.CalledProcessError) as exc:
            out.update({f"{prefix}_p50": Cell(None, f"error: {exc}")})
        except AssertionError as exc:  # (the e2e harness's waits: the operator did not start)
            out.update({f"{prefix}_p50": Cell(None, f"error: {exc}")})
        finally:
            scenarios.flush()
        say(f"   {prefix}: " + ", ".join(f"{k}={c.value}" for k, c in out.items() if prefix in k))
    scenarios.flush()
    try:
        got = _subprocess_json(
            "tick-cost", "--url", url, "--schedules", str(ss.cost_schedules), "--n", "10"
        )
        share = got["per_s"] * got["python_us"] / 1e4  # percent of one core
        note = (
            f"{got['ticks']:.0f} ticks in 10 s ({got['per_s']:.0f}/s), firer alone, each "
            f"schedule's first firing in that process; the firer's CPU is {share:.2f}% of one "
            "core at that rate (Redis's idle CPU subtracted from its figure)"
        )
        out["tick_python_us"] = Cell(got["python_us"], note)
        out["tick_redis_us"] = Cell(got["redis_us"], note)
    except (subprocess.CalledProcessError, ValueError, KeyError) as exc:
        out["tick_python_us"] = Cell(None, f"error: {exc}")
    finally:
        scenarios.flush()
    say(f"   per tick: {out.get('tick_python_us')}, {out.get('tick_redis_us')}")
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


def _lateness_operator(url: str, ss: ScheduleSettings, prefix: str) -> dict[str, Cell]:
    """The operator itself (``python -m runnerq_operator``, as the e2e tests run it) on a real
    etcd + kube-apiserver started here (the e2e suite's binaries, built on first use), one
    ActivityQueue with ``lateness_schedules`` every-1-second schedules in ``spec.schedules``
    and no worker anywhere: the operator writes them to Redis and fires them."""
    import tempfile
    from pathlib import Path

    from tests.e2e.binaries import ensure_binaries
    from tests.e2e.cluster import start_control_plane
    from tests.e2e.operator_harness import OperatorProcess, activity_queue, install_crd

    binaries = ensure_binaries()
    with (
        start_control_plane(binaries, with_nodes=False) as plane,
        tempfile.TemporaryDirectory(prefix="runnerq-bench-operator-") as tmp,
    ):
        install_crd(plane)
        namespace = "bench"
        plane.kubectl("create", "namespace", namespace)
        operator = OperatorProcess(plane.kubeconfig, namespace, Path(tmp) / "operator.log")
        operator.start()
        try:
            items = [
                {"name": f"s{i}", "everySeconds": 1, "activity": {"type": "tick"}}
                for i in range(ss.lateness_schedules)
            ]
            plane.apply(
                activity_queue(
                    "bench",
                    namespace,
                    url,
                    "bench",
                    scaling={"minReplicas": 0, "maxReplicas": 1, "pollIntervalSeconds": 5},
                    schedules=items,
                )
            )
            samples = asyncio.run(_observe(url, ss.lateness_seconds + _WARMUP + 5))
        finally:
            operator.stop()
    # (the first seconds go to the operator seeing the resource and writing the schedules)
    note = f"the operator alone (poll interval 5 s); {ss.lateness_schedules} every-1s schedules"
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
    """Rounds alternate a run without schedules and one with ``cost_schedules`` (which goes
    first alternates too); each run is a fresh process (``cost-run`` below)."""
    runs: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    pairs: list[float] = []  # each round's loaded rate over its base rate
    notes: list[str] = []
    for round_no in range(ss.cost_rounds):
        order = (False, True) if round_no % 2 == 0 else (True, False)
        this_round: dict[bool, float] = {}
        for with_schedules in order:
            scenarios.flush()
            try:
                got = _cost_run(ad.url, ss.cost_schedules, ss.cost_n, with_schedules)
            except (subprocess.CalledProcessError, ValueError) as exc:
                notes.append(f"a run failed: {exc}")
                continue
            finally:
                scenarios.flush()
            runs[with_schedules].append(got)
            this_round[with_schedules] = got["rate"]
            say(
                f"   schedules={with_schedules}: {got['rate']:,.0f}/s, worker "
                f"{got['python_us']:.1f} us + redis {got['redis_us']:.1f} us per activity"
                + (f", {got['ticks']:.0f} ticks run" if with_schedules else "")
            )
        if len(this_round) == 2:
            pairs.append(this_round[True] / this_round[False])

    def median(with_schedules: bool, key: str) -> float | None:
        values = [r[key] for r in runs[with_schedules]]
        return statistics.median(values) if values else None

    base, loaded = median(False, "rate"), median(True, "rate")
    # The row: the median over rounds of each round's own difference (its two runs are
    # minutes apart at most, so the machine's drift falls on both); the difference of the
    # medians is in the note.
    cost = (1 - statistics.median(pairs)) * 100 if pairs else None
    of_medians = None if not base or loaded is None else (base - loaded) / base * 100
    cpu = {w: [r["python_us"] + r["redis_us"] for r in runs[w]] for w in (False, True)}
    cpu_note = ""
    if cpu[False] and cpu[True]:
        cpu0, cpu1 = statistics.median(cpu[False]), statistics.median(cpu[True])
        cpu_note = f"; CPU per activity (worker + Redis) {cpu0:.1f} -> {cpu1:.1f} us"
        cpu_note += f" ({(cpu1 / cpu0 - 1) * 100:+.1f}%)"
    rates = {w: [round(r["rate"]) for r in runs[w]] for w in (False, True)}
    text = f"median of {len(pairs)} rounds' own differences"
    if of_medians is not None:
        text += f" (difference of the medians: {of_medians:.1f}%)"
    text += f"{cpu_note}; rates {rates}"
    note = "; ".join(dict.fromkeys(notes)) or None
    return {
        "process_c10_no_schedules": Cell(base, note, [float(x) for x in rates[False]] or None),
        "process_c10_schedules": Cell(loaded, note, [float(x) for x in rates[True]] or None),
        "schedules_cost_pct": Cell(cost, text),
    }


def _cost_run(url: str, schedules: int, n: int, fire: bool) -> dict[str, float]:
    args = ["--url", url, "--schedules", str(schedules), "--n", str(n)]
    return _subprocess_json("cost-run", *args, *(["--fire"] if fire else []))


def _subprocess_json(role: str, *args: str) -> dict[str, float]:
    """Run ``python -m benchmarks.schedules ROLE ...``; its last line of output, as JSON."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.schedules", role, *args],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    ).stdout
    values: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return values


async def _upsert(url: str, specs: list[tuple[str, dict[str, Any]]], queue: str = "bench") -> None:
    from runnerq import ActivityClient, Schedule

    async with ActivityClient(url, queue) as client:
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


def _cost_run_main(a: argparse.Namespace) -> None:
    """One run of the cost rows: ``--n`` no-ops enqueued, then ``--schedules`` schedules
    written, each moved to its first tick from now (as a firer running all along would have
    left them: none is overdue when the worker starts), on the worker's queue with
    ``--fire``, else on a queue nobody serves; then a worker in this process (concurrency
    10, Prometheus metrics on, as in the processing rows) until every no-op has run. Prints
    the rate (activities run per second, the ticks' included) and the CPU per activity of
    this process and of Redis, from the worker's start to the end."""
    from runnerq import ActivityClient, ActivityContext, WorkerEngine
    from runnerq.prometheus import PrometheusMetrics

    async def run() -> None:
        async with ActivityClient(a.url, "bench") as client:
            for start in range(0, a.n, 5000):
                batch = range(start, min(a.n, start + 5000))
                await client.enqueue_many(("noop", {"i": i}) for i in batch)
            # Both sides write the schedules (the same work, and the same size of Redis):
            # on this queue, or on one no worker serves (the side without).
            await _spread_schedules(a.url, a.schedules, "bench" if a.fire else "bench-idle")
            gc.collect()  # (the writing's garbage: not the worker's to collect)
            engine = WorkerEngine(a.url, "bench", max_workers=10, metrics=PrometheusMetrics("b"))
            ran = ticks = 0
            done = asyncio.Event()

            @engine.activity("noop")
            async def noop(payload: Any, ctx: ActivityContext) -> None:
                nonlocal ran
                ran += 1
                if ran >= a.n:
                    done.set()

            @engine.activity("tick")
            async def tick(payload: Any, ctx: ActivityContext) -> None:
                nonlocal ticks
                ticks += 1

            redis0, py0, t0 = _redis_cpu(a.url), time.process_time(), time.perf_counter()
            runner = asyncio.ensure_future(engine.start())
            await done.wait()
            t1, py1, redis1 = time.perf_counter(), time.process_time(), _redis_cpu(a.url)
            total = ran + ticks
            await engine.stop()
            await runner
        print(
            json.dumps(
                {
                    "rate": total / (t1 - t0),
                    "python_us": (py1 - py0) / total * 1e6,
                    "redis_us": (redis1 - redis0) / total * 1e6,
                    "ticks": ticks,
                }
            )
        )

    asyncio.run(run())


async def _spread_schedules(url: str, count: int, queue: str = "bench") -> None:
    """``count`` schedules on ``queue``, each firing once a minute on its own second
    (``S * * * * *``), each moved to its first tick from now (as a firer running all along
    would have left them)."""
    import redis.asyncio as aioredis

    from runnerq.keys import QueueKeys
    from runnerq.triggers import make_trigger

    crons = {f"s{i}": f"{i % 60} * * * * *" for i in range(count)}
    await _upsert(url, [(name, {"cron": c}) for name, c in crons.items()], queue)
    r = aioredis.Redis.from_url(url)
    try:
        seconds, micros = await r.time()
        now = int(seconds) + int(micros) / 1e6
        nexts = {n: round(make_trigger(c, None).next_after(now) * 1000) for n, c in crons.items()}
        await r.zadd(QueueKeys(queue).schedule_next, nexts, xx=True)
    finally:
        await r.aclose()


def _redis_cpu(url: str) -> float:
    import redis

    with redis.Redis.from_url(url) as r:
        info = r.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _tick_cost_main(a: argparse.Namespace) -> None:
    """The CPU one fired tick costs: ``--schedules`` spread schedules, a ``ScheduleFirer``
    alone in this process firing them for ``--n`` seconds (each schedule's first firing in
    the process: its definition parsed and its version read once); this process's CPU and
    Redis's (less Redis's own idle CPU, measured over 2 s before) per tick fired."""
    from runnerq import ActivityClient
    from runnerq.schedules import ScheduleFirer

    idle0 = _redis_cpu(a.url)
    time.sleep(2.0)
    idle_per_s = (_redis_cpu(a.url) - idle0) / 2.0
    asyncio.run(_spread_schedules(a.url, a.schedules))

    async def loop() -> dict[str, float]:
        async with ActivityClient(a.url, "bench") as client:
            firer = ScheduleFirer(client.store)
            stats = client.store.keys.stats
            enqueued0 = int(await client.store.redis.hget(stats, "enqueued") or 0)
            py0, redis0, t0 = time.process_time(), _redis_cpu(a.url), time.perf_counter()
            end = t0 + a.n
            while time.perf_counter() < end:
                wait = await firer.fire_due()
                if wait is None or wait > 0:
                    await asyncio.sleep(min(1.0, wait or 1.0, max(0.0, end - time.perf_counter())))
            py1, redis1, t1 = time.process_time(), _redis_cpu(a.url), time.perf_counter()
            ticks = int(await client.store.redis.hget(stats, "enqueued") or 0) - enqueued0
        redis_s = max(0.0, redis1 - redis0 - idle_per_s * (t1 - t0))
        return {
            "ticks": ticks,
            "per_s": ticks / (t1 - t0),
            "python_us": (py1 - py0) / max(1, ticks) * 1e6,
            "redis_us": redis_s / max(1, ticks) * 1e6,
        }

    print(json.dumps(asyncio.run(loop())))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.schedules")
    ap.add_argument("role", choices=["worker", "firer", "cost-run", "tick-cost"])
    ap.add_argument("--url", required=True)
    ap.add_argument("--schedules", type=int, default=10)
    ap.add_argument("--n", type=int, default=60_000)
    ap.add_argument("--fire", action="store_true", help="cost-run: the schedules on its queue")
    a = ap.parse_args(argv)
    roles = {
        "worker": _worker,
        "firer": _firer,
        "cost-run": _cost_run_main,
        "tick-cost": _tick_cost_main,
    }
    roles[a.role](a)


if __name__ == "__main__":
    main()
