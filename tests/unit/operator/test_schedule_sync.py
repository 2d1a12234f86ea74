"""What the operator writes, removes and reports for spec.schedules (pure)."""

from __future__ import annotations

from runnerq_operator.schedule_sync import (
    earliest_tick,
    plan_sync,
    reported_names,
    schedules_condition,
    schedules_status,
)

from runnerq.schedule import Schedule, ScheduleState
from runnerq.schedules import ScheduleInfo


def schedule(name: str, owner: str = "operator", every: int = 60) -> Schedule:
    return Schedule(name, "noop", every=every, owner=owner)  # type: ignore[arg-type]


def stored(
    s: Schedule, state: ScheduleState | None = None, suspended: bool = False
) -> ScheduleInfo:
    return ScheduleInfo(s.name, s, state or ScheduleState(next_tick=120.0), suspended)


def test_new_and_changed_schedules_are_written_unchanged_ones_left_alone() -> None:
    same, changed, new = schedule("same"), schedule("changed", every=5), schedule("new")
    plan = plan_sync(
        [same, changed, new], [stored(schedule("same")), stored(schedule("changed", every=10))]
    )
    assert [s.name for s in plan.upsert] == ["changed", "new"]
    assert plan.remove == () and dict(plan.clashes) == {}


def test_only_the_operators_schedules_that_left_the_spec_are_removed() -> None:
    plan = plan_sync(
        [schedule("kept")],
        [
            stored(schedule("kept")),
            stored(schedule("gone")),
            stored(schedule("from-code", owner="code")),
            stored(schedule("from-api", owner="api")),
            ScheduleInfo("broken", None, ScheduleState(), False, "not JSON"),
        ],
    )
    assert plan.remove == ("gone",)
    assert plan.upsert == ()


def test_a_name_another_owner_has_is_a_clash_not_a_write() -> None:
    plan = plan_sync([schedule("report")], [stored(schedule("report", owner="code", every=5))])
    assert plan.upsert == ()
    assert dict(plan.clashes) == {"report": "code"}
    assert plan.remove == ()


def test_the_status_shows_progress_and_clashes() -> None:
    progress = ScheduleState(
        next_tick=1_700_000_060.0,
        last_tick=1_700_000_000.0,
        last_activity_id="abc",
        fired=7,
        skipped=1,
        missed=2,
        version="v",
    )
    entries = schedules_status(
        ["tick", "report", "later"],
        [stored(schedule("tick"), progress), stored(schedule("report", owner="code"))],
        {"report": "code"},
    )
    assert entries[0] == {
        "name": "tick",
        "lastTick": "2023-11-14T22:13:20Z",
        "nextTick": "2023-11-14T22:14:20Z",
        "lastActivityId": "abc",
        "fired": 7,
        "skipped": 1,
        "missed": 2,
        "suspended": False,
    }
    assert entries[1]["name"] == "report"
    assert "declared by code (engine.schedule), not written" in entries[1]["error"]
    assert "lastTick" not in entries[1]  # the code one's progress is not ours to show
    assert entries[2] == {"name": "later", "error": "not in Redis yet"}
    assert earliest_tick(entries) == "2023-11-14T22:14:20Z"


def test_a_suspended_schedule_has_no_next_tick_and_a_fresh_one_no_last() -> None:
    (entry,) = schedules_status(
        ["s"], [stored(schedule("s"), ScheduleState(next_tick=None), suspended=True)], {}
    )
    assert entry == {"name": "s", "fired": 0, "skipped": 0, "missed": 0, "suspended": True}
    assert earliest_tick([entry]) is None


def test_earliest_tick() -> None:
    entries = [{"nextTick": "2030-01-01T00:00:02Z"}, {"nextTick": "2030-01-01T00:00:01Z"}, {}]
    assert earliest_tick(entries) == "2030-01-01T00:00:01Z"
    assert earliest_tick([]) is None


def test_refused_schedules_report_the_ones_written_before() -> None:
    before = [stored(schedule("old")), stored(schedule("code", owner="code"))]
    assert reported_names([], before, refused=True) == ["old"]
    assert reported_names([schedule("new")], before, refused=False) == ["new"]


def test_the_condition() -> None:
    invalid = schedules_condition(["spec.schedules[0].timeZone: unknown time zone"], {}, 0)
    assert (invalid.status, invalid.reason) == ("False", "InvalidSchedule")
    assert "none of it written" in invalid.message
    assert "spec.schedules[0].timeZone" in invalid.message
    clash = schedules_condition([], {"report": "code"}, 1)
    assert (clash.status, clash.reason) == ("False", "NameClash")
    assert "schedule report is declared by code" in clash.message
    assert schedules_condition([], {}, 0).reason == "NoSchedules"
    written = schedules_condition([], {}, 2)
    assert (written.status, written.reason) == ("True", "Written")
