"""The audit at the end of every chaos scenario.

Handlers record each execution on a separate audit Redis that no fault touches (see
``app.py``): activity id -> ``pid:attempt:start_ms;...`` and the same for executions that ran
to their end. The audit joins that with what the queue's Redis says (result documents,
``done`` completion times, ``jobs``, the stats counters), the terminal events published on the
done channel, the worker pids the scenario SIGKILLed, and the lease losses the workers logged,
and sorts every acknowledged activity into one outcome.

Times: the audit Redis and the queue's Redis run on the same host, so their ``TIME`` agree,
and an execution that *started* after the completion was recorded is a duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from runnerq.keys import QueueKeys
from runnerq.record import ResultDocument

__all__ = [
    "AUDIT_SCRIPT",
    "ActivityPlan",
    "AuditInput",
    "AuditKeys",
    "Execution",
    "ScenarioReport",
    "TerminalEvents",
    "audit",
    "audit_keys",
    "lease_losses_in_logs",
    "read_hash",
]

# KEYS[1] executions HASH id -> "pid:attempt:ms;..."; KEYS[2] skew HASH pid -> wall - Redis ms
# ARGV: id, "pid:attempt", the worker's wall clock (ms), pid
_RECORD = """
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local prev = redis.call('HGET', KEYS[1], ARGV[1]) or ''
redis.call('HSET', KEYS[1], ARGV[1], prev .. ARGV[2] .. ':' .. ms .. ';')
redis.call('HSET', KEYS[2], ARGV[4], tonumber(ARGV[3]) - ms)
return ms
"""
AUDIT_SCRIPT = _RECORD


@dataclass(frozen=True, slots=True)
class AuditKeys:
    execs: str
    finishes: str
    skew: str


def audit_keys(queue: str) -> AuditKeys:
    base = f"chaos:{{{queue}}}:"
    return AuditKeys(base + "execs", base + "finishes", base + "skew")


@dataclass(frozen=True, slots=True)
class Execution:
    pid: int
    attempt: int
    start_ms: int
    finished: bool = False


def _parse(raw: str | None) -> list[tuple[int, int, int]]:
    out: list[tuple[int, int, int]] = []
    for part in (raw or "").split(";"):
        if part:
            pid, attempt, ms = part.split(":")
            out.append((int(pid), int(attempt), int(ms)))
    return out


def executions(execs_raw: str | None, finishes_raw: str | None) -> list[Execution]:
    """Executions in start order; the first k executions of a (pid, attempt) that logged k
    finishes are the finished ones."""
    finishes = Counter((pid, attempt) for pid, attempt, _ in _parse(finishes_raw))
    out: list[Execution] = []
    for pid, attempt, ms in sorted(_parse(execs_raw), key=lambda e: e[2]):
        done = finishes[(pid, attempt)] > 0
        if done:
            finishes[(pid, attempt)] -= 1
        out.append(Execution(pid, attempt, ms, done))
    return out


_LEASE_LOST = [
    re.compile(r"lease of activity (\S+) lost: stopping its handler"),
    re.compile(r"activity (\S+): lease lost before its \w+ was recorded"),
]


def lease_losses_in_logs(paths: Iterable[Path]) -> set[str]:
    """Activity ids whose lease a worker said it lost (its handler stopped, or its ack was
    refused because the activity had been re-delivered)."""
    ids: set[str] = set()
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            text = path.read_text(errors="replace")
            for pattern in _LEASE_LOST:
                ids.update(pattern.findall(text))
    return ids


class TerminalEvents:
    """Counts the ids published on a queue's done channel (one per terminal transition)."""

    def __init__(self, redis_url: str, queue: str) -> None:
        self._redis = aioredis.Redis.from_url(redis_url, decode_responses=True)
        self._channel = QueueKeys(queue).done_channel
        self.counts: Counter[str] = Counter()
        self.interrupted = False  # the subscription dropped: counts are a lower bound
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def start(self) -> TerminalEvents:
        self._task = asyncio.create_task(self._listen())
        async with asyncio.timeout(10):
            await self._ready.wait()
        return self

    async def _listen(self) -> None:
        pubsub = self._redis.pubsub()
        try:
            await pubsub.subscribe(self._channel)
            self._ready.set()
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
                if message is not None and message.get("type") == "message":
                    self.counts[str(message["data"])] += 1
        except Exception:
            self.interrupted = True
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(pubsub.aclose())

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._redis.aclose()


@dataclass(frozen=True, slots=True)
class ActivityPlan:
    """What should become of one acknowledged activity."""

    n: int
    status: str = "completed"  # completed | dead_lettered | any
    reason: str | None = None  # dead-letter reason expected
    result: Any = None  # the expected result, when checked
    check_result: bool = True
    attempts: int = 1  # planned attempts (retries are planned, not re-runs)


@dataclass
class AuditInput:
    scenario: str
    queue: str
    queue_redis: aioredis.Redis
    audit_redis: aioredis.Redis
    plans: dict[str, ActivityPlan]  # acknowledged activity id -> plan
    ack_times: dict[str, float]  # id -> monotonic time its enqueue returned
    killed_pids: set[int] = field(default_factory=set)
    log_paths: Sequence[Path] = ()
    redis_crashes: list[float] = field(default_factory=list)  # monotonic times of SIGKILLs
    aof_window: float = 0.0  # seconds before a crash within which acknowledged writes may go
    events: TerminalEvents | None = None
    unacked: int = 0  # enqueue calls that raised (their activities may or may not exist)
    injected: int = 0  # activities written straight into the keys (not via enqueue)
    seconds: float = 0.0


@dataclass
class ScenarioReport:
    scenario: str
    activities: int = 0
    completed_once: int = 0
    rerun: int = 0
    dead_lettered: int = 0
    cancelled: int = 0
    lost: int = 0
    aof_lost: int = 0
    duplicates: int = 0
    unexplained_reruns: int = 0
    wrong_outcome: int = 0
    executions: int = 0
    unacked_applied: int = 0
    seconds: float = 0.0
    rerun_reasons: Counter[str] = field(default_factory=Counter)
    dead_reasons: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    examples: dict[str, list[str]] = field(default_factory=dict)
    stats: dict[str, int] = field(default_factory=dict)

    def example(self, kind: str, activity_id: str, detail: str = "") -> None:
        items = self.examples.setdefault(kind, [])
        if len(items) < 5:
            items.append(f"{activity_id} {detail}".strip())

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        lines = [
            f"{self.scenario}: {self.activities} activities, {self.completed_once} completed once,"
            f" {self.rerun} re-run ({dict(self.rerun_reasons)}), {self.dead_lettered}"
            f" dead-lettered ({dict(self.dead_reasons)}), {self.lost} lost,"
            f" {self.aof_lost} lost in the AOF window, {self.duplicates} duplicates,"
            f" {self.unexplained_reruns} unexplained re-runs, {self.wrong_outcome} wrong outcomes",
        ]
        lines += [f"  note: {n}" for n in self.notes]
        lines += [f"  PROBLEM: {p}" for p in self.problems]
        lines += [f"  e.g. {k}: {v}" for k, v in self.examples.items()]
        return "\n".join(lines)


async def read_hash(redis: aioredis.Redis, key: str) -> dict[str, str]:
    raw = await redis.hgetall(key)
    return {str(k): str(v) for k, v in raw.items()}


async def _pipelined(redis: aioredis.Redis, calls: list[tuple[str, ...]]) -> list[Any]:
    out: list[Any] = []
    for start in range(0, len(calls), 1000):
        async with redis.pipeline(transaction=False) as pipe:
            for call in calls[start : start + 1000]:
                pipe.execute_command(*call)
            out += await pipe.execute()
    return out


async def audit(inp: AuditInput) -> ScenarioReport:
    """Sort every acknowledged activity into one outcome and check the counters."""
    report = ScenarioReport(inp.scenario, activities=len(inp.plans), seconds=inp.seconds)
    keys = QueueKeys(inp.queue)
    akeys = audit_keys(inp.queue)
    ids = list(inp.plans)
    queue_calls: list[tuple[str, ...]] = []
    for activity_id in ids:
        queue_calls += [
            ("GET", keys.result(activity_id)),
            ("HEXISTS", keys.jobs, activity_id),
            ("ZSCORE", keys.done, activity_id),
        ]
    replies = await _pipelined(inp.queue_redis, queue_calls)
    all_execs = await read_hash(inp.audit_redis, akeys.execs)
    all_fins = await read_hash(inp.audit_redis, akeys.finishes)
    lease_lost = lease_losses_in_logs(inp.log_paths)

    for i, activity_id in enumerate(ids):
        plan = inp.plans[activity_id]
        raw_doc, pending, done_score = replies[3 * i : 3 * i + 3]
        runs = executions(all_execs.get(activity_id), all_fins.get(activity_id))
        report.executions += len(runs)
        if raw_doc is None:
            if int(pending):
                report.lost += 1
                report.example("stuck (never finished)", activity_id, f"executions={runs}")
                continue
            acked = inp.ack_times.get(activity_id, 0.0)
            if any(0 <= crash - acked <= inp.aof_window for crash in inp.redis_crashes):
                report.aof_lost += 1
                report.example("lost in the AOF window", activity_id)
            else:
                report.lost += 1
                report.example("lost (vanished)", activity_id, f"executions={runs}")
            continue
        doc = ResultDocument.decode(raw_doc)
        if doc.status == "completed":
            expected = {"n": plan.n} if plan.result is None else plan.result
            if plan.check_result and doc.result != expected:
                report.wrong_outcome += 1
                report.example("wrong result", activity_id, f"{doc.result!r} != {expected!r}")
        elif doc.status == "dead_lettered":
            report.dead_lettered += 1
            report.dead_reasons[doc.reason or "?"] += 1
        else:
            report.cancelled += 1
        if plan.status != "any" and (
            doc.status != plan.status or (plan.reason is not None and doc.reason != plan.reason)
        ):
            report.wrong_outcome += 1
            report.example(
                "unexpected outcome",
                activity_id,
                f"{doc.status}/{doc.reason} (planned {plan.status}/{plan.reason}): {doc.error}",
            )

        # Executions after the completion was recorded: duplicates.
        if done_score is not None:
            late = [r for r in runs if r.start_ms > float(done_score)]
            if late:
                report.duplicates += 1
                report.example("ran after its completion was recorded", activity_id, f"{late}")

        # More than one execution of the same attempt: a re-delivery. Each needs a cause.
        reasons: list[str] = []
        by_attempt: dict[int, list[Execution]] = {}
        for run in runs:
            by_attempt.setdefault(run.attempt, []).append(run)
        for group in by_attempt.values():
            for previous in group[:-1]:
                if previous.pid in inp.killed_pids:
                    reasons.append("worker killed")
                elif not previous.finished:
                    reasons.append("attempt interrupted")
                elif activity_id in lease_lost:
                    reasons.append("lease lost")
                elif inp.redis_crashes:
                    reasons.append("completion lost in Redis crash")
                else:
                    reasons.append("unexplained")
        if reasons:
            report.rerun += 1
            report.rerun_reasons.update(reasons)
            if "unexplained" in reasons:
                report.unexplained_reruns += 1
                report.example("unexplained re-run", activity_id, f"{runs}")
        elif doc.status == "completed" and len(runs) == plan.attempts:
            report.completed_once += 1

    # Counters: a completion recorded twice would count twice but add one `done` member.
    stats_raw = await read_hash(inp.queue_redis, keys.stats)
    stats = {k: int(v) for k, v in stats_raw.items()}
    report.stats = stats
    done_count = int(await inp.queue_redis.zcard(keys.done))
    dlq_count = int(await inp.queue_redis.zcard(keys.dlq))
    if stats.get("completed", 0) != done_count:
        report.duplicates += abs(stats.get("completed", 0) - done_count)
        report.problems.append(
            f"stats completed={stats.get('completed', 0)} but `done` holds {done_count}"
        )
    if stats.get("dead_lettered", 0) != dlq_count:
        report.problems.append(
            f"stats dead_lettered={stats.get('dead_lettered', 0)} but `dlq` holds {dlq_count}"
        )
    created = len(inp.plans) + inp.injected
    enqueued = len(inp.plans) - inp.injected - report.aof_lost
    report.unacked_applied = stats.get("enqueued", 0) - enqueued
    if report.unacked_applied < 0 or report.unacked_applied > inp.unacked:
        report.problems.append(
            f"stats enqueued={stats.get('enqueued', 0)} for {created} acknowledged activities"
            f" (+{inp.unacked} unacknowledged, {report.aof_lost} lost in the AOF window)"
        )
    for name in ("ready", "scheduled", "inflight"):
        left = int(await inp.queue_redis.zcard(getattr(keys, name)))
        if left:
            report.problems.append(f"{left} activities left in `{name}` at the end")
    if inp.events is not None:
        doubles = [i for i, n in inp.events.counts.items() if n > 1]
        if doubles:
            report.duplicates += len(doubles)
            report.problems.append(f"{len(doubles)} activities announced terminal twice")
            for activity_id in doubles[:5]:
                report.example("terminal twice", activity_id)
        if not inp.events.interrupted:
            missing = [
                i
                for n, i in enumerate(ids)
                if inp.events.counts[i] == 0 and replies[3 * n] is not None
            ]
            if missing:
                report.notes.append(f"{len(missing)} terminal activities never announced")

    if report.lost:
        report.problems.append(f"{report.lost} acknowledged activities lost or stuck")
    if report.duplicates:
        report.problems.append(f"{report.duplicates} duplicates after a recorded completion")
    if report.unexplained_reruns:
        report.problems.append(f"{report.unexplained_reruns} re-runs without a crash or lost lease")
    if report.wrong_outcome:
        report.problems.append(f"{report.wrong_outcome} activities with the wrong outcome")
    return report
