"""The scaffolding of one chaos scenario: a queue Redis, an audit Redis, worker processes,
a producer with known payloads, draining, stopping, and the audit."""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from runnerq import (
    ActivityClient,
    ActivityDeadLetteredError,
    ActivityOption,
    QueueSettings,
    RedisConfig,
    RedisUnavailableError,
    ResultTimeoutError,
)
from runnerq.keys import QueueKeys
from tests.chaos.audit import ActivityPlan, AuditInput, ScenarioReport, TerminalEvents, audit
from tests.chaos.procs import APP, ChaosRedis, WorkerProc
from tests.support.redis_server import RedisServer

__all__ = ["Harness", "Produced", "Size"]

# (activity type, payload, options, plan) for the n-th activity of a run.
Produced = tuple[str, Any, ActivityOption | None, ActivityPlan]


@dataclass(frozen=True, slots=True)
class Size:
    """How big a run is: ``SHORT`` inside ``pytest``, ``FULL`` for ``python -m tests.chaos``."""

    name: str
    activities: int  # per load scenario
    rate: float  # activities enqueued per second while faults happen
    kills: int  # SIGKILLs / SIGTERMs per process scenario
    restarts: int  # Redis restarts per restart scenario
    network_rounds: int
    clock_activities: int
    poison_normal: int


SHORT = Size("short", 300, 100.0, 4, 1, 6, 30, 100)
FULL = Size("full", 3000, 250.0, 15, 3, 18, 240, 1000)


class Harness:
    """One scenario's servers, processes and bookkeeping (an async context manager)."""

    def __init__(
        self,
        scenario: str,
        *,
        seed: int = 0,
        appendonly: bool = False,
        appendfsync: str = "everysec",
        worker_env: dict[str, str] | None = None,
    ) -> None:
        self.scenario = scenario
        self.queue = f"chaos-{scenario}-{uuid.uuid4().hex[:6]}"
        self.rng = random.Random(seed)
        self.log_dir = Path(tempfile.mkdtemp(prefix=f"runnerq-chaos-{scenario}-"))
        self.redis = ChaosRedis(appendonly=appendonly, appendfsync=appendfsync)
        self.audit_server = RedisServer()
        self.worker_env = dict(worker_env or {})
        self.workers: list[WorkerProc] = []
        self.killed_pids: set[int] = set()
        self.plans: dict[str, ActivityPlan] = {}
        self.ack_times: dict[str, float] = {}
        self.unacked = 0
        self.injected = 0
        self.redis_crashes: list[float] = []
        self.aof_window = 0.0
        self.next_n = 0
        self.notes: list[str] = []
        self.problems: list[str] = []
        self.events: TerminalEvents | None = None
        self.started = time.monotonic()
        self._clients: list[ActivityClient] = []
        self.keep_logs = False

    # -- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> Harness:
        self.redis.start()
        self.audit_server.start()
        self.client = self.new_client()
        self.raw = aioredis.Redis.from_url(self.redis.url, decode_responses=True)
        self.audit_raw = aioredis.Redis.from_url(self.audit_server.url, decode_responses=True)
        await self.client.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for worker in self.workers:
            worker.cleanup()
        if self.events is not None:
            await self.events.aclose()
        for client in self._clients:
            with contextlib.suppress(Exception):
                await client.aclose()
        await self.raw.aclose()
        await self.audit_raw.aclose()
        self.redis.cleanup()
        self.audit_server.cleanup()
        if exc[0] is None and not self.keep_logs:
            shutil.rmtree(self.log_dir, ignore_errors=True)

    def new_client(self, url: str | None = None) -> ActivityClient:
        client = ActivityClient(
            url or self.redis.url,
            self.queue,
            redis_config=RedisConfig(conn_timeout=2.0, min_idle=1),
            queue_settings=QueueSettings(self.queue, completed_cap=10_000_000),
        )
        self._clients.append(client)
        return client

    @property
    def keys(self) -> QueueKeys:
        return QueueKeys(self.queue)

    async def watch_terminal_events(self) -> None:
        """Count terminal announcements per id (reliable while Redis is not restarted)."""
        self.events = await TerminalEvents(self.redis.url, self.queue).start()

    # -- workers -----------------------------------------------------------------------

    def spawn(
        self, *, url: str | None = None, env: dict[str, str] | None = None, app: str = APP
    ) -> WorkerProc:
        worker = WorkerProc(
            f"worker-{len(self.workers)}",
            url or self.redis.url,
            self.queue,
            self.log_dir,
            {"CHAOS_AUDIT_URL": self.audit_server.url, **self.worker_env, **(env or {})},
            app,
        ).start()
        self.workers.append(worker)
        return worker

    def alive(self) -> list[WorkerProc]:
        return [w for w in self.workers if w.alive]

    async def wait_ready(self, workers: list[WorkerProc], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not all(w.ready for w in workers):
            crashed = [w for w in workers if not w.alive]
            if crashed:
                raise RuntimeError(f"{crashed[0].name} exited at start:\n{crashed[0].log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"workers not ready within {timeout}s")
            await asyncio.sleep(0.05)

    def kill(self, worker: WorkerProc) -> None:
        self.killed_pids.add(worker.pid)
        worker.kill()

    async def stop_workers(self, grace: float) -> None:
        """SIGTERM every worker still alive: each must exit 0 in time; none may have died
        on its own before (a crash)."""
        for worker in self.workers:
            if worker.process is None or worker.signalled is not None:
                continue
            if not worker.alive:
                self.problems.append(
                    f"{worker.name} (pid {worker.pid}) exited by itself with code"
                    f" {worker.process.returncode}"
                )
                continue
            if not worker.ready:  # SIGTERM before its handlers are installed would kill it
                with contextlib.suppress(AssertionError, RuntimeError):
                    await self.wait_ready([worker])
            code = await worker.terminate(grace + 15)
            if code is None:
                self.problems.append(
                    f"{worker.name} did not stop within {grace + 15:g}s of SIGTERM"
                )
            elif code != 0:
                self.problems.append(f"{worker.name} exited with {code} after SIGTERM")

    # -- load --------------------------------------------------------------------------

    def work(self, n: int, ms: tuple[int, int] = (20, 200), **extra: Any) -> Produced:
        payload = {"n": n, "ms": self.rng.randint(*ms), **extra}
        return "work", payload, None, ActivityPlan(n)

    async def enqueue(self, produced: list[Produced], client: ActivityClient | None = None) -> bool:
        """One enqueue call; records the plans when it returns, or counts it unacknowledged."""
        client = client or self.client
        try:
            futures = await client.enqueue_many([(t, p, o) for t, p, o, _ in produced])
        except RedisUnavailableError:
            self.unacked += len(produced)
            return False
        now = time.monotonic()
        for future, (_, _, _, plan) in zip(futures, produced, strict=True):
            self.plans[future.activity_id] = plan
            self.ack_times[future.activity_id] = now
        return True

    async def produce(
        self,
        count: int,
        rate: float,
        make: Callable[[int], Produced] | None = None,
        batch: int = 20,
    ) -> None:
        """Enqueue ``count`` activities at about ``rate`` per second, in batches."""
        make = make or self.work
        pause = batch / rate
        made = 0
        while made < count:
            size = min(batch, count - made)
            items = [make(self.next_n + i) for i in range(size)]
            self.next_n += size
            made += size
            await self.enqueue(items)
            await asyncio.sleep(pause)

    async def inject_raw(self, activity_id: str, record: bytes | None, plan: ActivityPlan) -> None:
        """Write an entry straight into ``jobs``/``ready``, bypassing the client."""
        keys = self.keys
        if record is not None:
            await self.raw.hset(keys.jobs, activity_id, record)
        await self.raw.zadd(keys.ready, {activity_id: 2 * 2**48})
        await self.raw.lpush(keys.notify, "1")
        self.plans[activity_id] = plan
        self.ack_times[activity_id] = time.monotonic()
        self.injected += 1

    # -- the end -----------------------------------------------------------------------

    async def unfinished(self) -> int:
        keys = self.keys
        async with self.raw.pipeline(transaction=True) as pipe:
            pipe.zcard(keys.ready)
            pipe.zcard(keys.scheduled)
            pipe.zcard(keys.inflight)
            counts = await pipe.execute()
        return int(sum(counts))

    async def drain(self, timeout: float) -> bool:
        """Wait until nothing is ready, scheduled or in flight; False after ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if await self.unfinished() == 0:
                    return True
            except (OSError, aioredis.ConnectionError):
                pass
            await asyncio.sleep(0.1)
        left = await self.unfinished()
        self.problems.append(f"queue not drained within {timeout:g}s ({left} left)")
        return False

    async def check_futures(self) -> None:
        """Every acknowledged activity's future resolves the way the stored result says."""
        client = self.new_client()
        ids = list(self.plans)
        wrong: list[str] = []
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            outcomes = await asyncio.gather(
                *(client.future(i).get_result(timeout=10) for i in chunk), return_exceptions=True
            )
            for activity_id, outcome in zip(chunk, outcomes, strict=True):
                plan = self.plans[activity_id]
                if isinstance(outcome, ResultTimeoutError):
                    wrong.append(f"{activity_id}: future still waiting")
                elif isinstance(outcome, ActivityDeadLetteredError):
                    if plan.status == "completed":
                        wrong.append(f"{activity_id}: dead-lettered ({outcome.reason})")
                elif isinstance(outcome, BaseException):
                    pass  # not found, cancelled...: the audit counts those (lost, AOF window)
                elif (
                    plan.status == "completed"
                    and plan.check_result
                    and outcome != ({"n": plan.n} if plan.result is None else plan.result)
                ):
                    wrong.append(f"{activity_id}: result {outcome!r}")
        if wrong:
            self.problems.append(f"{len(wrong)} futures disagree with the audit: {wrong[:3]}")

    async def report(self) -> ScenarioReport:
        report = await audit(
            AuditInput(
                scenario=self.scenario,
                queue=self.queue,
                queue_redis=self.raw,
                audit_redis=self.audit_raw,
                plans=self.plans,
                ack_times=self.ack_times,
                killed_pids=self.killed_pids,
                log_paths=[w.log_path for w in self.workers],
                redis_crashes=self.redis_crashes,
                aof_window=self.aof_window,
                events=self.events,
                unacked=self.unacked,
                injected=self.injected,
                seconds=time.monotonic() - self.started,
            )
        )
        report.notes = self.notes + report.notes
        report.problems = self.problems + report.problems
        if not report.ok:
            self.keep_logs = True
            report.notes.append(f"worker logs kept in {self.log_dir}")
        return report
