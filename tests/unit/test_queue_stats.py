"""``QueueStats`` answers to Runner-Q's names too, without changing its own."""

from __future__ import annotations

import pytest

from runnerq import QueueStats


def test_queue_stats_has_runner_q_names() -> None:
    stats = QueueStats("q", pending=1, running=2, completed=3, failed=4, dead_letter=5)
    assert (
        stats.pending_count,
        stats.running_count,
        stats.completed_count,
        stats.failed_count,
        stats.dead_letter_count,
    ) == (1, 2, 3, 4, 5)
    # A property without a setter on a frozen dataclass: CPython 3.11 raises TypeError from the
    # frozen __setattr__ of a slots class, later versions AttributeError.
    with pytest.raises((AttributeError, TypeError)):
        stats.pending_count = 9  # type: ignore[misc]
    assert stats.pending_count == stats.pending == 1
    as_dict = stats.as_dict()
    assert {k: as_dict[k] for k in ("pending", "running", "completed", "failed")} == {
        "pending": 1,
        "running": 2,
        "completed": 3,
        "failed": 4,
    }
    assert as_dict["dead_letter"] == as_dict["dead_letter_count"] == 5
    assert [as_dict[f"{k}_count"] for k in ("pending", "running", "completed", "failed")] == [
        1,
        2,
        3,
        4,
    ]
