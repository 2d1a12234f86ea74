"""``AckBatcher``: sends the outcomes of finished activities to Redis in pipelined batches.

Acknowledgements carry lease tokens, so a batch may be sent again after a failure without
effect the second time. Redis being away (or restarted) holds a batch back until it answers;
nothing else does: an acknowledgement that cannot be written (its record or error will not
encode, or its script fails) is turned into a dead letter (reason ``corrupt``, with the error)
and the others of its batch go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from redis.exceptions import NoScriptError, ResponseError

from .backoff import Backoff, expected_error
from .metrics import (
    ACTIVITY_COMPLETED,
    ACTIVITY_DEAD_LETTERED,
    ACTIVITY_LEASE_LOST,
    ACTIVITY_RETRY,
    ACTIVITY_THROTTLED,
    MetricsSink,
)
from .metrics import REDIS_ERRORS as REDIS_ERRORS_METRIC
from .outcome import Ack, Complete, DeadLetter, Retry, Throttled, dead_letter
from .store import QueueStore, ScriptCall

__all__ = ["AckBatcher"]

log = logging.getLogger("runnerq.worker")

_COMPLETE_CHUNK = 500
# Error replies that say Redis cannot take writes for now, not that the call is wrong.
_TRANSIENT_REPLIES = (
    "OOM",
    "LOADING",
    "BUSY",
    "READONLY",
    "MASTERDOWN",
    "TRYAGAIN",
    "CLUSTERDOWN",
    "NOREPLICAS",
    "MISCONF",
    "NOSCRIPT",
)

# One answer per acknowledgement: RECORDED, LEASE_GONE or SEND_WITH_HISTORY (a completion).
Parse = Callable[[list[Any]], list[int]]
RECORDED, LEASE_GONE, SEND_WITH_HISTORY = 1, 0, 2


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, ResponseError) and not isinstance(exc, NoScriptError):
        return str(exc).startswith(_TRANSIENT_REPLIES)
    return expected_error(exc)


class AckBatcher:
    """Collects acknowledgements and sends them, a batch per round trip.

    ``held`` is the worker's map of leases it holds: an acknowledged activity leaves it.
    ``on_answer`` is called whenever Redis answered a batch."""

    def __init__(
        self,
        store: QueueStore,
        metrics: MetricsSink,
        held: dict[str, str],
        on_answer: Callable[[], None],
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._held = held
        self._on_answer = on_answer
        self._pending: list[Ack] = []
        self._ready = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._sending = 0  # batches on their way to Redis (the loop's or ``send_along``'s)
        self.closed = False

    # -- taking acknowledgements -------------------------------------------------------

    def add(self, ack: Ack) -> None:
        if self.closed:  # a handler that ignored the stop's cancellation, ending late
            log.warning(
                "activity %s ended after the worker stopped: its outcome (%s) is not recorded;"
                " it runs again when its lease expires",
                ack.activity_id,
                type(ack).__name__.lower(),
            )
            return
        self._pending.append(ack)
        self._idle.clear()
        self._ready.set()

    def close(self) -> None:
        """Take no more; ``run`` ends once what it holds is sent."""
        self.closed = True
        self._ready.set()

    async def drain(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds until everything taken so far was sent."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while self._pending or not self._idle.is_set():
                    self._ready.set()
                    await self._idle.wait()
                    await asyncio.sleep(0)

    # -- sending -----------------------------------------------------------------------

    async def run(self) -> None:
        """Send what comes in until closed and empty."""
        backoff = Backoff()
        while not (self.closed and not self._pending):
            await self._ready.wait()
            self._ready.clear()
            batch, self._pending = self._pending, []
            if not batch:
                self._mark_idle()
                continue
            self._sending += 1
            try:
                await self._send_batch(batch, backoff)
            finally:
                self._sending -= 1
            self._mark_idle()

    async def send_along(self, call: ScriptCall) -> Any:
        """Run ``call`` in the same round trip as the acknowledgements waiting now (the
        dispatcher's claims); returns its reply. On an error the acknowledgements go back to
        the loop, which sends them again."""
        if not self._pending:  # one script call: no pipeline (what an idle worker does)
            return await call.script(keys=call.keys, args=call.args)
        batch, self._pending = self._pending, []
        calls, parse, batch = self._calls(batch)
        self._sending += 1
        try:
            replies = await self._store.run_calls([*calls, call])
        except BaseException:
            self._pending[:0] = batch
            self._ready.set()
            raise
        finally:
            self._sending -= 1
        self._count(batch, parse(replies[:-1]))
        self._mark_idle()
        return replies[-1]

    def _mark_idle(self) -> None:
        if not self._pending and not self._sending:
            self._idle.set()

    async def _send_batch(self, batch: list[Ack], backoff: Backoff) -> None:
        calls, parse, batch = self._calls(batch)
        while True:
            try:
                replies = await self._store.run_calls(calls)
            except NoScriptError:
                continue  # Redis restarted and forgot the scripts: reloaded, send again
            except Exception as exc:
                if not _transient(exc):
                    # One of them is refused (or a bug): send them one by one, so that only
                    # the one at fault is held back.
                    log.error("a batch of %d acknowledgements failed", len(batch), exc_info=exc)
                    for ack in batch:
                        await self._send_one(ack, backoff)
                    return
                self._metrics.inc_counter(REDIS_ERRORS_METRIC)
                await backoff.sleep(f"acknowledging {len(batch)} activities", exc)
                continue
            backoff.reset()
            self._on_answer()
            self._count(batch, parse(replies))
            return

    async def _send_one(self, ack: Ack, backoff: Backoff) -> None:
        """Send one acknowledgement, waiting out Redis errors; one that Redis refuses becomes
        a dead letter, and one whose dead letter is refused too is given up (its lease runs
        out and it is run again)."""
        tries = 0
        while True:
            calls, parse, batch = self._calls([ack])
            try:
                replies = await self._store.run_calls(calls)
            except Exception as exc:
                if _transient(exc):
                    self._metrics.inc_counter(REDIS_ERRORS_METRIC)
                    await backoff.sleep(f"acknowledging activity {ack.activity_id}", exc)
                    continue
                tries += 1
                if tries > 1:
                    log.error(
                        "activity %s: its outcome cannot be recorded (%s: %s): its lease runs"
                        " out and it runs again",
                        ack.activity_id,
                        type(exc).__name__,
                        exc,
                    )
                    self._held.pop(ack.activity_id, None)
                    return
                ack = self._corrupt(ack, exc)
                continue
            backoff.reset()
            self._on_answer()
            self._count(batch, parse(replies))
            return

    @staticmethod
    def _corrupt(ack: Ack, exc: BaseException) -> DeadLetter:
        error = f"its outcome could not be recorded: {type(exc).__name__}: {exc}"
        log.error("activity %s: %s; dead-lettering it", ack.activity_id, error)
        return dead_letter(ack.activity_id, ack.token, error, "corrupt", time.time())

    def _calls(self, batch: list[Ack]) -> tuple[list[ScriptCall], Parse, list[Ack]]:
        """The script calls for a batch, how to read their replies (one flag per ack, in the
        batch's order: True when recorded, False when the lease was gone), and the batch
        they are for: an ack whose call cannot be made is replaced by its dead letter."""
        store = self._store
        completes: list[Complete] = []
        others: list[ScriptCall] = []
        other_acks: list[Ack] = []
        for ack in batch:
            if type(ack) is Complete:
                completes.append(ack)
                continue
            try:
                call = self._call(ack)
            except Exception as exc:
                ack = self._corrupt(ack, exc)
                call = self._call(ack)  # the id, the error and no record: always encodes
            others.append(call)
            other_acks.append(ack)
        calls = [
            store.complete_call(
                [
                    (a.activity_id, a.token, a.document, a.history)
                    for a in completes[i : i + _COMPLETE_CHUNK]
                ]
            )
            for i in range(0, len(completes), _COMPLETE_CHUNK)
        ]
        n_chunks = len(calls)
        calls += others
        # The replies come in this order: completes first.
        ordered: list[Ack] = [*completes, *other_acks]

        def parse(replies: list[Any]) -> list[int]:
            answers: list[int] = []
            for reply in replies[:n_chunks]:
                answers += [int(x) for x in reply]
            answers += [int(bool(int(x))) for x in replies[n_chunks:]]
            return answers

        return calls, parse, ordered

    def _call(self, ack: Ack) -> ScriptCall:
        if type(ack) is Retry:
            return self._store.retry_call(
                ack.activity_id, ack.token, ack.record_json, ack.delay, ack.error, ack.attempt
            )
        if type(ack) is Throttled:
            return self._store.throttle_call(ack.activity_id, ack.token, ack.delay, ack.hold)
        assert type(ack) is DeadLetter
        return self._store.dead_letter_call(ack.activity_id, ack.token, ack.entry)

    def _count(self, batch: list[Ack], results: list[int]) -> None:
        metrics = self._metrics
        held = self._held
        completed = 0
        for ack, answer in zip(batch, results, strict=True):
            if answer == SEND_WITH_HISTORY and type(ack) is Complete:
                # It has a history list the worker did not know of (a release, a reap, a
                # requeue): still leased and untouched; sent again with its history key.
                self._pending.append(replace(ack, history=True))
                self._ready.set()
                continue
            kind = type(ack)
            held.pop(ack.activity_id, None)
            if answer == LEASE_GONE:
                metrics.inc_counter(ACTIVITY_LEASE_LOST)
                log.warning(
                    "activity %s: lease lost before its %s was recorded",
                    ack.activity_id,
                    kind.__name__.lower(),
                )
            elif kind is Complete:
                completed += 1
            elif kind is Retry:
                metrics.inc_counter(ACTIVITY_RETRY)
            elif kind is Throttled:
                metrics.inc_counter(ACTIVITY_THROTTLED)
            else:
                metrics.inc_counter(ACTIVITY_DEAD_LETTERED)
        if completed:
            metrics.inc_counter(ACTIVITY_COMPLETED, completed)
