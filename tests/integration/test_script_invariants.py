"""Property test of the Lua transitions: hypothesis drives random sequences of enqueue,
claim, complete, retry, dead-letter, cancel, reap, release, promote, heartbeat and requeue
against the real scripts on a real redis-server (through ``QueueStore``), keeps a model of
where every activity should be, and after every step checks the invariants:

* every unfinished activity is in exactly one of ready / scheduled / in flight, and has a
  record; finished ones are in none and have their terminal document;
* ``leases`` holds exactly the in-flight activities, with the token the model expects;
* the stats counters add up to what happened; ``done`` and ``dlq`` hold the terminal ones;
* a lease deadline only moves forward while its token holds;
* an acknowledgement with a stale or unknown token changes nothing at all (every key of the
  queue is byte-for-byte the same afterwards);
* claims take the highest priority first and never hand out a token twice.

Leases are either long (60 s: they do not expire during an example) or zero (expired as
soon as they are given), so that reaping is decided without sleeping. The default run takes
well under 30 s; ``RUNNERQ_PROPERTY_EXAMPLES=500`` (``python -m tests.chaos``) runs more.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from runnerq import ActivityClient, ActivityPriority
from runnerq.record import ActivityRecord, DeadLetterEntry, ResultDocument
from runnerq.store import EnqueueItem, enqueue_head

T = TypeVar("T")

EXAMPLES = int(os.environ.get("RUNNERQ_PROPERTY_EXAMPLES", "100"))
LONG, EXPIRED = 60.0, 0.0
LATER = 3600.0


@dataclass
class Activity:
    id: str
    rank: int
    record: str
    state: str = "ready"  # ready | scheduled | inflight | completed | dead | cancelled
    token: str | None = None
    expired: bool = False  # in flight with a lease deadline already passed
    due: bool = False  # scheduled and due now
    stale: list[str] = field(default_factory=list)  # tokens it held before


class QueueScripts(RuleBasedStateMachine):
    redis_url = "redis://127.0.0.1:6379"  # set by the test

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.client = ActivityClient(self.redis_url, f"prop-{uuid.uuid4().hex[:10]}")
        self.store = self.client.store
        self.keys = self.store.keys
        self.acts: dict[str, Activity] = {}
        self.idem: dict[str, str] = {}
        self.counters: Counter[str] = Counter()
        self.tokens_seen: set[str] = set()
        self.deadlines: dict[tuple[str, str], float] = {}
        self.next_id = 0

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.run(self.client.aclose())
        self.loop.close()

    # -- helpers -----------------------------------------------------------------------

    def in_state(self, *states: str) -> list[str]:
        return sorted(i for i, a in self.acts.items() if a.state in states)

    def pick_token(self, data: st.DataObject, act: Activity) -> str:
        """The current token, an old one, or one that never existed."""
        options = [*act.stale, "w9:bogus:1"]
        if act.token is not None:
            options += [act.token, act.token]
        return data.draw(st.sampled_from(options), label="token")

    async def snapshot(self) -> dict[str, bytes | None]:
        raw = self.client.redis
        names = sorted(await raw.keys(f"{self.keys.base}*"))
        return {str(name): await raw.dump(name) for name in names}

    def expect_noop(self, act: Activity, token: str) -> bool:
        return act.state != "inflight" or token != act.token

    async def ack(self, name: str, *args: Any) -> Any:
        """One acknowledgement script (``complete``/``retry``/``dead_letter``) as the worker
        sends it: ``QueueStore.run_calls`` with ``<name>_call(...)``, or, in the store's
        older form, ``<name>_call(pipe, ...)`` on a pipeline."""
        make = getattr(self.store, f"{name}_call")
        run_calls = getattr(self.store, "run_calls", None)
        if run_calls is not None:
            [reply] = await run_calls([make(*args)])
            return reply
        async with self.client.redis.pipeline(transaction=False) as pipe:
            make(pipe, *args)
            [reply] = await pipe.execute()
            return reply

    def lose_lease(self, act: Activity) -> None:
        if act.token is not None:
            act.stale.append(act.token)
        act.token = None
        act.expired = False

    # -- rules -------------------------------------------------------------------------

    @initialize()
    def load(self) -> None:
        self.run(self.store.load_scripts())

    @rule(
        specs=st.lists(
            st.tuples(
                st.sampled_from(list(ActivityPriority)),
                st.booleans(),
                st.sampled_from([None, None, "k1", "k2"]),
            ),
            min_size=1,
            max_size=4,
        ),
    )
    def enqueue(self, specs: list[tuple[ActivityPriority, bool, str | None]]) -> None:
        # One call with a mix of options: several groups (runs of the same head) in one script
        # call, each kind of group (ready, delayed, keyed) next to each other kind.
        items: list[EnqueueItem] = []
        for priority, delayed, idem in specs:
            self.next_id += 1
            activity_id = f"a{self.next_id}"
            record = ActivityRecord(activity_id, "t", {"n": self.next_id}, priority).encode()
            head = enqueue_head(priority, LATER if delayed else 0.0, None, idem is not None)
            items.append(EnqueueItem(activity_id, head, record, idem))
        out = self.run(self.store.enqueue(items))
        for (priority, delayed, idem), item, (got_id, created) in zip(
            specs, items, out, strict=True
        ):
            if idem is not None and idem in self.idem:
                assert (got_id, created) == (self.idem[idem], False)
                continue
            assert (got_id, created) == (item.id, True)
            if idem is not None:
                self.idem[idem] = item.id
            self.acts[item.id] = Activity(
                item.id, priority.rank, item.record_json, "scheduled" if delayed else "ready"
            )
            self.counters["enqueued"] += 1

    @rule(
        count=st.integers(1, 5),
        lease=st.sampled_from([LONG, EXPIRED]),
        worker=st.sampled_from(["w1", "w2"]),
    )
    def claim(self, count: int, lease: float, worker: str) -> None:
        ready_before = self.in_state("ready")
        claim = self.run(self.store.claim(count, lease, worker))
        assert claim is not None
        got = [i for i, _ in claim.items]
        assert len(got) == min(count, len(ready_before))
        assert set(got) <= set(ready_before)
        if got:
            assert claim.token.startswith(f"{worker}:")
            assert claim.token not in self.tokens_seen, "a lease token was handed out twice"
            self.tokens_seen.add(claim.token)
            left = [self.acts[i].rank for i in ready_before if i not in got]
            assert not left or max(self.acts[i].rank for i in got) <= min(left), "priority"
        for activity_id, raw in claim.items:
            act = self.acts[activity_id]
            assert raw == act.record
            act.state, act.token, act.expired = "inflight", claim.token, lease == EXPIRED

    @precondition(lambda self: self.acts)
    @rule(data=st.data(), count=st.integers(1, 3))
    def complete(self, data: st.DataObject, count: int) -> None:
        chosen = data.draw(
            st.lists(st.sampled_from(sorted(self.acts)), min_size=1, max_size=count, unique=True)
        )
        items = [(i, self.pick_token(data, self.acts[i]), '{"status":"completed"}') for i in chosen]
        all_stale = all(self.expect_noop(self.acts[i], t) for i, t, _ in items)
        before = self.run(self.snapshot()) if all_stale else None
        reply = self.run(self.ack("complete", items))
        for (activity_id, token, _), ok in zip(items, reply, strict=True):
            act = self.acts[activity_id]
            assert bool(int(ok)) == (not self.expect_noop(act, token))
            if int(ok):
                self.lose_lease(act)
                act.state = "completed"
                self.counters["completed"] += 1
        if before is not None:
            assert self.run(self.snapshot()) == before, "a stale completion changed something"

    @precondition(lambda self: self.acts)
    @rule(data=st.data(), due=st.booleans())
    def retry(self, data: st.DataObject, due: bool) -> None:
        act = self.acts[data.draw(st.sampled_from(sorted(self.acts)))]
        token = self.pick_token(data, act)
        noop = self.expect_noop(act, token)
        before = self.run(self.snapshot()) if noop else None
        delay = 0.0 if due else LATER
        ok = self.run(self.ack("retry", act.id, token, act.record, delay))
        assert bool(int(ok)) == (not noop)
        if noop:
            assert self.run(self.snapshot()) == before, "a stale retry changed something"
            return
        self.lose_lease(act)
        act.state, act.due = "scheduled", due
        self.counters["failed"] += 1
        self.counters["retried"] += 1

    @precondition(lambda self: self.acts)
    @rule(data=st.data())
    def dead_letter(self, data: st.DataObject) -> None:
        act = self.acts[data.draw(st.sampled_from(sorted(self.acts)))]
        token = self.pick_token(data, act)
        noop = self.expect_noop(act, token)
        before = self.run(self.snapshot()) if noop else None
        entry = DeadLetterEntry(
            act.id, "boom", "failed", 0.0, ActivityRecord.decode(act.record), None
        )
        ok = self.run(self.ack("dead_letter", act.id, token, entry))
        assert bool(int(ok)) == (not noop)
        if noop:
            assert self.run(self.snapshot()) == before, "a stale dead-letter changed something"
            return
        self.lose_lease(act)
        act.state = "dead"
        self.counters["failed"] += 1
        self.counters["dead_lettered"] += 1

    @precondition(lambda self: self.acts)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        act = self.acts[data.draw(st.sampled_from(sorted(self.acts)))]
        code = self.run(self.store.cancel(act.id))
        expected = {"ready": 1, "scheduled": 2, "inflight": 3}.get(act.state, 0)
        assert code == expected
        if code:
            self.lose_lease(act)
            act.state = "cancelled"
            self.counters["cancelled"] += 1

    @rule()
    def reap(self) -> None:
        expired = [a for a in self.acts.values() if a.state == "inflight" and a.expired]
        assert self.run(self.store.reap()) == len(expired)
        for act in expired:
            self.lose_lease(act)
            act.state = "ready"
        self.counters["redelivered"] += len(expired)

    @precondition(lambda self: self.acts)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        chosen = data.draw(
            st.lists(st.sampled_from(sorted(self.acts)), min_size=1, max_size=4, unique=True)
        )
        pairs = [(i, self.pick_token(data, self.acts[i])) for i in chosen]
        valid = [self.acts[i] for i, t in pairs if not self.expect_noop(self.acts[i], t)]
        before = self.run(self.snapshot()) if not valid else None
        assert self.run(self.store.release(pairs)) == len(valid)
        if before is not None:
            assert self.run(self.snapshot()) == before, "a stale release changed something"
        for act in valid:
            self.lose_lease(act)
            act.state = "ready"
        self.counters["released"] += len(valid)

    @rule()
    def promote(self) -> None:
        due = [a for a in self.acts.values() if a.state == "scheduled" and a.due]
        moved, next_due, next_tick = self.run(self.store.promote_due())
        assert next_tick is None  # (no schedules here)
        assert moved == len(due)
        for act in due:
            act.state, act.due = "ready", False
        later = [a for a in self.acts.values() if a.state == "scheduled"]
        assert (next_due is None) == (not later)
        if next_due is not None:
            assert LATER - 600 < next_due <= LATER

    @precondition(lambda self: self.acts)
    @rule(data=st.data(), lease=st.sampled_from([LONG, EXPIRED]))
    def heartbeat(self, data: st.DataObject, lease: float) -> None:
        chosen = data.draw(
            st.lists(st.sampled_from(sorted(self.acts)), min_size=1, max_size=4, unique=True)
        )
        pairs = [(i, self.pick_token(data, self.acts[i])) for i in chosen]
        lost = self.run(self.store.heartbeat(lease, pairs))
        assert sorted(lost) == sorted(i for i, t in pairs if self.expect_noop(self.acts[i], t))
        for activity_id, token in pairs:
            act = self.acts[activity_id]
            if token == act.token and lease == LONG:
                act.expired = False

    @precondition(lambda self: any(a.state == "dead" for a in self.acts.values()))
    @rule(data=st.data())
    def requeue(self, data: st.DataObject) -> None:
        act = self.acts[data.draw(st.sampled_from(self.in_state("dead")))]
        before = time.time()
        assert self.run(self.store.requeue(act.id))
        after = time.time()
        act.state = "ready"
        # The record comes back with a fresh retry budget, the dead-letter error, and ready
        # from the requeue (its queue wait counts from then).
        ready_at = self.run(self._ready_at(act.id))
        assert ready_at is not None and before <= ready_at <= after
        act.record = replace(
            ActivityRecord.decode(act.record), retry_count=0, last_error="boom", ready_at=ready_at
        ).encode()
        self.counters["requeued"] += 1

    async def _ready_at(self, activity_id: str) -> float | None:
        raw: Any = await self.client.redis.hget(self.keys.jobs, activity_id)
        return ActivityRecord.decode(raw).ready_at

    # -- invariants --------------------------------------------------------------------

    @invariant()
    def one_state_each_and_counts_add_up(self) -> None:
        self.run(self._check())

    async def _check(self) -> None:
        k, raw = self.keys, self.client.redis
        async with raw.pipeline(transaction=True) as pipe:
            pipe.zrange(k.ready, 0, -1)
            pipe.zrange(k.scheduled, 0, -1)
            pipe.zrange(k.inflight, 0, -1, withscores=True)
            pipe.hgetall(k.jobs)
            pipe.hgetall(k.leases)
            pipe.hkeys(k.dead)
            pipe.zrange(k.dlq, 0, -1)
            pipe.zrange(k.done, 0, -1)
            pipe.hgetall(k.stats)
            ready, scheduled, inflight, jobs, leases, dead, dlq, done, stats = await pipe.execute()
        ready_s, scheduled_s = set(ready), set(scheduled)
        inflight_d = dict(inflight)
        assert not ready_s & scheduled_s
        assert not ready_s & set(inflight_d)
        assert not scheduled_s & set(inflight_d)
        assert ready_s | scheduled_s | set(inflight_d) == set(jobs), "unfinished without a record"
        assert set(leases) == set(inflight_d), "leases and in-flight disagree"
        assert set(dead) == set(dlq)
        places = {"ready": ready_s, "scheduled": scheduled_s, "inflight": set(inflight_d)}
        terminal = {"completed": set(done), "dead": set(dlq)}
        results = await raw.mget([k.result(i) for i in self.acts]) if self.acts else []
        for act, doc in zip(self.acts.values(), results, strict=True):
            if act.state in places:
                assert act.id in places[act.state], f"{act.id} should be {act.state}"
                assert jobs[act.id] == act.record
                assert doc is None
            else:
                assert act.id not in jobs, f"{act.id} is {act.state} but still has a record"
                assert doc is not None
                status = ResultDocument.decode(doc).status
                assert status == {"dead": "dead_lettered"}.get(act.state, act.state)
                if act.state in terminal:
                    assert act.id in terminal[act.state]
            if act.state == "inflight":
                assert leases[act.id] == act.token
                key = (act.id, str(act.token))
                score = float(inflight_d[act.id])
                assert score >= self.deadlines.get(key, score), "a lease moved backwards"
                self.deadlines[key] = score
        assert set(done) == {a.id for a in self.acts.values() if a.state == "completed"}
        counted = {name: int(v) for name, v in stats.items()}
        for name in ("enqueued", "completed", "failed", "retried", "dead_lettered"):
            assert counted.get(name, 0) == self.counters[name], name
        for name in ("cancelled", "redelivered", "released", "requeued"):
            assert counted.get(name, 0) == self.counters[name], name


def test_scripts_keep_their_invariants(redis_url: str) -> None:
    class OnTheTestServer(QueueScripts):
        pass

    OnTheTestServer.redis_url = redis_url
    run_state_machine_as_test(
        OnTheTestServer,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
