"""The benchmark harness's pure parts: statistics, ratios, targets, the table, merging."""

from __future__ import annotations

import pytest

from benchmarks.cli import merge_rounds, parse_args, settings_from
from benchmarks.report import advantage, build_rows, format_table, rows_for
from benchmarks.scenarios import Cell
from benchmarks.stats import percentile


def test_percentile_interpolates_like_numpy() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile([3.0], 99) == 3.0
    assert percentile([5.0, 1.0], 0) == 1.0
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)


def test_advantage_is_above_one_when_runnerq_is_ahead() -> None:
    assert advantage(200.0, 100.0, higher_is_better=True) == 2.0
    assert advantage(1.0, 4.0, higher_is_better=False) == 4.0
    assert advantage(None, 4.0, higher_is_better=False) is None
    assert advantage(1.0, None, higher_is_better=True) is None


def _cells() -> dict[str, dict[str, Cell]]:
    return {
        "runnerq": {"process_c10": Cell(12_000.0), "latency_p50": Cell(0.8)},
        "ceiling": {"process_c10": Cell(20_000.0), "latency_p50": Cell(0.5)},
        "arq": {"process_c10": Cell(1_000.0), "latency_p50": Cell(250.0)},
        "saq": {"process_c10": Cell(2_000.0), "latency_p50": Cell(None, "broke")},
    }


def test_rows_pick_the_best_peer_and_check_targets() -> None:
    rows = {
        r["key"]: r
        for r in build_rows(rows_for((10,), 20_000, 20_000, 100), _cells(), ("arq", "saq"))
    }
    process = rows["process_c10"]
    assert process["best_peer"] == "saq"
    assert process["runnerq_vs_best_peer"] == pytest.approx(6.0)
    assert process["runnerq_vs_ceiling"] == pytest.approx(0.6)
    assert process["target_met"] is True
    latency = rows["latency_p50"]
    assert latency["best_peer"] == "arq"  # saq has no figure
    assert latency["runnerq_vs_best_peer"] == pytest.approx(312.5)
    assert latency["target_met"] is True
    assert rows["enqueue_bulk"]["target_met"] is None  # runnerq has no figure there


def test_table_has_every_library_and_numbered_notes() -> None:
    rows = build_rows(rows_for((10,), 2_000, 2_000, 100), _cells(), ("arq", "saq"))
    text = format_table(rows, ["runnerq", "ceiling", "arq", "saq"])
    header = text.splitlines()[0]
    for name in ("runnerq", "ceiling", "arq", "saq", "rq/best", "rq/ceil"):
        assert name in header
    assert "12,000" in text
    assert "[1] saq: broke" in text


def test_rounds_merge_into_their_median() -> None:
    merged = merge_rounds(
        [
            {"process_c10": Cell(3.0), "rss_mb": Cell(30.0)},
            {"process_c10": Cell(1.0), "rss_mb": Cell(None, "gone")},
            {"process_c10": Cell(2.0)},
        ]
    )
    assert merged["process_c10"].value == 2.0
    assert merged["process_c10"].samples == [3.0, 1.0, 2.0]
    assert merged["rss_mb"].value == 30.0
    assert merged["rss_mb"].note == "gone"


def test_quick_and_explicit_sizes() -> None:
    s = settings_from(parse_args(["--quick", "--latency-samples", "7"]))
    assert (s.n, s.enqueue_n, s.latency_samples) == (2_000, 2_000, 7)
    s = settings_from(parse_args(["--n", "500", "--concurrency", "5,50"]))
    assert (s.n, s.concurrencies) == (500, (5, 50))
    with pytest.raises(SystemExit):
        parse_args(["--only", "nosuchqueue"])
