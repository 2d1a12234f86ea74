"""``Backoff``: Redis errors are waited out with a warning; anything else is logged with its
traceback (a bug must not hide behind a retry), and the pauses double up to a cap."""

from __future__ import annotations

import asyncio
import logging

import pytest
import redis.exceptions as rexc

from runnerq.backoff import MAX_BACKOFF, Backoff, expected_error


def test_what_is_expected() -> None:
    assert expected_error(rexc.ConnectionError("gone"))
    assert expected_error(rexc.NoScriptError("NOSCRIPT"))
    assert expected_error(TimeoutError())
    assert expected_error(OSError("reset"))
    assert not expected_error(ValueError("bug"))
    assert not expected_error(rexc.ResponseError("ERR bad script"))


async def test_pauses_double_up_to_the_cap_and_stop_cuts_them_short(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stop = asyncio.Event()
    stop.set()  # every pause ends at once
    backoff = Backoff(stop)
    delays = []
    for _ in range(12):
        delays.append(backoff.delay)
        await backoff.sleep("claiming", rexc.ConnectionError("gone"))
    assert delays[:3] == [0.05, 0.1, 0.2]
    assert max(delays) == MAX_BACKOFF
    backoff.reset()
    assert backoff.delay == 0.05


async def test_an_unexpected_error_is_logged_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stop = asyncio.Event()
    stop.set()
    backoff = Backoff(stop)
    with caplog.at_level(logging.WARNING, logger="runnerq.worker"):
        await backoff.sleep("heartbeat", rexc.ConnectionError("gone"))
        try:
            raise ValueError("a bug")
        except ValueError as exc:
            await backoff.sleep("heartbeat", exc)
    redis_record, bug_record = caplog.records
    assert (redis_record.levelname, redis_record.exc_info) == ("WARNING", None)
    assert bug_record.levelname == "ERROR"
    assert bug_record.exc_info is not None and bug_record.exc_info[1] is not None
    assert "a bug" in caplog.text and "Traceback" in caplog.text


async def test_the_scheduler_loop_logs_a_bug_and_keeps_running(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A stand-in store (this checks the loop's own handling, not Redis): its first call
    raises a bug, the next ones answer; the loop must go on and log the traceback."""
    from runnerq.config import WorkerSettings
    from runnerq.scheduler import Scheduler
    from runnerq.worker_state import WorkerState

    calls = 0
    answered = asyncio.Event()

    class Store:
        async def promote_due(self) -> tuple[int, float | None, float | None]:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise KeyError("a bug")
            answered.set()
            return 0, None, None

    state = WorkerState(WorkerSettings())
    scheduler = Scheduler(state, Store())  # type: ignore[arg-type]
    with caplog.at_level(logging.ERROR, logger="runnerq.worker"):
        task = asyncio.create_task(scheduler.run())
        await asyncio.wait_for(answered.wait(), 5)
        state.stopping = True
        scheduler.wake()
        await asyncio.wait_for(task, 5)
    assert "promoting scheduled activities failed unexpectedly" in caplog.text
    assert "KeyError: 'a bug'" in caplog.text
