"""The benchmark harness still runs end to end: ``python -m benchmarks`` for runnerq and the
ceiling only (no peer venvs, nothing downloaded), with a tiny N. Nothing about speed is
asserted: only that the JSON has every row with a figure for both."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

ROWS = {
    "enqueue_single",
    "enqueue_bulk",
    "process_c10",
    "process_c100",
    "latency_p50",
    "latency_p99",
    "enqueue_call_p50",
    "sched_p50",
    "sched_p99",
    "rss_mb",
}


@pytest.mark.slow
def test_harness_measures_every_row_for_runnerq_and_the_ceiling(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--only",
            "runnerq,ceiling",
            "--n",
            "300",
            "--latency-samples",
            "20",
            "--sched-samples",
            "10",
            "--json",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rq/best" in done.stdout
    document = json.loads(out.read_text())
    assert document["columns"] == ["runnerq", "ceiling"]
    assert {row["key"] for row in document["rows"]} == ROWS
    for row in document["rows"]:
        for lib in ("runnerq", "ceiling"):
            cell = row["values"][lib]
            assert cell["value"] is not None, (row["key"], lib, cell)
        assert row["runnerq_vs_ceiling"] is not None
        assert row["best_peer"] is None  # no peer was run
    assert document["meta"]["loadavg_before"]
