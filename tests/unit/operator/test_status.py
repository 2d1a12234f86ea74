"""The status the operator patches (a JSON merge patch: a field it leaves out stays)."""

from __future__ import annotations

from typing import Any

from runnerq_operator.status import queue_status


def status(**extra: Any) -> dict[str, Any]:
    return queue_status(
        name="mail",
        queue="mail",
        generation=3,
        conditions=[],
        replicas=0,
        desired=0,
        depth=None,
        last_scale_time=None,
        **extra,
    )


def test_no_schedule_fields_for_a_queue_without_schedules() -> None:
    found = status()
    assert "schedules" not in found and "nextTick" not in found


def test_schedules_and_the_earliest_tick() -> None:
    entries = [{"name": "tick", "nextTick": "2030-01-01T00:00:01Z"}]
    found = status(schedules=entries, next_tick="2030-01-01T00:00:01Z")
    assert found["schedules"] == entries
    assert found["nextTick"] == "2030-01-01T00:00:01Z"


def test_no_next_tick_is_written_as_null_so_that_the_patch_removes_it() -> None:
    found = status(schedules=[{"name": "s", "suspended": True}], next_tick=None)
    assert "nextTick" in found and found["nextTick"] is None
