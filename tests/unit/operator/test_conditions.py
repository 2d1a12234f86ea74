"""Conditions per the API conventions."""

from __future__ import annotations

import pytest
from runnerq_operator.conditions import Condition, find, merge_conditions, timestamp


def test_new_conditions_are_stamped_and_ordered() -> None:
    merged = merge_conditions(
        None,
        [Condition("Scaling", "True", "Polling", "ok"), Condition("Ready", "True", "Reconciled")],
        generation=3,
        now="2026-01-01T00:00:00Z",
    )
    assert [c["type"] for c in merged] == ["Ready", "Scaling"]
    assert merged[0] == {
        "type": "Ready",
        "status": "True",
        "observedGeneration": 3,
        "lastTransitionTime": "2026-01-01T00:00:00Z",
        "reason": "Reconciled",
        "message": "",
    }


def test_transition_time_moves_only_when_status_changes() -> None:
    first = merge_conditions(None, [Condition("Ready", "True", "A")], 1, "T1")
    same = merge_conditions(first, [Condition("Ready", "True", "B", "new message")], 2, "T2")
    assert find(same, "Ready") == {
        "type": "Ready",
        "status": "True",
        "observedGeneration": 2,
        "lastTransitionTime": "T1",
        "reason": "B",
        "message": "new message",
    }
    flipped = merge_conditions(same, [Condition("Ready", "False", "C")], 2, "T3")
    found = find(flipped, "Ready")
    assert found is not None and found["lastTransitionTime"] == "T3"


def test_other_conditions_are_kept() -> None:
    first = merge_conditions(None, [Condition("RedisReachable", "True", "Connected")], 1, "T1")
    merged = merge_conditions(first, [Condition("Ready", "True", "Reconciled")], 2, "T2")
    reachable = find(merged, "RedisReachable")
    assert reachable is not None and reachable["observedGeneration"] == 1


@pytest.mark.parametrize("reason", ["", "lowercase", "Has Space", "Dash-ed"])
def test_reason_must_be_camel_case(reason: str) -> None:
    with pytest.raises(ValueError, match="CamelCase"):
        Condition("Ready", "True", reason)


def test_timestamp_format() -> None:
    stamp = timestamp()
    assert len(stamp) == 20 and stamp.endswith("Z") and stamp[10] == "T"
