"""Schedules in Redis: ``ScheduleStore`` (add, change, list, suspend, resume, remove, run
now) and ``ScheduleFirer`` (runs the ticks that have come, from any number of processes).

Every firing is one script (``schedule_fire.lua``) that, for each schedule of the batch of
due ones the firer read, compares its stored next tick with the one read, enqueues the
activities of the due ticks and moves it to its next tick, atomically: whoever calls, each
tick yields one activity. The
activity's id is made from the queue, the schedule, its version and the tick, so a call sent
again cannot add a second. Time is Redis's: the firer reads it with the due schedules, and the
script refuses a tick that is not due by Redis's clock.
"""

from __future__ import annotations

import builtins
import hashlib
import logging
import secrets
from dataclasses import dataclass
from typing import Any

from .config import NOTIFY_CAP
from .errors import ConfigurationError, ScheduleConflictError
from .metrics import (
    SCHEDULE_FIRED,
    SCHEDULE_MISSED,
    SCHEDULE_SKIPPED,
    MetricsSink,
    NoopMetrics,
    ScheduleMetricsSink,
)
from .record import ActivityRecord
from .schedule import Plan, Schedule, ScheduleState, plan, validate_schedule_name
from .store import QueueStore, ScriptCall

__all__ = [
    "ScheduleConflictError",
    "ScheduleFirer",
    "ScheduleInfo",
    "ScheduleStore",
    "schedule_activity_id",
]

log = logging.getLogger("runnerq.schedules")

# Due schedules read per round trip; more are fired on the next turn at once.
_DUE_BATCH = 200
# A stored schedule that cannot be read is looked at again after this long (and logged).
_BROKEN_RETRY_MS = 60_000


@dataclass(frozen=True, slots=True)
class ScheduleInfo:
    """A schedule as stored, with its progress. ``schedule`` is None when the stored text
    cannot be read (``error`` says why)."""

    name: str
    schedule: Schedule | None
    state: ScheduleState
    suspended: bool
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "schedule": None if self.schedule is None else self.schedule.to_dict(),
            "suspended": self.suspended,
            **self.state.as_dict(),
            "error": self.error,
        }


def schedule_activity_id(queue: str, name: str, version: str, tick_ms: int) -> str:
    """The id of the activity a schedule's tick enqueues: the same whoever fires it."""
    digest = hashlib.sha256(f"{queue}\0{name}\0{version}\0{tick_ms}".encode()).hexdigest()
    return digest[:32]


def definition_version(definition: str) -> str:
    """A schedule's version: made from its stored definition, so it changes with every change
    of definition, and a firer that has read the definition knows it without reading the
    progress (runnerq before 2026-12 wrote random versions: a firer finds out from the
    script's refusal, and reads the stored one)."""
    return hashlib.sha256(definition.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


class ScheduleStore:
    """One queue's schedules in Redis."""

    def __init__(self, store: QueueStore) -> None:
        self._store = store
        self._redis = store.redis
        self._keys = store.keys
        self._scripts = store.scripts

    async def redis_time(self) -> float:
        seconds, micros = await self._redis.time()
        return int(seconds) + int(micros) / 1e6

    async def upsert(self, schedule: Schedule, *, take_over: bool = False) -> bool:
        """Add ``schedule``, or change the one of that name; False when the stored one is the
        same (its progress, and a suspension made since, are kept). Raises
        ``ScheduleConflictError`` when another owner has that name, unless ``take_over``."""
        k = self._keys
        first = schedule.trigger.next_after(await self.redis_time())
        definition = schedule.to_json()
        reply = await self._scripts.schedule_upsert(
            keys=[k.schedules, k.schedule_next, k.schedule_state(schedule.name), k.notify],
            args=[
                schedule.name,
                definition,
                schedule.owner,
                _ms(first),
                int(schedule.suspended),
                definition_version(definition),
                int(take_over),
                NOTIFY_CAP,
            ],
        )
        if int(reply[0]) == 0:
            raise ScheduleConflictError(schedule.name, str(reply[1]))
        return int(reply[0]) == 1

    async def remove(self, name: str, *, owner: str | None = None) -> bool:
        """Remove a schedule (the activities it enqueued stay); False when there is none.
        With ``owner``, only that owner's (``ScheduleConflictError`` otherwise)."""
        k = self._keys
        reply = await self._scripts.schedule_remove(
            keys=[k.schedules, k.schedule_next, k.schedule_state(name)], args=[name, owner or ""]
        )
        if int(reply[0]) == -1:
            raise ScheduleConflictError(name, str(reply[1]))
        return int(reply[0]) == 1

    async def suspend(self, name: str, *, owner: str | None = None) -> bool:
        """Stop it firing; False when there is no such schedule. With ``owner``, only that
        owner's (``ScheduleConflictError`` otherwise)."""
        return await self._set_suspended(name, True, owner)

    async def resume(self, name: str, *, owner: str | None = None) -> bool:
        """Fire again from the first tick after now (ticks missed while suspended are not
        run); False when there is no such schedule. ``owner`` as for ``suspend``."""
        return await self._set_suspended(name, False, owner)

    async def _set_suspended(self, name: str, suspended: bool, owner: str | None) -> bool:
        info = await self.get(name)
        if info is None:
            return False
        next_ms = -1
        if not suspended:
            if info.schedule is None:
                raise ConfigurationError(f"schedule {name!r} cannot be read: {info.error}")
            next_ms = _ms(info.schedule.trigger.next_after(await self.redis_time()))
        k = self._keys
        reply = await self._scripts.schedule_suspend(
            keys=[k.schedules, k.schedule_next, k.schedule_state(name), k.notify],
            args=[name, int(suspended), next_ms, NOTIFY_CAP, owner or ""],
        )
        if int(reply[0]) == -1:
            raise ScheduleConflictError(name, str(reply[1]))
        return int(reply[0]) == 1

    async def get(self, name: str) -> ScheduleInfo | None:
        validate_schedule_name(name)
        raw = await self._redis.hget(self._keys.schedules, name)
        if raw is None:
            return None
        state = await self._redis.hgetall(self._keys.schedule_state(name))
        return _info(name, str(raw), {str(f): str(v) for f, v in state.items()})

    async def list(self) -> builtins.list[ScheduleInfo]:
        """Every schedule of the queue, by name."""
        k = self._keys
        stored = await self._redis.hgetall(k.schedules)
        names = sorted(str(name) for name in stored)
        if not names:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hgetall(k.schedule_state(name))
            states = await pipe.execute()
        return [_info(n, str(stored[n]), s) for n, s in zip(names, states, strict=True)]

    async def trigger(self, name: str) -> str:
        """Run the schedule's activity now, outside its ticks (its next tick stays); returns
        the activity's id. Its concurrency policy does not apply: you asked for it."""
        info = await self.get(name)
        if info is None:
            raise ConfigurationError(f"no schedule named {name!r} on queue {self._keys.queue!r}")
        if info.schedule is None:
            raise ConfigurationError(f"schedule {name!r} cannot be read: {info.error}")
        now = await self.redis_time()
        # Each run by hand is a run of its own: its id is random (one derived from the clock
        # was the same for two runs in one millisecond, and the second enqueued nothing).
        activity_id = secrets.token_hex(16)
        block = self.fire_block(
            info.schedule, info.state.version, None, Plan((now,), 0, 0.0), [activity_id]
        )
        call = self.fire_call([block])
        reply = await call.script(keys=call.keys, args=call.args)
        if int(reply[0][0]) != 1:  # changed meanwhile, or Redis's clock went back: once more
            return await self.trigger(name)
        return activity_id

    def fire_block(
        self,
        schedule: Schedule,
        version: str,
        expected_ms: int | None,
        firing: Plan,
        ids: builtins.list[str] | None = None,
    ) -> FireBlock:
        """One schedule's part of a ``fire_call``, running ``firing`` (``expected_ms`` None:
        a run outside the ticks)."""
        # Replace cancelled the previous run before this call; a run outside the ticks was
        # asked for: neither is held back by the previous run.
        concurrency = schedule.concurrency
        if concurrency == "replace" or expected_ms is None:
            concurrency = "allow"
        name = schedule.name
        args: builtins.list[Any] = [
            name,
            "now" if expected_ms is None else expected_ms,
            _ms(firing.next_tick),
            concurrency,
            firing.missed,
            schedule.priority.rank,
            version,
            len(firing.ticks),
        ]
        queue = self._keys.queue
        for i, tick in enumerate(firing.ticks):
            tick_ms = _ms(tick)
            activity_id = ids[i] if ids else schedule_activity_id(queue, name, version, tick_ms)
            args += [tick_ms, activity_id, _record(schedule, activity_id, tick)]
        return FireBlock(self._keys.schedule_state(name), args)

    def fire_call(self, blocks: builtins.list[FireBlock]) -> ScriptCall:
        """One script call firing every block (one reply each, in order: see
        ``schedule_fire.lua``)."""
        k = self._keys
        keys = [k.jobs, k.ready, k.notify, k.seq, k.stats, k.schedule_next]
        args: builtins.list[Any] = [NOTIFY_CAP]
        for block in blocks:
            keys.append(block.state_key)
            args += block.args
        return ScriptCall(self._scripts.schedule_fire, keys, args)


@dataclass(frozen=True, slots=True)
class FireBlock:
    """One schedule's part of a firing: its progress key and its arguments."""

    state_key: str
    args: list[Any]


def _record(schedule: Schedule, activity_id: str, tick: float) -> str:
    metadata = {**schedule.metadata, "runnerq_schedule": schedule.name, "runnerq_tick": tick}
    return ActivityRecord(
        id=activity_id,
        activity_type=schedule.activity_type,
        payload=schedule.payload,
        priority=schedule.priority,
        max_retries=schedule.max_retries,
        timeout=schedule.timeout,
        metadata=metadata,
        created_at=tick,
    ).encode()


def _named(counts: list[tuple[str, int]], shown: int = 10) -> str:
    """'a (2), b (1) and 3 more schedules'"""
    text = ", ".join(f"{name} ({n})" for name, n in counts[:shown])
    more = len(counts) - shown
    return text + (f" and {more} more schedule(s)" if more > 0 else "")


def _info(name: str, raw: str, state: dict[str, str]) -> ScheduleInfo:
    progress = ScheduleState.from_hash(state)
    suspended = state.get("suspended") == "1"
    try:
        return ScheduleInfo(name, Schedule.from_json(raw), progress, suspended)
    except ConfigurationError as exc:
        return ScheduleInfo(name, None, progress, suspended, str(exc))


class ScheduleFirer:
    """Fires one queue's due schedules. Workers' schedulers and the operator each run one;
    any number may run at once."""

    def __init__(self, store: QueueStore, metrics: MetricsSink | None = None) -> None:
        self._store = store
        self.schedules = ScheduleStore(store)
        self._metrics = metrics or NoopMetrics()
        self._per_schedule = (
            self._metrics if isinstance(self._metrics, ScheduleMetricsSink) else None
        )
        # name -> (its stored JSON, parsed): as many entries as the queue has schedules
        self._parsed: dict[str, tuple[str, Schedule | ConfigurationError]] = {}
        # name -> the version of its definition (made from it; read from its progress when
        # the script refused that one: see definition_version)
        self._versions: dict[str, str] = {}
        self._read_version: set[str] = set()  # names whose version is to be read
        self._broken_logged: set[str | tuple[str, str]] = set()

    async def fire_due(self) -> float | None:
        """Fire every schedule whose tick has come; returns the seconds until the next tick
        (0 when more are due at once), or None when the queue has no active schedule."""
        scripts = self._store.scripts
        k = self._store.keys
        reply = await scripts.schedule_due(keys=[k.schedules, k.schedule_next], args=[_DUE_BATCH])
        now_ms, later_ms = int(reply[0]), int(reply[1])
        now = now_ms / 1000.0
        due = []  # (name, its stored next tick, its stored JSON, parsed or None)
        for i in range(2, len(reply), 3):
            name, raw = str(reply[i]), str(reply[i + 2])
            due.append((name, int(reply[i + 1]), raw, self._parse(name, raw)))
        if not due:
            return None if later_ms < 0 else later_ms / 1000.0
        versions = self._versions
        # Progress is read for "replace" (the previous run, to cancel) and where the version
        # made from the definition was refused (written by an older runnerq): nothing else
        # needs it.
        wanted = [
            name
            for name, _, _, schedule in due
            if schedule is not None
            and (name in self._read_version or schedule.concurrency == "replace")
        ]
        progress = await self._progress(wanted) if wanted else {}
        for name, (version, _) in progress.items():
            versions[name] = version
            self._read_version.discard(name)
        blocks: builtins.list[FireBlock] = []
        fired: builtins.list[tuple[int, str, Plan]] = []  # (index in blocks, name, firing)
        for name, stored_ms, raw, schedule in due:
            if schedule is not None and name not in versions:
                versions[name] = definition_version(raw)
            if schedule is not None and not versions[name]:
                self._unversioned(name)
                schedule = None
            if schedule is None:
                blocks.append(self._skip_broken(name, stored_ms, now_ms))
                continue
            firing = plan(schedule, stored_ms / 1000.0, now)
            if schedule.concurrency == "replace" and firing.ticks:
                last_id = progress[name][1]
                if last_id:
                    await self._store.cancel(last_id)  # then the tick runs (see schedule.py)
            fired.append((len(blocks), name, firing))
            blocks.append(self.schedules.fire_block(schedule, versions[name], stored_ms, firing))
        call = self.schedules.fire_call(blocks)
        replies = await call.script(keys=call.keys, args=call.args)
        missed: builtins.list[tuple[str, int]] = []
        skipped: builtins.list[tuple[str, int]] = []
        again = len(due) >= _DUE_BATCH  # more were due than read: at once
        for index, name, firing in fired:
            result = replies[index]
            status = int(result[0])
            if status == 1:
                self._count(name, firing, int(result[2]), missed, skipped)
            elif status == -2:  # not the stored version
                versions.pop(name, None)
                if name not in progress:  # (one not read just now: read it, at once)
                    self._read_version.add(name)
                    again = True
        self._log_batch(missed, skipped)
        if again:
            return 0.0
        nexts = [firing.next_tick - now for _, _, firing in fired]
        if later_ms >= 0:
            nexts.append(later_ms / 1000.0)
        return max(0.0, min(nexts)) if nexts else None

    async def _progress(self, names: list[str]) -> dict[str, tuple[str, str | None]]:
        """name -> (version, last activity id), in one round trip."""
        k = self._store.keys
        async with self._store.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hmget(k.schedule_state(name), ["version", "last_activity_id"])
            replies = await pipe.execute()
        return {
            name: (str(v or ""), None if last is None else str(last))
            for name, (v, last) in zip(names, replies, strict=True)
        }

    def _count(
        self,
        name: str,
        firing: Plan,
        skipped: int,
        missed_by: builtins.list[tuple[str, int]],
        skipped_by: builtins.list[tuple[str, int]],
    ) -> None:
        fired = len(firing.ticks) - skipped
        if fired:
            self._inc(SCHEDULE_FIRED, name, fired)
        if skipped:
            self._inc(SCHEDULE_SKIPPED, name, skipped)
            skipped_by.append((name, skipped))
        if firing.missed:
            self._inc(SCHEDULE_MISSED, name, firing.missed)
            missed_by.append((name, firing.missed))

    def _inc(self, counter: str, schedule: str, value: int) -> None:
        self._metrics.inc_counter(counter, value)
        if self._per_schedule is not None:
            self._per_schedule.inc_schedule_counter(counter, schedule, value)

    def _log_batch(
        self, missed: builtins.list[tuple[str, int]], skipped: builtins.list[tuple[str, int]]
    ) -> None:
        """One line per firing for each kind (a worker starting after every firer was down
        may find thousands of schedules with missed ticks: one line each drowned the log and
        cost more than the firing)."""
        queue = self._store.keys.queue
        if missed:
            log.warning(
                "queue %s: %s tick(s) missed (nothing was firing, or past the starting"
                " deadline) by %s",
                queue,
                sum(n for _, n in missed),
                _named(missed),
            )
        if skipped:
            log.info(
                "queue %s: %s tick(s) skipped, the previous run not done (concurrency"
                " forbid) by %s",
                queue,
                sum(n for _, n in skipped),
                _named(skipped),
            )

    def _parse(self, name: str, raw: str) -> Schedule | None:
        cached = self._parsed.get(name)
        if cached is not None and cached[0] == raw:
            parsed = cached[1]
        else:
            try:
                parsed = Schedule.from_json(raw) if raw else ConfigurationError("it is empty")
            except ConfigurationError as exc:
                parsed = exc
            self._parsed[name] = (raw, parsed)
            self._versions.pop(name, None)  # a new definition: a new version
        if isinstance(parsed, ConfigurationError):
            if raw not in self._broken_logged:
                self._broken_logged.add(raw)
                log.error(
                    "schedule %s on queue %s cannot be read (%s): not fired; fix or remove it",
                    name,
                    self._store.keys.queue,
                    parsed,
                )
            return None
        if parsed.name != name:
            log.error("schedule %s is stored under the name %s: not fired", parsed.name, name)
            return None
        return parsed

    def _unversioned(self, name: str) -> None:
        """A schedule whose progress has no version (not written by runnerq: the ids of its
        ticks cannot be made) is not fired; said once."""
        self._versions.pop(name, None)  # (read again next time: it may have been fixed)
        if ("version", name) not in self._broken_logged:
            self._broken_logged.add(("version", name))
            log.error(
                "schedule %s on queue %s has no version in its progress (%s): not fired;"
                " remove it and add it again",
                name,
                self._store.keys.queue,
                self._store.keys.schedule_state(name),
            )

    def _skip_broken(self, name: str, stored_ms: int, now_ms: int) -> FireBlock:
        """Move an unreadable schedule a minute on (so that it does not keep its firers
        busy), firing nothing; it stays in Redis for people to fix."""
        args = [name, stored_ms, now_ms + _BROKEN_RETRY_MS, "allow", 0, 2, "*", 0]
        return FireBlock(self._store.keys.schedule_state(name), args)
