"""The chaos scenarios at the short size (a few hundred activities each): real worker
processes, real faults, and the audit (see docs/chaos.md). ``python -m tests.chaos`` runs
the same scenarios with thousands of activities and prints the table."""

from __future__ import annotations

import pytest

from tests.chaos.harness import SHORT
from tests.chaos.scenarios import SCENARIOS

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_scenario_loses_and_duplicates_nothing(name: str) -> None:
    report = await SCENARIOS[name](SHORT, 1)
    print(report.summary())
    assert report.ok, report.summary()
    assert report.lost == 0
    assert report.duplicates == 0
    assert report.unexplained_reruns == 0
    assert report.activities > 0
    if name == "sigkill":
        # The kills hit running work: some activities ran again after their worker died.
        assert report.rerun_reasons["worker killed"] > 0, report.summary()
    if name in ("sigterm", "clock"):
        assert report.rerun == 0
    if name == "redis-kill-always":
        assert report.aof_lost == 0
    if name == "poison":
        assert report.dead_reasons["corrupt"] == 10
        assert report.dead_reasons["timeout"] == 3
