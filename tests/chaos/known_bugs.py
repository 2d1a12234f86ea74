"""Faults runnerq does not survive yet, each as a small run that returns its audit.

Every function here reproduces one bug found by the chaos suite; its ``report.problems`` say
what went wrong. ``test_known_bugs.py`` runs those in ``OPEN_BUGS`` as strict xfail (the
suite stays green, and turns red when a bug is fixed without the mark being removed) and the
fixed ones as plain regression tests; ``python -m tests.chaos`` lists them after the
scenarios. docs/chaos.md explains each.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from runnerq import ActivityOption, ResultTimeoutError
from tests.chaos.audit import ActivityPlan, ScenarioReport, audit_keys
from tests.chaos.harness import Harness, Produced
from tests.chaos.proxy import ChaosProxy

__all__ = ["KNOWN_BUGS", "OPEN_BUGS"]

_SHORT_LEASE = {"CHAOS_LEASE": "1.0", "CHAOS_HEARTBEAT": "0.25", "CHAOS_MAX_RETRIES": "1"}
# Activities here take milliseconds: one not finished after this long never will.
_SETTLE = 6.0


def _dead(kind: str) -> Produced:
    return (
        "base_exception",
        {"kind": kind},
        ActivityOption(max_retries=0),
        ActivityPlan(-1, "dead_lettered", attempts=1),
    )


async def _small_run(
    name: str,
    produced: list[Produced],
    *,
    workers: int = 1,
    normal: int = 10,
    env: dict[str, str] | None = None,
    before: Callable[[Harness], Awaitable[None]] | None = None,
) -> ScenarioReport:
    async with Harness(name, worker_env={**_SHORT_LEASE, **(env or {})}) as h:
        if before is not None:
            await before(h)
        await h.wait_ready([h.spawn() for _ in range(workers)])
        if produced and not await h.enqueue(produced):
            raise AssertionError("enqueue failed")
        if normal:
            await h.enqueue([h.work(1000 + i, ms=(1, 20)) for i in range(normal)])
        await h.drain(_SETTLE)
        await h.stop_workers(grace=2)
        return await h.report()


async def handler_exits_process() -> ScenarioReport:
    """A handler raising SystemExit or KeyboardInterrupt ends its worker process (exit 3 /
    130) instead of failing the activity; the activity is handed back and ends the next
    worker too, forever (re-delivery uses no retry)."""
    return await _small_run(
        "kb-systemexit", [_dead("SystemExit"), _dead("KeyboardInterrupt")], workers=2
    )


async def handler_base_exception_stuck() -> ScenarioReport:
    """A handler raising a BaseException that is not an Exception (a custom one,
    asyncio.CancelledError raised by the handler itself, GeneratorExit): the worker's task
    dies, nothing is acknowledged, and the worker keeps heartbeating the lease: the activity
    stays `running` forever and its future never resolves."""
    return await _small_run(
        "kb-baseexception",
        [_dead("custom"), _dead("CancelledError"), _dead("GeneratorExit")],
    )


async def unprintable_exception_stuck() -> ScenarioReport:
    """A handler raising an Exception whose ``__str__`` raises: describing the error fails
    inside the worker's except block, the task dies, the activity stays `running` forever."""
    return await _small_run("kb-unprintable", [_dead("unprintable")])


async def config_max_retries_inf() -> ScenarioReport:
    """The queue's config hash says ``max_retries`` = ``inf`` (or ``nan``, ``1e400``):
    ``int(float(...))`` raises OverflowError/ValueError in the worker, and every activity
    without its own max_retries stays `running` forever."""

    async def configure(h: Harness) -> None:
        await h.raw.hset(h.keys.config, "max_retries", "inf")

    return await _small_run("kb-config-inf", [], normal=5, before=configure)


async def record_id_mismatch() -> ScenarioReport:
    """A well-formed record whose ``id`` field differs from its key in ``jobs``: the worker
    acknowledges the record's id, the ack is refused (no lease), and the claimed id stays
    `running` (heartbeated) forever instead of being dead-lettered as corrupt."""

    async def inject(h: Harness) -> None:
        await h.inject_raw(
            "key-a",
            b'{"id": "other-id", "type": "work", "payload": {"n": 7, "ms": 1}}',
            ActivityPlan(7, "any", check_result=False, attempts=1),
        )

    return await _small_run("kb-id-mismatch", [], normal=3, before=inject)


async def blocking_handler_livelock() -> ScenarioReport:
    """A handler that blocks the event loop (2.5 s) past its lease (1 s): the lease was lost,
    the activity re-ran elsewhere and blocked that worker too, over and over (until
    max_redeliveries), and the activities sharing the blocked worker were re-run with it.
    Fixed by the stall guard (runnerq/stall_guard.py), which keeps the leases meanwhile."""
    produced: list[Produced] = [
        ("work", {"n": 1, "ms": 1, "block_ms": 2500}, None, ActivityPlan(1, "any"))
    ]
    report = await _small_run("kb-livelock", produced, workers=2, normal=10)
    report.notes.append(f"{report.executions} executions in {_SETTLE:g}s")
    return report


async def stale_prefetch_start() -> ScenarioReport:
    """A worker whose event loop was blocked past the lease starts the activities waiting in
    its prefetch buffer although their leases were lost and another worker already completed
    them: an execution after the completion was recorded. (With the stall guard off: it would
    keep the leases.)"""
    env = {**_SHORT_LEASE, "CHAOS_MAX_WORKERS": "1", "CHAOS_LOOP_STALL_LIMIT": "0"}
    async with Harness("kb-stale-prefetch", worker_env=env) as h:
        first = h.spawn()
        await h.wait_ready([first])
        # One slot and one prefetched: A blocks the loop once, B waits in the buffer.
        await h.enqueue(
            [
                ("work", {"n": 1, "block_first_ms": 2500}, None, ActivityPlan(1)),
                ("work", {"n": 2, "ms": 1}, None, ActivityPlan(2)),
            ]
        )
        execs = audit_keys(h.queue).execs
        for _ in range(200):
            if await h.audit_raw.hlen(execs):
                break
            await asyncio.sleep(0.02)
        await h.wait_ready([h.spawn()])  # reaps both after a second and completes them
        await h.drain(_SETTLE)
        await asyncio.sleep(1.0)  # let the first worker wake up and act on its buffer
        await h.stop_workers(grace=2)
        return await h.report()


async def half_open_result_wait() -> ScenarioReport:
    """A client waiting for a result over a connection that went silent (half-open: the
    peer vanished without FIN/RST) waits forever: the pub/sub read has no timeout and no
    health check, so it never reconnects and never re-reads its waiters."""
    async with Harness("kb-half-open", worker_env=_SHORT_LEASE) as h:
        await h.wait_ready([h.spawn()])
        async with ChaosProxy("127.0.0.1", h.redis.port) as proxy:
            client = h.new_client(proxy.url)
            await h.enqueue([h.work(1, ms=(1500, 1500))], client=client)
            [activity_id] = list(h.plans)
            waiter = asyncio.create_task(client.future(activity_id).get_result(timeout=35))
            await asyncio.sleep(0.5)
            proxy.half_open()
            try:
                await waiter
            except ResultTimeoutError:
                h.problems.append(
                    "the future was still waiting 35s later, although the activity completed"
                    " after 1.5s"
                )
            await h.drain(_SETTLE)
            await h.stop_workers(grace=2)
            return await h.report()


async def worker_half_open_hang() -> ScenarioReport:
    """A worker whose Redis connections go half-open (bytes accepted, never answered: a
    frozen Redis, or a proxy whose upstream died) hangs: with no socket timeout by default
    (RedisConfig.socket_timeout=None, TCP keepalive only, which a live peer kernel answers),
    its heartbeat and acks wait forever, the pool hands the dead idle connections out again,
    its leases expire and another worker re-runs its activities, and it does not stop within
    its grace period on SIGTERM."""
    env = {"CHAOS_LEASE": "2.0", "CHAOS_HEARTBEAT": "0.5"}
    async with Harness("kb-worker-half-open", worker_env=env) as h:
        proxies = [await ChaosProxy("127.0.0.1", h.redis.port).start() for _ in range(2)]
        try:
            await h.wait_ready([h.spawn(url=p.url) for p in proxies])
            producer = asyncio.create_task(
                h.produce(120, 30.0, make=lambda n: h.work(n, ms=(100, 400)), batch=4)
            )
            await asyncio.sleep(1.5)
            proxies[0].half_open()
            await producer
            await h.drain(12.0)
            await h.stop_workers(grace=3)
        finally:
            for proxy in proxies:
                await proxy.aclose()
        return await h.report()


KNOWN_BUGS: dict[str, Callable[[], Awaitable[ScenarioReport]]] = {
    "kb-handler-exits-process": handler_exits_process,
    "kb-handler-baseexception": handler_base_exception_stuck,
    "kb-unprintable-exception": unprintable_exception_stuck,
    "kb-config-max-retries-inf": config_max_retries_inf,
    "kb-record-id-mismatch": record_id_mismatch,
    "kb-blocking-livelock": blocking_handler_livelock,
    "kb-stale-prefetch-start": stale_prefetch_start,
    "kb-half-open-result-wait": half_open_result_wait,
    "kb-worker-half-open-hang": worker_half_open_hang,
}

# Still broken with the runnerq of this tree (strict xfail); the others were fixed after the
# suite found them and now run as plain regression tests.
OPEN_BUGS: set[str] = set()
