"""``QueueStore``: one typed method per Redis script, for one queue.

This is the only module that knows the scripts' KEYS/ARGV layout and return codes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from .clock import read_with_clock
from .config import NOTIFY_CAP, QueueSettings
from .history import dead_letter_tail, failed_tail
from .keys import QueueKeys
from .limits import Limits, LimitStats
from .priority import ActivityPriority
from .record import DeadLetterEntry, ResultDocument
from .resp import CommandPrefix, pack_command
from .scripts import Scripts
from .stats import QueueStats
from .transport import REDIS_FAILURES as _REDIS_FAILURES
from .transport import KeptConnection, StreamBroken, raw_transport

__all__ = [
    "CONFIG_FIELDS",
    "Claim",
    "EnqueueItem",
    "QueueStore",
    "ScriptCall",
    "Waiter",
    "enqueue_head",
]

SEQ_SPAN = 2**48
# How long a dead-lettered activity's history is kept, at least (its result's TTL when that
# is longer): dead-letter entries have a cap, not a TTL, and the scripts cannot name the
# history keys of the entries a cap or a purge drops (docs/history.md).
DEAD_HISTORY_MS = 7 * 24 * 3600 * 1000
# Queue configuration fields the engine reads (the operator writes them).
CONFIG_FIELDS = ("paused", "max_retries", "timeout", "limits")


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))


# The head of an activity ready at once, with no idempotency key (see ``enqueue_head``), by
# priority value (an enum member's hash is a Python call).
_READY_NOW = {p.value: f"{p.rank}:0:0:0" for p in ActivityPriority}


@dataclass(slots=True)
class EnqueueItem:
    """One activity to enqueue: its id, its ``enqueue_head`` and its record's JSON."""

    id: str
    head: str
    record_json: str
    idempotency_key: str | None = None


def enqueue_head(
    priority: ActivityPriority,
    delay: float,
    due_at: float | None,
    keyed: bool,
    limit_key: str | None = None,
) -> str:
    """How the enqueue script is to add an activity: "rank:delay:due_at:keyed", and a tab and
    the limit key when it has one. Activities with the same options share it, and a run of
    them goes to the script as one group.

    ``delay`` is in seconds from when Redis runs the script; ``due_at`` (epoch seconds by the
    Redis clock) overrides it; ``keyed`` says the activity has an idempotency key."""
    if due_at is None and not delay and not keyed and limit_key is None:
        return _READY_NOW[priority._value_]
    due_ms = _ms(due_at) if due_at is not None else 0
    head = f"{priority.rank}:{_ms(delay)}:{due_ms}:{int(keyed)}"
    return head if limit_key is None else f"{head}\t{limit_key}"


@dataclass(frozen=True, slots=True)
class ScriptCall:
    """One script invocation, to be sent with others by ``QueueStore.run_calls``."""

    script: AsyncScript
    keys: list[Any]
    args: list[Any]


@dataclass(slots=True)
class Waiter:
    """One worker's wait for work (``QueueStore.wait_then_claim``): its own wake-up list and
    the connection it keeps (None on Cluster)."""

    wake_key: str
    conn: KeptConnection | None = None


@dataclass(frozen=True, slots=True)
class Claim:
    """Activities leased to one worker in one round trip."""

    now: float  # Redis time, epoch seconds
    token: str
    items: list[tuple[str, str]]  # (id, raw record; "" when the record is missing)
    # Claimed ids whose lease expired before (their worker died or hung), and how often.
    redelivered: dict[str, int] = field(default_factory=dict)


class EnqueueInterrupted(Exception):
    """An enqueue of several batches failed part way (the cause is ``__cause__``): ``done``
    holds the parsed replies of the batches known to be in (the first ones, in order),
    ``unknown`` the ids of the batches written after them without a reply read."""

    def __init__(self, done: list[list[tuple[str, bool]]], unknown: list[str]) -> None:
        super().__init__(f"{len(done)} batches in, {len(unknown)} activities unknown")
        self.done = done
        self.unknown = unknown


class QueueStore:
    """Typed access to one queue's keys and scripts."""

    def __init__(self, client: aioredis.Redis, settings: QueueSettings, scripts: Scripts) -> None:
        self.redis = client
        self.settings = settings
        self._claim_history_arg = 1 if settings.claim_history else 0  # (claim.lua's ARGV[4])
        self.keys = QueueKeys(settings.name)
        self.scripts = scripts
        self.is_cluster = isinstance(client, RedisCluster)
        # Raw commands on one connection (the bulk enqueue, the wait for work); not on Cluster.
        self._raw = None if self.is_cluster else raw_transport(client)
        self._result_ttl_ms = _ms(settings.result_ttl)
        k = self.keys
        # Seconds until the limits let more through, by the last claim (0: not limited).
        self.claim_again_in = 0.0
        # The claim's keys: claim.lua's 8 while the queue has no limits, claim_limited.lua's 13
        # once a claim said it needs them (and until one says it no longer does).
        self._claim_keys = [
            k.ready,
            k.inflight,
            k.leases,
            k.jobs,
            k.config,
            k.notify,
            k.seq,
            k.redeliveries,
            k.limit_state,
            k.limited,
            k.kready,
            k.keyof,
            k.kvt,
        ]
        self._claim_plain = self._claim_keys[:8]
        self.claim_limited = False
        k = self.keys
        # What every enqueue call starts with, and (for calls with no idempotency keys, whose
        # keys come next) the same packed once.
        self._enqueue_keys = [k.jobs, k.ready, k.scheduled, k.notify, k.seq, k.stats]
        self._enqueue_keys += [k.kready, k.keyof, k.kvt, k.config]
        self._enqueue_args: list[Any] = [NOTIFY_CAP, _ms(settings.idempotency_ttl)]
        self._enqueue_prefix = CommandPrefix(
            [
                "EVALSHA",
                scripts.enqueue.sha,
                len(self._enqueue_keys),
                *self._enqueue_keys,
                *self._enqueue_args,
            ]
        )

    async def load_scripts(self) -> None:
        await self.scripts.load(self.redis)

    # -- producing ---------------------------------------------------------------------

    async def enqueue(self, items: Sequence[EnqueueItem]) -> list[tuple[str, bool]]:
        """Add activities in one script call; returns (id standing for it, created) each.
        Raises what made it fail (one call: nothing to split)."""
        try:
            return (await self.enqueue_batches([items]))[0]
        except EnqueueInterrupted as exc:
            cause = exc.__cause__
            if cause is None:  # pragma: no cover - always raised from its cause
                raise
        raise cause  # outside the except block: as it was raised, with no added context

    async def enqueue_batches(
        self, batches: Iterable[Sequence[EnqueueItem]]
    ) -> list[list[tuple[str, bool]]]:
        """``enqueue`` for several batches, applied in order and streamed on one connection:
        each call is written as soon as its batch is made (``batches`` may make them lazily),
        so Redis runs one while the client makes the next. One call after the other on
        Cluster, where redis-py sends no raw commands to a node.

        Written in runnerq's own encoding, not through redis-py's command path, which also
        means no automatic resend after a connection error: an enqueue whose reply was lost
        may have been applied, so the error goes to the caller (who can send it again with an
        idempotency key). A connection Redis closed is replaced before the call is written.
        On Cluster too, no resend (``_send_once_on_cluster``)."""
        raw = self._raw
        if raw is None:
            done: list[list[tuple[str, bool]]] = []
            for batch in batches:
                try:
                    done.append(await self._enqueue_by_script(batch))
                except _REDIS_FAILURES as exc:
                    raise EnqueueInterrupted(done, [item.id for item in batch]) from exc
            return done
        try:
            sent, replies = await raw.stream(batches, self._enqueue_command)
        except StreamBroken as broken:
            raise self._interrupted(broken.sent, broken.replies) from broken.__cause__
        lost = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if lost:  # Redis lost its scripts (a restart, SCRIPT FLUSH): those calls did not run
            try:
                await self.load_scripts()
                _, again = await raw.stream([sent[i] for i in lost], self._enqueue_command)
                for reply in again:
                    if isinstance(reply, NoScriptError):
                        raise reply
            except (*_REDIS_FAILURES, StreamBroken) as exc:  # in: what came before the first lost
                cause = exc.__cause__ if isinstance(exc, StreamBroken) else exc
                raise self._interrupted(sent, replies[: lost[0]]) from cause
            for i, reply in zip(lost, again, strict=True):
                replies[i] = reply
        return [self.parse_enqueue(b, r) for b, r in zip(sent, replies, strict=True)]

    def _interrupted(
        self, sent: list[Sequence[EnqueueItem]], replies: list[Any]
    ) -> EnqueueInterrupted:
        """What a broken stream applied for sure (the batches up to the first reply missing or
        not a result, in order), and the ids of the rest it wrote."""
        done: list[list[tuple[str, bool]]] = []
        for batch, reply in zip(sent, replies, strict=False):
            if isinstance(reply, NoScriptError):
                break
            done.append(self.parse_enqueue(batch, reply))
        return EnqueueInterrupted(done, [item.id for batch in sent[len(done) :] for item in batch])

    async def _enqueue_by_script(self, items: Sequence[EnqueueItem]) -> list[tuple[str, bool]]:
        call = self.enqueue_call(items)
        if self.is_cluster:
            return self.parse_enqueue(items, await self._send_once_on_cluster(call))
        return self.parse_enqueue(items, await call.script(keys=call.keys, args=call.args))

    async def _send_once_on_cluster(self, call: ScriptCall) -> Any:
        """``call`` on the node of its keys, sent once. redis-py's cluster client sends a call
        again after a connection error or a timeout (with its retry policy), which would apply
        an enqueue twice if the first one ran; a call given its target node is not retried
        (MOVED and ASK are still followed). A missing script is loaded and the call sent again:
        it did not run. After a failure the client reloads the cluster's layout first."""
        cluster: Any = self.redis
        await cluster.initialize()  # a no-op unless a failure marked the layout stale
        node = cluster.get_node_from_key(call.keys[0])
        command = ("EVALSHA", call.script.sha, len(call.keys), *call.keys, *call.args)
        try:
            return await cluster.execute_command(*command, target_nodes=node)
        except NoScriptError:
            await self.load_scripts()
            return await cluster.execute_command(*command, target_nodes=node)

    def enqueue_call(self, items: Sequence[EnqueueItem]) -> ScriptCall:
        """The enqueue script's call for ``items``."""
        keyed, groups = self._enqueue_groups(items)
        return ScriptCall(
            self.scripts.enqueue, [*self._enqueue_keys, *keyed], [*self._enqueue_args, *groups]
        )

    def _enqueue_command(self, items: Sequence[EnqueueItem]) -> bytes:
        """``enqueue_call`` packed for the wire (EVALSHA)."""
        keyed, groups = self._enqueue_groups(items)
        if not keyed:
            return pack_command(groups, self._enqueue_prefix)
        keys = [*self._enqueue_keys, *keyed]
        sha = self.scripts.enqueue.sha
        return pack_command(["EVALSHA", sha, len(keys), *keys, *self._enqueue_args, *groups])

    def _enqueue_groups(self, items: Sequence[EnqueueItem]) -> tuple[list[str], list[Any]]:
        """The idempotency keys of ``items`` and the script's groups: each run of items with
        the same head is one group (head, count, then id and record of each)."""
        keyed: list[str] = []
        groups: list[Any] = []
        head, count_at, start = "", 0, 0
        for n, item in enumerate(items):
            if item.head != head:
                if n:
                    groups[count_at] = n - start
                head, start = item.head, n
                groups += (head, 0)
                count_at = len(groups) - 1
            groups += (item.id, item.record_json)
            if item.idempotency_key is not None:
                keyed.append(self.keys.idempotency(item.idempotency_key))
        if items:
            groups[count_at] = len(items) - start
        return keyed, groups

    @staticmethod
    def parse_enqueue(items: Sequence[EnqueueItem], raw: Any) -> list[tuple[str, bool]]:
        out = [(item.id, True) for item in items]
        for i in range(1, len(raw), 2):
            out[int(raw[i]) - 1] = (str(raw[i + 1]), False)
        return out

    async def cancel(self, activity_id: str) -> int:
        """0: no unfinished activity with this id; 1 pending, 2 scheduled, 3 running."""
        k = self.keys
        return int(
            await self.scripts.cancel(
                keys=[
                    k.jobs,
                    k.ready,
                    k.scheduled,
                    k.inflight,
                    k.leases,
                    k.stats,
                    k.result(activity_id),
                    k.redeliveries,
                    k.limit_state,
                    k.limited,
                    k.kready,
                    k.keyof,
                    k.progress,
                    k.events(activity_id),
                    k.historied,
                ],
                args=[
                    activity_id,
                    ResultDocument.cancelled_json(),
                    self._result_ttl_ms,
                    k.done_channel,
                    k.cancel_channel,
                ],
            )
        )

    # -- consuming ---------------------------------------------------------------------

    async def claim(self, count: int, lease: float, worker_id: str) -> Claim | None:
        """Lease up to ``count`` ready activities; ``None`` while the queue is paused."""
        while True:
            limited = self.claim_limited
            call = self.claim_call(count, lease, worker_id)
            claim = self.parse_claim([await call.script(keys=call.keys, args=call.args)])
            if self.claim_limited == limited:  # (else: claim again with the other script)
                return claim

    def claim_call(self, count: int, lease: float, worker_id: str) -> ScriptCall:
        """The claim's call: claim_limited.lua with the limits' keys while the queue needs them,
        else claim.lua (a claim with the one a queue does not need claims nothing and says
        so: ``parse_claim``)."""
        args = [count, _ms(lease), worker_id, self._claim_history_arg]
        if self.claim_limited:
            return ScriptCall(self.scripts.claim_limited, self._claim_keys, args)
        return ScriptCall(self.scripts.claim, self._claim_plain, args)

    def waiter(self, worker_id: str) -> Waiter:
        """What ``worker_id`` waits for work with (``wait_then_claim``)."""
        return Waiter(self.keys.wake(worker_id), None if self._raw is None else self._raw.keep())

    async def wait_then_claim(
        self, waiter: Waiter, timeout: float, call: ScriptCall
    ) -> tuple[bool, Claim | None]:
        """Wait up to ``timeout`` seconds for a wake-up token (BLPOP on the queue's notify
        list and the waiter's own), then run ``call`` (a claim), whatever woke it; returns
        whether the token said the schedule changed ('s'), and the claim.

        One round trip: both commands are written at once, so Redis runs the claim as soon as
        the token arrives instead of after a reply and a request have crossed the network.
        They go over a connection the waiter keeps (``close_waiter`` gives it back), so a
        wake-up pays for no pool or pipeline bookkeeping before its activities start. On
        Cluster, where redis-py sends no raw commands to a node, two round trips."""
        wake_keys = [self.keys.notify, waiter.wake_key]
        timeout = self.wait_seconds(timeout)
        popped: Any
        conn = waiter.conn
        if conn is None:  # Cluster
            popped = await self.redis.blpop(wake_keys, timeout=timeout)
            reply = await call.script(keys=call.keys, args=call.args)
        else:
            try:
                popped, reply = await conn.call_pair(
                    ("BLPOP", *wake_keys, timeout),
                    ("EVALSHA", call.script.sha, len(call.keys), *call.keys, *call.args),
                )
            except NoScriptError:  # Redis lost its scripts (restart): the claim did not run
                await self.load_scripts()
                raise
        schedule_changed = bool(popped) and popped[0] == self.keys.notify and popped[1] == "s"
        return schedule_changed, self.parse_claim([reply])

    def wait_seconds(self, timeout: float) -> float:
        """How long a wait for work lasts: ``timeout``, or less when the last claim said that
        a limit lets more through sooner (a rate's next token, a hold's end)."""
        hint = self.claim_again_in
        return timeout if hint <= 0 else max(0.005, min(timeout, hint))

    async def close_waiter(self, waiter: Waiter) -> None:
        """Give the connection ``waiter`` kept for ``wait_then_claim`` back to the pool."""
        if waiter.conn is not None:
            await waiter.conn.release()

    async def wake(self, waiter: Waiter) -> None:
        """End the waiter's ``wait_then_claim`` at once; the token expires if nobody waits."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.lpush(waiter.wake_key, "stop")
            pipe.pexpire(waiter.wake_key, 60_000)
            await pipe.execute()

    def parse_claim(self, replies: list[Any]) -> Claim | None:
        """The ``Claim`` from a claim call's reply (the last of ``replies``); keeps what it
        says about when limits let more through (``wait_seconds``)."""
        raw = replies[-1]
        code = int(raw[0])
        if code == -1:
            return None
        if code == -2:  # limits, a hold or keyed work: claim again, the limited claim
            self.claim_limited = True
            self.claim_again_in = 0.001
            return Claim(0.0, "", [])
        again = raw[2]
        redelivered = {str(again[i]): int(again[i + 1]) for i in range(0, len(again), 2)}
        wait = int(raw[3])
        if wait < 0:  # the queue needs the limited claim no more: claim again, the plain one
            self.claim_limited = False
            wait = 1
        self.claim_again_in = wait / 1000.0
        items = [(str(raw[i]), str(raw[i + 1])) for i in range(4, len(raw), 2)]
        return Claim(int(raw[0]) / 1000.0, str(raw[1]), items, redelivered)

    async def heartbeat(self, lease: float, held: Iterable[tuple[str, str]]) -> list[str]:
        """Extend held leases; returns the ids whose lease is no longer ours."""
        args: list[Any] = [_ms(lease)]
        for activity_id, token in held:
            args += [activity_id, token]
        if len(args) == 1:
            return []
        lost = await self.scripts.heartbeat(keys=[self.keys.inflight, self.keys.leases], args=args)
        return [str(x) for x in lost]

    def complete_call(
        self, items: Sequence[tuple[str, str, str] | tuple[str, str, str, bool]]
    ) -> ScriptCall:
        """A ``complete`` for (id, token, result document[, history]) items, for
        ``run_calls``. ``history`` (True when left out) sends the activity's history key:
        give it for those known to have a history list or progress. Its reply holds 1
        (completed), 0 (the lease was gone) or 2 (it has a history list and its key was not
        sent: nothing done, send it again with ``history``) per item."""
        k = self.keys
        keys = [k.jobs, k.inflight, k.leases, k.stats, k.done, k.redeliveries]
        keys += [k.limit_state, k.limited, k.notify, k.keyof, k.minutes, k.progress, k.historied]
        keys += [k.result(item[0]) for item in items]
        with_history = [n for n, item in enumerate(items, 1) if len(item) < 4 or item[3]]
        keys += [k.events(items[n - 1][0]) for n in with_history]
        args: list[Any] = [
            self._result_ttl_ms,
            self.settings.completed_cap,
            k.done_channel,
            NOTIFY_CAP,
            ",".join(map(str, with_history)),
        ]
        args += [f"{item[0]}|{item[1]}|{item[2]}" for item in items]
        return ScriptCall(self.scripts.complete, keys, args)

    def retry_call(
        self,
        activity_id: str,
        token: str,
        record_json: str,
        delay: float,
        error: str = "",
        attempt: int = 0,
    ) -> ScriptCall:
        """A failed attempt (``attempt``, from 1, with ``error``) back to the schedule."""
        k = self.keys
        return ScriptCall(
            self.scripts.retry,
            [
                k.jobs,
                k.inflight,
                k.leases,
                k.scheduled,
                k.stats,
                k.notify,
                k.limit_state,
                k.limited,
                k.minutes,
                k.progress,
                k.events(activity_id),
                k.historied,
            ],
            [
                activity_id,
                token,
                record_json,
                _ms(delay),
                NOTIFY_CAP,
                failed_tail(attempt, error),
            ],
        )

    def throttle_call(
        self, activity_id: str, token: str, delay: float, hold: str | None
    ) -> ScriptCall:
        """A handler's ``RateLimitedError``: back to the schedule after ``delay`` seconds with
        no retry used, and ``hold`` ("h:<type>", "hk:<limit key>" or None) held back for as
        long."""
        k = self.keys
        return ScriptCall(
            self.scripts.throttle,
            [
                k.inflight,
                k.leases,
                k.scheduled,
                k.stats,
                k.notify,
                k.limit_state,
                k.limited,
                k.config,
                k.kholds,
                k.progress,
                k.events(activity_id),
                k.historied,
            ],
            [activity_id, token, _ms(delay), hold or "", NOTIFY_CAP],
        )

    def dead_letter_call(self, activity_id: str, token: str, entry: DeadLetterEntry) -> ScriptCall:
        k = self.keys
        return ScriptCall(
            self.scripts.dead_letter,
            [
                k.jobs,
                k.inflight,
                k.leases,
                k.dead,
                k.dlq,
                k.stats,
                k.result(activity_id),
                k.seq,
                k.redeliveries,
                k.limit_state,
                k.limited,
                k.notify,
                k.keyof,
                k.minutes,
                k.progress,
                k.events(activity_id),
                k.historied,
            ],
            [
                activity_id,
                token,
                entry.encode(),
                ResultDocument.dead_lettered_json(entry.error, entry.reason),
                self._result_ttl_ms,
                self.settings.dead_letter_cap,
                k.done_channel,
                NOTIFY_CAP,
                dead_letter_tail(
                    None if entry.record is None else entry.record.retry_count + 1,
                    entry.reason,
                    entry.error,
                ),
                max(self._result_ttl_ms, DEAD_HISTORY_MS),
            ],
        )

    async def run_calls(self, calls: Sequence[ScriptCall]) -> list[Any]:
        """Run script calls in one round trip (a pipeline); on Redis Cluster, where redis-py
        refuses scripts in pipelines, concurrently. Raises ``NoScriptError`` after reloading
        the scripts if Redis lost them: the calls are safe to send again."""
        if self.is_cluster:
            return list(await asyncio.gather(*(c.script(keys=c.keys, args=c.args) for c in calls)))
        async with self.redis.pipeline(transaction=False) as pipe:
            for call in calls:
                pipe.evalsha(call.script.sha, len(call.keys), *call.keys, *call.args)
            try:
                return list(await pipe.execute())
            except NoScriptError:
                await self.load_scripts()
                raise

    async def release(self, held: Iterable[tuple[str, str]]) -> int:
        """Hand leases back to the front of their level (graceful shutdown)."""
        k = self.keys
        args: list[Any] = [NOTIFY_CAP]
        history: list[str] = []
        for activity_id, token in held:
            args += [activity_id, token]
            history.append(k.events(activity_id))
        if len(args) == 1:
            return 0
        return int(
            await self.scripts.release(
                keys=[
                    k.inflight,
                    k.leases,
                    k.ready,
                    k.jobs,
                    k.notify,
                    k.stats,
                    k.limit_state,
                    k.limited,
                    k.kready,
                    k.keyof,
                    k.progress,
                    k.historied,
                    *history,
                ],
                args=args,
            )
        )

    async def promote_due(self, limit: int = 1000) -> tuple[int, float | None, float | None]:
        """Move due scheduled activities to ready; returns (moved, seconds to the next due
        activity, seconds to the next schedule tick: 0 when one is due), None for none."""
        k = self.keys
        moved, next_due, next_tick = await self.scripts.promote_due(
            keys=[
                k.scheduled,
                k.ready,
                k.jobs,
                k.seq,
                k.notify,
                k.schedule_next,
                k.kready,
                k.keyof,
                k.kvt,
            ],
            args=[limit, NOTIFY_CAP],
        )
        next_due, next_tick = int(next_due), int(next_tick)
        return (
            int(moved),
            None if next_due < 0 else next_due / 1000.0,
            None if next_tick < 0 else next_tick / 1000.0,
        )

    async def reap(self, limit: int = 1000) -> int:
        """Return activities whose lease expired to the ready set: one call finds them, a
        second (only when there are some) reaps them with their history keys."""
        k = self.keys
        keys = [
            k.inflight,
            k.leases,
            k.ready,
            k.jobs,
            k.notify,
            k.stats,
            k.redeliveries,
            k.limit_state,
            k.limited,
            k.kready,
            k.keyof,
            k.progress,
            k.historied,
        ]
        expired = [str(i) for i in await self.scripts.reap(keys=keys, args=[limit, NOTIFY_CAP])]
        if not expired:
            return 0
        keys += [k.events(i) for i in expired]
        return int(await self.scripts.reap(keys=keys, args=[limit, NOTIFY_CAP, *expired]))

    # -- dead-letter queue -------------------------------------------------------------

    async def dead_letters(self, offset: int = 0, limit: int = 100) -> list[DeadLetterEntry]:
        """Dead-letter entries, oldest first."""
        ids = [str(i) for i in await self.redis.zrange(self.keys.dlq, offset, offset + limit - 1)]
        if not ids:
            return []
        raws = [None if r is None else str(r) for r in await self.redis.hmget(self.keys.dead, ids)]
        return [
            DeadLetterEntry.decode(i, raw)
            for i, raw in zip(ids, raws, strict=True)
            if raw is not None
        ]

    async def requeue(self, activity_id: str) -> bool:
        """Run a dead-lettered activity again with a fresh retry budget."""
        raw = await self.redis.hget(self.keys.dead, activity_id)
        if raw is None:
            return False
        entry = DeadLetterEntry.decode(activity_id, raw)
        if entry.record is None:
            return False
        record = replace(entry.record, retry_count=0, last_error=entry.error, ready_at=time.time())
        k = self.keys
        done = await self.scripts.requeue(
            keys=[
                k.dead,
                k.dlq,
                k.jobs,
                k.ready,
                k.seq,
                k.notify,
                k.stats,
                k.result(activity_id),
                k.redeliveries,
                k.kready,
                k.keyof,
                k.kvt,
                k.config,
                k.events(activity_id),
                k.historied,
            ],
            args=[
                activity_id,
                record.encode(),
                record.priority.rank,
                NOTIFY_CAP,
                record.limit_key or "",
            ],
        )
        return bool(int(done))

    async def purge_dead(self) -> int:
        k = self.keys
        return int(await self.scripts.purge_dead(keys=[k.dead, k.dlq], args=[]))

    # -- reading -----------------------------------------------------------------------

    async def stats(self) -> QueueStats:
        k = self.keys
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zcard(k.ready)
            pipe.zcard(k.inflight)
            pipe.zcard(k.scheduled)
            pipe.zcard(k.dlq)
            pipe.hgetall(k.stats)
            pipe.hget(k.config, "paused")
            for p in ActivityPriority:
                low = p.rank * SEQ_SPAN
                pipe.zcount(k.ready, low, f"({low + SEQ_SPAN}")
            # Activities with a limit key wait in a ready set of their own (docs/limits.md).
            pipe.zcard(k.kready)
            for p in ActivityPriority:
                low = p.rank * SEQ_SPAN
                pipe.zcount(k.kready, low, f"({low + SEQ_SPAN}")
            res = await pipe.execute()
        n = len(ActivityPriority)
        res[0] += res[6 + n]
        res[6 : 6 + n] = [a + b for a, b in zip(res[6 : 6 + n], res[7 + n :], strict=True)]
        del res[6 + n :]
        counters: dict[str, str] = res[4] or {}

        def counter(name: str) -> int:
            try:
                return int(counters.get(name, 0))
            except ValueError:
                return 0

        return QueueStats(
            queue=self.settings.name,
            pending=int(res[0]),
            running=int(res[1]),
            scheduled=int(res[2]),
            dead_letter=int(res[3]),
            completed=counter("completed"),
            failed=counter("failed"),
            retried=counter("retried"),
            cancelled=counter("cancelled"),
            redelivered=counter("redelivered"),
            enqueued=counter("enqueued"),
            throttled=counter("throttled"),
            paused=res[5] in ("1", "true"),
            by_priority={p: int(n) for p, n in zip(ActivityPriority, res[6:], strict=True)},
        )

    # -- history, progress, throughput (docs/history.md) -----------------------------

    async def events(
        self, activity_id: str
    ) -> tuple[list[str], str | None, str | None, str | None, int | None]:
        """The activity's stored events, oldest first; the lease token when its lease is held
        now (it holds the claim's time: the claim event is written to the list when the lease
        ends); its record (for the time it was enqueued) or else its dead-letter entry; its
        result document and when it completed (ms: its score in `done`, else from its
        result's TTL as this client's settings have it), for one completed with no list."""
        k = self.keys

        def fill(pipe: Any) -> None:
            pipe.lrange(k.events(activity_id), 0, -1)
            pipe.hget(k.leases, activity_id)
            pipe.get(k.result(activity_id))
            pipe.zscore(k.done, activity_id)
            pipe.pttl(k.result(activity_id))

        replies, now_ms = await read_with_clock(self.redis, fill, transaction=True)
        raws, token, result, done_at, ttl = replies
        completed_ms = None
        if done_at is not None:
            completed_ms = int(done_at)
        elif result is not None and int(ttl) > 0:
            completed_ms = now_ms - max(0, self._result_ttl_ms - int(ttl))
        return (
            [str(r) for r in raws],
            None if token is None else str(token),
            await self._record_json(activity_id),
            None if result is None else str(result),
            completed_ms,
        )

    async def _record_json(self, activity_id: str) -> str | None:
        """The activity's record as stored, or the one in its dead-letter entry."""
        k = self.keys
        raw = await self.redis.hget(k.jobs, activity_id)
        if raw is not None:
            return str(raw)
        dead = await self.redis.hget(k.dead, activity_id)
        if dead is None:
            return None
        entry = DeadLetterEntry.decode(activity_id, dead)
        return None if entry.record is None else entry.record.encode()

    async def progress(self, activity_id: str) -> tuple[str | None, str | None]:
        """The progress stored for the running attempt, and the last event of the history
        (which holds the last attempt's progress, when it reported any)."""
        k = self.keys
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hget(k.progress, activity_id)
            pipe.lindex(k.events(activity_id), -1)
            live, last = await pipe.execute()
        return (None if live is None else str(live)), (None if last is None else str(last))

    async def report_progress(
        self, activity_id: str, token: str, fraction: str, message: str
    ) -> bool:
        """Store a running activity's progress while ``token`` holds its lease."""
        reply = await self.scripts.progress(
            keys=[self.keys.leases, self.keys.progress],
            args=[activity_id, token, fraction, message],
        )
        return bool(int(reply))

    async def minutes(self) -> tuple[dict[str, str], int]:
        """The per-minute counts and Redis's clock (epoch minute)."""
        replies, now_ms = await read_with_clock(
            self.redis, lambda pipe: pipe.hgetall(self.keys.minutes)
        )
        return {str(a): str(b) for a, b in replies[0].items()}, now_ms // 60_000

    async def get_config(self) -> dict[str, str]:
        raw = await self.redis.hgetall(self.keys.config)
        return {str(k): str(v) for k, v in raw.items()}

    async def set_config(self, values: dict[str, str | int | float | bool | None]) -> None:
        """Write queue configuration (``None`` removes a field) and wake idle workers."""
        unknown = set(values) - set(CONFIG_FIELDS)
        if unknown:
            raise ValueError(f"unknown queue configuration fields: {sorted(unknown)}")
        limits = values.get("limits")
        # Limits are checked before anything is written; none at all are no field.
        if limits is not None and Limits.from_json(str(limits)).empty:
            values = {**values, "limits": None}
        k = self.keys
        async with self.redis.pipeline(transaction=True) as pipe:
            for name, value in values.items():
                if value is None:
                    pipe.hdel(k.config, name)
                elif isinstance(value, bool):
                    pipe.hset(k.config, name, "1" if value else "0")
                else:
                    pipe.hset(k.config, name, str(value))
            if values.get("limits") is not None:
                # The claim looks at limits only while "lim" is set (claim.lua clears it
                # once no limit, hold or limit key applies).
                pipe.hset(k.config, "lim", "1")
            pipe.lpush(k.notify, "1")
            pipe.ltrim(k.notify, 0, NOTIFY_CAP - 1)
            await pipe.execute()

    # -- limits (docs/limits.md) -------------------------------------------------------

    async def get_limits(self) -> Limits:
        """The queue's limits (``Limits()`` when it has none)."""
        raw = await self.redis.hget(self.keys.config, "limits")
        return Limits() if raw is None else Limits.from_json(str(raw))

    async def set_limits(self, limits: Limits | None) -> None:
        """Store the queue's limits (``None`` or ``Limits()``: none); the next claim of every
        worker applies them."""
        if limits is not None and not isinstance(limits, Limits):
            raise TypeError(f"limits must be a Limits or None, not {type(limits).__name__}")
        text = None if limits is None or limits.empty else limits.to_json()
        await self.set_config({"limits": text})

    async def limit_stats(self) -> LimitStats:
        """Throttled counts and slots in use under limits (one read of the limit state), and
        how many pending activities the queue's own limits let start now."""
        k = self.keys

        def fill(pipe: Any) -> None:
            pipe.hgetall(k.limit_state)
            pipe.hget(k.config, "limits")
            pipe.zcard(k.ready)
            pipe.zcard(k.inflight)
            pipe.zcard(k.kready)

        replies, now_ms = await read_with_clock(self.redis, fill, transaction=True)
        state, limits_raw, pending, running, keyed = replies
        limits = Limits() if limits_raw is None else Limits.from_json(str(limits_raw))
        return LimitStats.read(
            {str(a): str(b) for a, b in state.items()},
            limits,
            int(pending) + int(keyed),
            int(running),
            now_ms,
        )
