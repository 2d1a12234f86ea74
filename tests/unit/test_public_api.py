"""What a user of schedules imports from ``runnerq``, and the errors tree that names it."""

from __future__ import annotations

import runnerq
from runnerq import errors, schedule, schedules


def test_schedules_are_public() -> None:
    assert runnerq.Schedule is schedule.Schedule
    assert runnerq.ScheduleState is schedule.ScheduleState
    assert runnerq.ScheduleInfo is schedules.ScheduleInfo
    assert runnerq.ScheduleStore is schedules.ScheduleStore
    assert runnerq.ScheduleConflictError is schedules.ScheduleConflictError
    for name in ("Schedule", "ScheduleConflictError", "ScheduleInfo", "ScheduleStore"):
        assert name in runnerq.__all__, name


def test_every_public_error_is_in_the_tree_drawn_in_errors() -> None:
    tree = errors.__doc__ or ""
    public_errors = [
        name
        for name in runnerq.__all__
        if isinstance(getattr(runnerq, name), type)
        and issubclass(getattr(runnerq, name), (runnerq.RunnerQError, runnerq.ActivityError))
    ]
    assert "ScheduleConflictError" in public_errors
    assert "\n    RunnerQError\n" in tree
    for name in public_errors:
        if name != "RunnerQError":
            assert f"── {name} " in tree, name
    assert issubclass(runnerq.ScheduleConflictError, runnerq.RunnerQError)
