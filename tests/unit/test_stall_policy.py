"""When the stall guard acts (runnerq.stall_guard.StallPolicy): its first renewal must land
before the leases that the last heartbeat renewed run out."""

from __future__ import annotations

import pytest

from runnerq import ConfigurationError
from runnerq.config import WorkerSettings
from runnerq.stall_guard import StallPolicy


@pytest.mark.parametrize(
    ("lease", "heartbeat"),
    [(30.0, 10.0), (1.0, 0.25), (0.6, 0.15), (1.0, 0.9), (300.0, 60.0), (0.05, 0.04)],
)
def test_first_renewal_comes_before_the_leases_run_out(lease: float, heartbeat: float) -> None:
    policy = StallPolicy.for_worker(lease, heartbeat, limit=300.0)
    # The loop blocks right after a tick; the last heartbeat may be a whole interval older.
    # The guard notices after more than two checks, at its third wake-up at the latest.
    worst_first_renewal = 3 * policy.check
    assert worst_first_renewal < lease - heartbeat
    assert policy.renew_every == heartbeat < lease
    assert policy.check <= 1.0


def test_stall_limit_is_validated() -> None:
    assert WorkerSettings(loop_stall_limit=0).loop_stall_limit == 0
    with pytest.raises(ConfigurationError, match="loop_stall_limit"):
        WorkerSettings(loop_stall_limit=-1)
