"""Summing up py-spy's raw collapsed stacks for the benchmark report."""

from __future__ import annotations

import pytest

from benchmarks.profiling import package_of, parse_frame, summarize

RUN = "run (asyncio/runners.py:1)"
EXECUTE = "Worker._execute (runnerq/worker.py:10)"
DECODE = "ActivityRecord.decode (runnerq/record.py:5)"
WRITE = "_SelectorSocketTransport.write (asyncio/selector_events.py:9)"
IMPORT = "_find_and_load (<frozen importlib._bootstrap>:1165);<module> (runnerq/client.py:1)"
RAW = "\n".join(
    [
        f"{RUN};{EXECUTE};{DECODE};loads (json/__init__.py:3) 30",
        f"{RUN};{EXECUTE} 10",
        f"{RUN};Handle._run (asyncio/events.py:78);{WRITE} 60",
        f"{IMPORT} 99",
    ]
)


def test_frames_and_packages() -> None:
    assert parse_frame("Worker._execute (runnerq/worker.py:10)") == (
        "runnerq/worker.py",
        "Worker._execute",
    )
    assert parse_frame("<module> (<frozen runpy>:1)") == ("<frozen runpy>", "<module>")
    assert package_of("/work/main/runnerq/worker.py") == "runnerq"
    assert package_of("redis/asyncio/connection.py") == "redis-py"
    assert package_of("benchmarks/peers/_common.py") == "harness"
    assert package_of("uuid.py") == "other"


def test_summary_shares_leave_imports_out() -> None:
    s = summarize(RAW)
    assert s["samples"] == 100 and s["import_samples"] == 99
    assert s["self_by_package"]["asyncio"] == pytest.approx(0.6)
    assert s["top_self"][0]["where"] == "asyncio/selector_events.py:_SelectorSocketTransport.write"
    incl = {e["where"]: e for e in s["top_runnerq_inclusive"]}
    assert incl["runnerq/worker.py:Worker._execute"]["share"] == pytest.approx(0.4)
    assert incl["runnerq/worker.py:Worker._execute"]["self_share"] == pytest.approx(0.1)
    inner = {e["where"]: e["share"] for e in s["by_innermost_runnerq_frame"]}
    assert inner["runnerq/record.py:ActivityRecord.decode"] == pytest.approx(0.3)
    assert inner["(outside runnerq)"] == pytest.approx(0.6)


def test_empty_profile() -> None:
    assert summarize("")["samples"] == 0
