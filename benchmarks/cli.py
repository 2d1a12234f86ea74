"""``python -m benchmarks``: one redis-server, every library in turn, one table and one JSON."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aioredis

from .limits import LimitSettings, run_limit_rows
from .pins import LIBRARIES, PEERS, Library
from .proc import Adapter
from .profiling import PY_SPY, attach_py_spy, format_summary, py_spy_command, summarize
from .report import build_rows, format_table, rows_for, write_json
from .scenarios import Cell, Scenarios, Settings
from .schedules import ScheduleSettings, run_schedule_rows
from .stats import percentile
from .venvs import default_cache_dir, ensure_tool, ensure_venv, freeze

__all__ = ["main"]

RESULTS = Path(__file__).resolve().parent / "results"
GROUPS = ("enqueue", "process", "latency", "schedules", "limits")
DEFAULT_GROUPS = {"enqueue", "process", "latency"}  # schedules, limits: only when asked for


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    names = [lib.name for lib in LIBRARIES]
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="runnerq side by side with Python peer queues and a bare-bones ceiling.",
    )
    ap.add_argument("--n", type=int, default=None, help="activities per processing run (20000)")
    ap.add_argument("--enqueue-n", type=int, default=None, help="single enqueues timed (= --n)")
    ap.add_argument("--quick", action="store_true", help="small runs: n=2000, 200 latency samples")
    ap.add_argument("--only", default="", help=f"comma-separated subset of: {','.join(names)}")
    ap.add_argument("--skip", default="", help="comma-separated libraries to leave out")
    ap.add_argument("--rows", default="", help=f"comma-separated subset of: {','.join(GROUPS)}")
    ap.add_argument("--concurrency", default="10,100", help="processing runs (default 10,100)")
    ap.add_argument("--callers", type=int, default=100, help="concurrent single enqueuers")
    ap.add_argument("--threads", type=int, default=8, help="enqueuing threads, sync libraries")
    ap.add_argument("--latency-samples", type=int, default=None)
    ap.add_argument("--sched-samples", type=int, default=None)
    ap.add_argument(
        "--schedule-rounds", type=int, default=None, help="rounds of the schedule cost row (12)"
    )
    ap.add_argument("--budget", type=float, default=180.0, help="seconds per processing run")
    ap.add_argument(
        "--repeat", type=int, default=1, help="rounds of the enqueue and processing rows (median)"
    )
    ap.add_argument("--profile", action="store_true", help="also sample runnerq with py-spy")
    ap.add_argument("--profile-n", type=int, default=100_000, help="activities per profiled run")
    ap.add_argument("--json", type=Path, default=RESULTS / "latest.json", help="output JSON")
    ap.add_argument("--cache-dir", type=Path, default=None, help="where peer venvs live")
    ap.add_argument("--redis-url", default=None, help="use this Redis (FLUSHALLed!)")
    a = ap.parse_args(argv)
    unknown = {x for x in (a.only.split(",") + a.skip.split(",")) if x} - set(names)
    if unknown:
        ap.error(f"unknown libraries: {', '.join(sorted(unknown))}")
    if {x for x in a.rows.split(",") if x} - set(GROUPS):
        ap.error(f"--rows takes a subset of {','.join(GROUPS)}")
    return a


def settings_from(a: argparse.Namespace) -> Settings:
    s = Settings(
        concurrencies=tuple(int(c) for c in a.concurrency.split(",") if c),
        callers=a.callers,
        threads=a.threads,
        budget=a.budget,
    )
    if a.quick:
        s = replace(s, n=2_000, enqueue_n=2_000, latency_samples=200, sched_samples=50)
    if a.n is not None:
        s = replace(s, n=a.n, enqueue_n=a.n)
    if a.enqueue_n is not None:
        s = replace(s, enqueue_n=a.enqueue_n)
    if a.latency_samples is not None:
        s = replace(s, latency_samples=a.latency_samples)
    if a.sched_samples is not None:
        s = replace(s, sched_samples=a.sched_samples)
    return s


def _loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return "?"


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run(a: argparse.Namespace, url: str) -> dict[str, Any]:
    s = settings_from(a)
    only = [x for x in a.only.split(",") if x]
    skip = {x for x in a.skip.split(",") if x}
    libs = [lib for lib in LIBRARIES if (not only or lib.name in only) and lib.name not in skip]
    groups = {x for x in a.rows.split(",") if x} or DEFAULT_GROUPS
    cache = a.cache_dir or default_cache_dir()
    logs = a.json.parent / "logs"
    client = redis.Redis.from_url(url)

    def flush() -> None:
        client.flushall()

    scenarios = Scenarios(s, flush)
    started = time.time()
    meta: dict[str, Any] = {
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "loadavg_before": _loadavg(),
        "cpus": os.cpu_count(),
        "machine": platform.platform(),
        "python": sys.version.split()[0],
        "redis_server": str(client.info("server").get("redis_version")),
        "redis_ping": ping_probe(url),
        "git": git_state(),
        "settings": asdict(s),
        "argv": sys.argv[1:],
    }
    cells: dict[str, dict[str, Cell]] = {}
    versions: dict[str, Any] = {}
    adapters: dict[str, Adapter] = {}
    for lib in libs:
        try:
            python = ensure_venv(lib, cache)
        except Exception as exc:  # a failed install must not sink the other libraries
            _say(f"cannot install {lib.name}: {exc}")
            cells[lib.name] = {"enqueue_single": Cell(None, f"install failed: {exc}")}
            continue
        versions[lib.name] = {"version": lib.version, "python": str(python)}
        versions[lib.name]["freeze"] = freeze(python)
        adapters[lib.name] = Adapter(lib, python, url, logs / f"{lib.name}.log")
    # Rounds over all libraries (not all rounds of one, then the next): a change in the
    # machine's load then falls on every library alike. Latency runs once (many samples).
    trace: list[dict[str, Any]] = []
    rounds: dict[str, list[dict[str, Cell]]] = {name: [] for name in adapters}
    plan = [(r, {"enqueue", "process"}) for r in range(a.repeat)] + [(0, {"latency"})]
    for r, wanted in plan:
        chosen = wanted & groups
        if not chosen:
            continue
        for name, ad in adapters.items():
            load = _loadavg()
            _say(f"== {name}: {', '.join(sorted(chosen))}, round {r + 1} (load {load})")
            t0 = time.monotonic()
            got = scenarios.run(ad, chosen)
            rounds[name].append(got)
            trace.append({"library": name, "round": r + 1, "rows": sorted(chosen), "load": load})
            _say(f"   {time.monotonic() - t0:.0f}s: {_brief(got)}")
    for name, results in rounds.items():
        cells[name] = merge_rounds(results)
    if "schedules" in groups and "runnerq" in adapters:
        ss = ScheduleSettings.quick() if a.quick else ScheduleSettings()
        if a.schedule_rounds is not None:
            ss = replace(ss, cost_rounds=a.schedule_rounds)
        _say(f"== runnerq: schedules (load {_loadavg()})")
        meta["schedule_settings"] = asdict(ss)
        cells["runnerq"].update(run_schedule_rows(scenarios, adapters["runnerq"], ss, _say))
    if "limits" in groups and "runnerq" in adapters:
        ls = LimitSettings.quick() if a.quick else LimitSettings()
        _say(f"== runnerq: limits (load {_loadavg()})")
        meta["limit_settings"] = asdict(ls)
        cells["runnerq"].update(run_limit_rows(scenarios, adapters["runnerq"], ls, _say))
    meta["load_trace"] = trace
    profile = None
    if a.profile:
        profile = _profile(url, scenarios, adapters, cache, logs, a.profile_n)
    meta["loadavg_after"] = _loadavg()
    meta["duration_s"] = round(time.time() - started, 1)
    rows = build_rows(rows_for(s.concurrencies, s.n, s.enqueue_n, s.callers), cells, PEERS)
    # rows that no library measured (left out with --rows) are left out of the report
    rows = [
        r for r in rows if any(v["value"] is not None or v["note"] for v in r["values"].values())
    ]
    return {
        "schema": 1,
        "meta": meta,
        "libraries": versions,
        "columns": [lib.name for lib in libs],
        "rows": rows,
        "profile": profile,
        "method": _method(s),
    }


def git_state() -> dict[str, Any]:
    """The commit measured, and which tracked files differed from it (runnerq may be dirty)."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=RESULTS.parent.parent, capture_output=True, text=True, check=False
        )
        return done.stdout.strip()

    return {"commit": git("rev-parse", "HEAD"), "dirty": git("diff", "--name-only").split()}


def ping_probe(url: str, n: int = 300) -> dict[str, float]:
    """PING round trips from asyncio (microseconds, p50): back to back, and after 10 ms idle,
    which is what a latency sample pays at each hop on a machine that idles (VM wake-ups)."""

    async def probe() -> dict[str, float]:
        client = aioredis.Redis.from_url(url)
        out: dict[str, float] = {}
        try:
            for name, gap in (("busy_p50_us", 0.0), ("after_10ms_idle_p50_us", 0.01)):
                times = []
                for _ in range(n):
                    if gap:
                        await asyncio.sleep(gap)
                    t0 = time.perf_counter()
                    await client.ping()
                    times.append((time.perf_counter() - t0) * 1e6)
                out[name] = round(percentile(times, 50), 1)
        finally:
            await client.aclose()
        return out

    return asyncio.run(probe())


def merge_rounds(results: list[dict[str, Cell]]) -> dict[str, Cell]:
    """One cell per row: the median of the rounds' values (all of them kept as samples)."""
    merged: dict[str, Cell] = {}
    for key in dict.fromkeys(k for result in results for k in result):
        cells = [result[key] for result in results if key in result]
        values = [c.value for c in cells if c.value is not None]
        notes = list(dict.fromkeys(c.note for c in cells if c.note))
        merged[key] = Cell(
            statistics.median(values) if values else None,
            "; ".join(notes) or None,
            values if len(cells) > 1 else None,
        )
    return merged


def _brief(cells: dict[str, Cell]) -> str:
    return ", ".join(f"{k}={c.value:.4g}" for k, c in cells.items() if c.value is not None)


def _profile(
    url: str,
    scenarios: Scenarios,
    adapters: dict[str, Adapter],
    cache: Path,
    logs: Path,
    profile_n: int,
) -> dict[str, Any]:
    ad = adapters.get("runnerq")
    if ad is None:
        lib: Library = next(x for x in LIBRARIES if x.name == "runnerq")
        ad = Adapter(lib, ensure_venv(lib, cache), url, logs / "runnerq.log")
    py_spy = ensure_tool("py-spy", PY_SPY, cache)
    out: dict[str, Any] = {}
    for conc in scenarios.s.concurrencies:
        raw = logs / f"runnerq-c{conc}.pyspy.txt"
        raw.unlink(missing_ok=True)
        attach = attach_py_spy(py_spy, raw, logs / "py-spy.log")
        cell, _ = scenarios.throughput(ad, conc, attach=attach, n=profile_n)
        summary = summarize(raw.read_text() if raw.exists() else "")
        summary["rate_while_sampled"] = cell.value
        summary["raw"] = str(raw)
        out[f"process_c{conc}"] = summary
        _say(format_summary(f"runnerq worker, concurrency {conc}", summary))
    raw = logs / "runnerq-enqueue-single.pyspy.txt"
    raw.unlink(missing_ok=True)
    scenarios.flush()
    s = scenarios.s
    r = ad.produce(
        wrap=py_spy_command(py_spy, raw),
        mode="single",
        n=profile_n,
        callers=s.callers,
        threads=s.threads,
    )
    scenarios.flush()
    summary = summarize(raw.read_text() if raw.exists() else "")
    summary["rate_while_sampled"] = r["n"] / r["seconds"]
    summary["raw"] = str(raw)
    out["enqueue_single"] = summary
    _say(format_summary(f"runnerq client, single enqueues, {s.callers} callers", summary))
    return out


def _method(s: Settings) -> dict[str, str]:
    return {
        "completion": (
            "each no-op handler's only work is to count itself in the worker process (a "
            "locked in-process counter; a pipe from RQ's forked children): no extra Redis "
            "round trip, the same for every library"
        ),
        "processing": (
            f"{s.n} activities enqueued first, then one worker process started; rate between "
            "the moments the 5% and 100% hit marks were reached (startup and warm-up excluded)"
        ),
        "latency": (
            f"{s.latency_samples} activities, each sent {s.latency_gap * 1000:g} ms after the "
            "previous one started (an idle, warmed-up worker, concurrency "
            f"{s.latency_concurrency}); from just before the enqueue call to the handler's start"
        ),
        "scheduling": (
            f"{s.sched_samples} activities with a {s.sched_delay:g} s delay, "
            f"{s.sched_gap * 1000:g} ms apart (at most delay/gap waiting at once); "
            "handler start minus (just before the enqueue call + delay)"
        ),
        "rss": "VmRSS of the worker's process tree after the last processing run",
        "settings": (
            "every library with its default settings, one worker process, hiredis installed"
        ),
    }


def main(argv: Sequence[str] | None = None) -> int:
    a = parse_args(argv)
    if a.redis_url:
        document = run(a, a.redis_url)
    else:
        from tests.support.redis_server import RedisServer

        with RedisServer() as server:
            a.redis_url = server.url
            document = run(a, server.url)
    write_json(a.json, document)
    print(format_table(document["rows"], document["columns"]))
    meta = document["meta"]
    print(
        f"\nload average before {meta['loadavg_before']}, after {meta['loadavg_after']};"
        f" {meta['cpus']} CPUs; redis {meta['redis_server']}; python {meta['python']};"
        f" {meta['duration_s']} s"
    )
    ping = meta["redis_ping"]
    print(
        f"redis PING from asyncio, p50: {ping['busy_p50_us']:.0f} us back to back,"
        f" {ping['after_10ms_idle_p50_us']:.0f} us after 10 ms idle"
    )
    print(f"JSON: {a.json}")
    return 0
