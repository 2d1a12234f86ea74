"""The chaos scenarios. Each runs real worker processes under load, injects one kind of
fault, drains the queue and returns the audit (``ScenarioReport``); ``report.problems``
lists every broken promise. ``tests/chaos/test_chaos.py`` runs them small inside pytest;
``python -m tests.chaos`` runs them big and prints the table."""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from runnerq import ActivityClient, ActivityNotFoundError, ActivityOption, RedisUnavailableError
from tests.chaos.audit import ActivityPlan, ScenarioReport, audit_keys, read_hash
from tests.chaos.harness import Harness, Produced, Size
from tests.chaos.procs import libfaketime
from tests.chaos.proxy import ChaosProxy
from tests.support.polling import eventually

__all__ = ["SCENARIOS", "Scenario"]

Scenario = Callable[[Size, int], Awaitable[ScenarioReport]]


async def _produced(h: Harness, count: float) -> bool:
    return h.next_n >= count


def _drain_timeout(size: Size) -> float:
    return 60.0 + size.activities / 20


# -- processes ---------------------------------------------------------------------------


async def sigkill_workers(size: Size, seed: int = 1) -> ScenarioReport:
    """Three workers (lease 1 s, heartbeat 0.25 s); one is SIGKILLed at a random moment
    every 0.4-1.5 s and replaced, while activities keep coming."""
    env = {"CHAOS_LEASE": "1.0", "CHAOS_HEARTBEAT": "0.25", "CHAOS_MAX_WORKERS": "8"}
    async with Harness("sigkill", seed=seed, worker_env=env) as h:
        await h.watch_terminal_events()
        await h.wait_ready([h.spawn() for _ in range(3)])
        producer = asyncio.create_task(h.produce(size.activities, size.rate))
        kills = 0
        while kills < size.kills or not producer.done():
            await asyncio.sleep(h.rng.uniform(0.4, 1.5))
            victims = h.alive()
            if victims and kills < size.kills:
                h.kill(h.rng.choice(victims))
                kills += 1
                h.spawn()
        await producer
        await h.drain(_drain_timeout(size))
        await h.stop_workers(grace=5)
        await h.check_futures()
        h.notes.append(f"{kills} workers SIGKILLed under load")
        report = await h.report()
        report.notes.append(
            f"redelivered counter: {report.stats.get('redelivered', 0)} (also counts activities"
            " a killed worker had claimed but not started)"
        )
        return report


async def sigterm_workers(size: Size, seed: int = 2) -> ScenarioReport:
    """Three workers; one at a time is stopped with SIGTERM (graceful, grace 5 s) and
    replaced while activities keep coming: no loss and no re-run at all."""
    # Any re-run or redelivery is a problem here, so no lease may expire: 5 s leases (a worker
    # process would have to miss heartbeats for 4.5 s), not 1 s ones that a process held up
    # on a loaded machine (four processes and Redis on two shared cores) can lose.
    env = {"CHAOS_LEASE": "5.0", "CHAOS_HEARTBEAT": "0.5", "CHAOS_GRACE": "5"}
    async with Harness("sigterm", seed=seed, worker_env=env) as h:
        await h.watch_terminal_events()
        await h.wait_ready([h.spawn() for _ in range(3)])
        producer = asyncio.create_task(h.produce(size.activities, size.rate))
        stops: list[asyncio.Task[int | None]] = []
        while len(stops) < size.kills or not producer.done():
            await asyncio.sleep(h.rng.uniform(0.4, 1.5))
            # Only workers that are up (SIGTERM during start-up is the default action: death).
            victims = [w for w in h.alive() if w.signalled is None and w.ready]
            if victims and len(stops) < size.kills:
                h.spawn()
                stops.append(asyncio.create_task(h.rng.choice(victims).terminate(20)))
        await producer
        codes = [await s for s in stops]
        if any(c != 0 for c in codes):
            h.problems.append(f"graceful stops exited with {codes}")
        await h.drain(_drain_timeout(size))
        await h.stop_workers(grace=5)
        await h.check_futures()
        h.notes.append(f"{len(stops)} workers stopped with SIGTERM under load, exit codes {codes}")
        report = await h.report()
        if report.rerun:
            report.problems.append(f"{report.rerun} activities re-ran despite graceful stops")
        released = report.stats.get("released", 0)
        report.notes.append(f"handed back at shutdown (released): {released}")
        if report.stats.get("redelivered", 0):
            report.problems.append("leases expired although every stop was graceful")
        return report


# -- Redis restarts ----------------------------------------------------------------------


async def _redis_restart(
    name: str, size: Size, seed: int, *, crash: bool, appendfsync: str
) -> ScenarioReport:
    env = {"CHAOS_LEASE": "2.0", "CHAOS_HEARTBEAT": "0.5"}
    async with Harness(
        name, seed=seed, appendonly=True, appendfsync=appendfsync, worker_env=env
    ) as h:
        if crash and appendfsync == "everysec":
            # Redis documents up to about one second of writes lost (two when fsync lags).
            h.aof_window = 2.0
        workers = [h.spawn() for _ in range(3)]
        await h.wait_ready(workers)
        pids = {w.pid for w in workers}
        waiter = h.new_client()
        waits: list[asyncio.Task[Any]] = []
        producer = asyncio.create_task(h.produce(size.activities, size.rate))
        restarts_done_ms: list[int] = []
        for restart in range(size.restarts):
            target = size.activities * (restart + 1) / (size.restarts + 1)
            await eventually(functools.partial(_produced, h, target), timeout=120, what="load")
            # Slow activities enqueued just before the outage: running or pending across it,
            # each awaited by a future of a separate client.
            slow = [h.work(h.next_n + i, ms=(800, 1500)) for i in range(10)]
            h.next_n += len(slow)
            before = set(h.plans)
            if await h.enqueue(slow):
                waits += [
                    asyncio.create_task(waiter.future(i).get_result(timeout=None))
                    for i in set(h.plans) - before
                ]
            await asyncio.sleep(h.rng.uniform(0.1, 0.5))
            if crash:
                h.redis_crashes.append(time.monotonic())
                h.redis.kill()
            else:
                h.redis.stop()
            await asyncio.sleep(h.rng.uniform(0.5, 2.0))
            h.redis.start()
            restarts_done_ms.append(int((await h.audit_raw.time())[0]) * 1000)
        await producer
        await h.drain(_drain_timeout(size))
        # Futures that waited across the restart resolve (a result, or not found when the
        # activity itself was lost to the AOF window).
        resolved, lost = 0, 0
        try:
            async with asyncio.timeout(30):
                for task in waits:
                    try:
                        await task
                        resolved += 1
                    except ActivityNotFoundError:
                        lost += 1
        except TimeoutError:
            h.problems.append(
                f"{sum(not t.done() for t in waits)} of {len(waits)} futures still waiting"
                " after the restart"
            )
        for task in waits:
            task.cancel()
        h.notes.append(
            f"{len(waits)} futures waited across {size.restarts} restart(s): {resolved} resolved"
            f" with a result, {lost} not found"
        )
        survivors = [w for w in workers if w.alive]
        if len(survivors) != len(workers):
            h.problems.append("a worker died during the Redis restart")
        after = await read_hash(h.audit_raw, audit_keys(h.queue).execs)
        last_restart = restarts_done_ms[-1] if restarts_done_ms else 0
        resumed_pids = {
            int(run.split(":")[0])
            for runs in after.values()
            for run in runs.split(";")
            if run and int(run.split(":")[2]) > last_restart
        }
        h.notes.append(
            f"{len(resumed_pids & pids)} of {len(pids)} original worker processes ran activities"
            " after the last restart (none was restarted)"
        )
        if not resumed_pids & pids:
            h.problems.append("no original worker ran anything after the restart")
        await h.stop_workers(grace=5)
        await h.check_futures()
        h.notes.append(f"{h.unacked} enqueues refused while Redis was down")
        report = await h.report()
        if crash and appendfsync == "everysec":
            report.notes.append(
                f"SIGKILL with appendfsync everysec lost {report.aof_lost} acknowledged"
                f" enqueues, and {report.rerun_reasons['completion lost in Redis crash']}"
                " recorded completions (re-run afterwards): expected up to ~1 s of writes"
            )
        elif report.aof_lost:
            report.problems.append(f"{report.aof_lost} acknowledged enqueues lost")
        return report


async def redis_restart_graceful(size: Size, seed: int = 3) -> ScenarioReport:
    """Redis (AOF everysec) stopped with SIGTERM and started again mid-run."""
    return await _redis_restart(
        "redis-term-everysec", size, seed, crash=False, appendfsync="everysec"
    )


async def redis_crash_always(size: Size, seed: int = 4) -> ScenarioReport:
    """Redis with appendfsync always SIGKILLed and started again mid-run: nothing lost."""
    return await _redis_restart("redis-kill-always", size, seed, crash=True, appendfsync="always")


async def redis_crash_everysec(size: Size, seed: int = 5) -> ScenarioReport:
    """Redis with appendfsync everysec SIGKILLed mid-run: loss measured, not asserted."""
    return await _redis_restart(
        "redis-kill-everysec", size, seed, crash=True, appendfsync="everysec"
    )


# -- network -----------------------------------------------------------------------------


async def network_faults(size: Size, seed: int = 6) -> ScenarioReport:
    """Three workers, each behind its own TCP proxy to Redis, and a client awaiting results
    through a fourth. Rounds of trouble on random proxies: latency, stalls shorter and longer
    than the lease (2 s), a 7 s stall, reset connections, refused reconnects. (Half-open
    connections of a worker are in known_bugs.py.)"""
    env = {"CHAOS_LEASE": "2.0", "CHAOS_HEARTBEAT": "0.5"}
    async with Harness("network", seed=seed, worker_env=env) as h:
        await h.watch_terminal_events()
        proxies = [await ChaosProxy("127.0.0.1", h.redis.port).start() for _ in range(4)]
        try:
            workers = [h.spawn(url=p.url) for p in proxies[:3]]
            await h.wait_ready(workers)
            waiter = h.new_client(proxies[3].url)
            # Load for the whole run (a round takes about 3 s), with activities long enough
            # (0.1-0.6 s) that workers hold leases when their network goes bad.
            rate = size.activities / (3.0 * size.network_rounds)
            producer = asyncio.create_task(
                h.produce(size.activities, rate, make=lambda n: h.work(n, ms=(100, 600)), batch=5)
            )
            waits: list[asyncio.Task[Any]] = []
            faults: list[str] = []
            kinds = ["latency", "stall 1s", "stall 3.5s", "cut", "stall 7s", "refuse"]
            for round_no in range(size.network_rounds):
                kind = kinds[round_no % len(kinds)]
                targets = h.rng.sample(proxies, k=h.rng.choice([1, 1, 2]))
                ids = list(h.plans)[-5:]
                waits += [asyncio.create_task(_await_result(waiter, i)) for i in ids]
                faults.append(f"{kind} on {len(targets)}")
                await _network_fault(kind, targets, h)
                await asyncio.sleep(h.rng.uniform(0.3, 1.0))
            await producer
            await h.drain(_drain_timeout(size))
            try:
                async with asyncio.timeout(30):
                    await asyncio.gather(*waits)
            except TimeoutError:
                h.problems.append(
                    f"{sum(not t.done() for t in waits)} of {len(waits)} futures behind the proxy"
                    " still waiting"
                )
            for task in waits:
                task.cancel()
            h.notes.append(f"faults: {', '.join(faults)}; {len(waits)} futures awaited via proxy")
            await h.stop_workers(grace=5)
        finally:
            for proxy in proxies:
                await proxy.aclose()
        await h.check_futures()
        report = await h.report()
        report.notes.append(f"redelivered counter: {report.stats.get('redelivered', 0)}")
        return report


async def _await_result(client: ActivityClient, activity_id: str) -> Any:
    """Wait for a result as an application would: a wait that starts while the connection
    is being cut raises RedisUnavailableError (documented), and is simply started again."""
    while True:
        try:
            return await client.future(activity_id).get_result(timeout=None)
        except RedisUnavailableError:
            await asyncio.sleep(0.2)


async def _network_fault(kind: str, targets: list[ChaosProxy], h: Harness) -> None:
    if kind == "latency":
        for proxy in targets:
            proxy.latency = h.rng.uniform(0.05, 0.3)
        await asyncio.sleep(2.0)
        for proxy in targets:
            proxy.latency = 0.0
    elif kind.startswith("stall"):
        for proxy in targets:
            proxy.stall()
        await asyncio.sleep(float(kind.split()[1].rstrip("s")))
        for proxy in targets:
            proxy.resume()
    elif kind == "cut":
        for proxy in targets:
            await proxy.cut()
    elif kind == "refuse":
        for proxy in targets:
            proxy.refusing = True
            await proxy.cut()
        await asyncio.sleep(1.5)
        for proxy in targets:
            proxy.refusing = False


# -- poison ------------------------------------------------------------------------------

_RAW_POISON: list[tuple[str, bytes | None, str]] = [
    ("text", b"not json at all", "corrupt"),
    ("bad-utf8", b"\xff\xfe\x00\x80garbage", "corrupt"),
    ("array", b"[1, 2, 3]", "corrupt"),
    ("null", b"null", "corrupt"),
    ("no-type", b'{"id": "no-type", "payload": 1}', "corrupt"),
    ("type-not-string", b'{"id": "type-not-string", "type": 5, "payload": 1}', "corrupt"),
    (
        "retry-count-string",
        b'{"id": "retry-count-string", "type": "work", "payload": {"n": -1},'
        b' "retry_count": "many"}',
        "corrupt",
    ),
    (
        "priority-unknown",
        b'{"id": "priority-unknown", "type": "work", "payload": {"n": -1}, "priority": "urgent"}',
        "corrupt",
    ),
    (
        "metadata-list",
        b'{"id": "metadata-list", "type": "work", "payload": {"n": -1}, "metadata": [1]}',
        "corrupt",
    ),
    ("ghost", None, "corrupt"),  # in `ready`, no record at all
]


async def poison(size: Size, seed: int = 7) -> ScenarioReport:
    """Bad input among normal load on two workers: entries written straight into the queue's
    keys (not JSON, bad UTF-8, wrong-typed fields, no record, a 5 MiB record), payloads near
    the 1 MiB limit, unknown types, handlers that hang past their timeout, raise odd
    exceptions, or return non-JSON or 4 MB results. (What is not handled well is in
    ``known_bugs.py``.)"""
    env = {"CHAOS_LEASE": "1.0", "CHAOS_HEARTBEAT": "0.25", "CHAOS_MAX_RETRIES": "2"}
    async with Harness("poison", seed=seed, worker_env=env) as h:
        await h.watch_terminal_events()
        await h.wait_ready([h.spawn() for _ in range(2)])
        for name, raw, reason in _RAW_POISON:
            await h.inject_raw(
                f"raw-{name}", raw, ActivityPlan(-1, "dead_lettered", reason, attempts=0)
            )
        big = json.dumps(
            {
                "id": "raw-5mib",
                "type": "work",
                "payload": {"n": 5, "ms": 1, "pad": "z" * (5 * 1024 * 1024)},
                "priority": "normal",
                "retry_count": 0,
            }
        ).encode()
        await h.inject_raw("raw-5mib", big, ActivityPlan(5))

        special: list[Produced] = []
        for i in range(3):
            special.append(("no_such_type", {"i": i}, None, _dead("unknown_type", 0)))
            special.append(
                ("work", {"n": 900 + i, "ms": 1, "pad": "p" * 900_000}, None, ActivityPlan(900 + i))
            )
            special.append(
                ("hang", None, ActivityOption(timeout=0.3, max_retries=1), _dead("timeout", 2))
            )
        for kind in ("huge", "unicode", "chained", "empty", "exception_group", "recursion"):
            special.append(
                (
                    "odd_error",
                    {"kind": kind},
                    ActivityOption(max_retries=0),
                    _dead("retries_exhausted", 1),
                )
            )
        special.append(("bad_result", {}, None, _dead("bad_result", 1)))
        special.append(("bad_result", {"kind": "huge"}, None, ActivityPlan(-1, check_result=False)))
        special.append(("work", {"n": 1, "fatal": True}, None, _dead("non_retryable", 1)))
        special.append(("work", {"n": 2, "fail": 1}, None, ActivityPlan(2, attempts=2)))
        special.append(("work", {"n": 3, "fail": 9}, None, _dead("retries_exhausted", 3)))
        if not await h.enqueue(special):
            raise AssertionError("enqueueing the poison activities failed")
        await h.produce(size.poison_normal, size.rate)
        await h.drain(_drain_timeout(size))
        await h.stop_workers(grace=5)
        await h.check_futures()
        report = await h.report()
        report.notes.append(f"dead-letter reasons: {dict(report.dead_reasons)}")
        return report


def _dead(reason: str, attempts: int) -> ActivityPlan:
    return ActivityPlan(-1, "dead_lettered", reason, attempts=attempts)


# -- clocks ------------------------------------------------------------------------------


async def clock_skew(size: Size, seed: int = 8) -> ScenarioReport:
    """Workers whose wall clocks are 30 s ahead, 45 s behind (libfaketime when installed,
    else a patched ``time.time``), or jumping by ten minutes both ways mid-run, hold 3 s
    leases over activities 1.2-2.5 times as long: no lease is lost or stolen, and every lease
    deadline in Redis stays within one lease length of Redis's own clock."""
    # Every activity outlives its lease, so only heartbeats keep it, and any re-run is a
    # problem. With 1 s leases a worker process held up for 0.75 s on a loaded machine (three
    # workers, Redis and the test on two shared cores) lost one; 3 s leases with 0.5 s
    # heartbeats leave 2.5 s. The skews (30 s, 45 s, 10 min) stay far beyond the lease.
    lease_ms = 3000
    env = {
        "CHAOS_LEASE": str(lease_ms / 1000),
        "CHAOS_HEARTBEAT": "0.5",
        "CHAOS_MAX_WORKERS": "6",
    }
    async with Harness("clock", seed=seed, worker_env=env) as h:
        await h.watch_terminal_events()
        faketime = libfaketime()
        behind: dict[str, str]
        if faketime is not None:
            behind = {
                "LD_PRELOAD": str(faketime),
                "FAKETIME": "-45",
                "FAKETIME_DONT_FAKE_MONOTONIC": "1",
                "FAKETIME_DONT_RESET": "1",
            }
            h.notes.append("45 s behind: libfaketime")
        else:
            behind = {"CHAOS_CLOCK": "-45"}
            h.notes.append("45 s behind: patched time.time (libfaketime not installed)")
        workers = [
            h.spawn(env={"CHAOS_CLOCK": "+30"}),
            h.spawn(env=behind),
            h.spawn(env={"CHAOS_CLOCK": "0:+600,3:-600,6:+5"}),
        ]
        await h.wait_ready(workers)
        samples: list[float] = []
        stop = asyncio.Event()

        async def sample() -> None:
            while not stop.is_set():
                async with h.raw.pipeline(transaction=True) as pipe:
                    pipe.time()
                    pipe.zrange(h.keys.inflight, 0, -1, withscores=True)
                    (sec, usec), leased = await pipe.execute()
                now_ms = sec * 1000 + usec // 1000
                samples.extend(score - now_ms for _, score in leased)
                await asyncio.sleep(0.05)

        sampler = asyncio.create_task(sample())

        def make(n: int) -> Produced:
            fail = 1 if n % 5 == 0 else 0  # retries are scheduled by Redis's clock too
            kind, payload, options, _ = h.work(
                n, ms=(lease_ms * 6 // 5, lease_ms * 5 // 2), fail=fail
            )
            return kind, payload, options, ActivityPlan(n, attempts=1 + fail)

        await h.produce(size.clock_activities, rate=12.0, make=make, batch=6)
        await h.drain(_drain_timeout(size))
        stop.set()
        await sampler
        await h.stop_workers(grace=5)
        await h.check_futures()
        skews = await read_hash(h.audit_raw, audit_keys(h.queue).skew)
        observed = {int(pid): int(ms) / 1000 for pid, ms in skews.items()}
        h.notes.append(
            "worker wall clock minus Redis clock (s) at the last start: "
            + ", ".join(f"{v:+.0f}" for v in sorted(observed.values()))
        )
        if len(observed) < 3 or sorted(abs(v) for v in observed.values())[0] < 4:
            h.problems.append(f"the clock skew was not in effect in every worker: {observed}")
        if samples:
            h.notes.append(
                f"{len(samples)} lease samples: deadline - Redis now in"
                f" [{min(samples):.0f}, {max(samples):.0f}] ms (lease {lease_ms} ms)"
            )
            if max(samples) > lease_ms + 5:
                h.problems.append(f"a lease deadline {max(samples):.0f} ms ahead of Redis time")
        report = await h.report()
        if report.rerun or report.stats.get("redelivered", 0):
            report.problems.append(
                f"{report.rerun} re-runs / {report.stats.get('redelivered')} redeliveries"
                " with skewed clocks: leases were lost or stolen"
            )
        return report


SCENARIOS: dict[str, Scenario] = {
    "sigkill": sigkill_workers,
    "sigterm": sigterm_workers,
    "redis-term-everysec": redis_restart_graceful,
    "redis-kill-always": redis_crash_always,
    "redis-kill-everysec": redis_crash_everysec,
    "network": network_faults,
    "poison": poison,
    "clock": clock_skew,
}
