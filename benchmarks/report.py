"""The rows, runnerq's ratios to the best peer and to the ceiling, the table and the JSON.

A ratio is an *advantage*: how many times better runnerq is than the other figure (so above
1 means runnerq is ahead) - ``runnerq / other`` where higher is better (rates),
``other / runnerq`` where lower is better (latency, lateness, memory).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .scenarios import Cell

__all__ = ["ROWS", "Row", "advantage", "build_rows", "format_table", "write_json"]


@dataclass(frozen=True, slots=True)
class Row:
    key: str
    label: str
    unit: str
    higher_is_better: bool
    target: str = ""
    #: (runnerq's value, advantage over the best peer, fraction of the ceiling) -> met?
    check: Callable[[float, float | None, float | None], bool | None] | None = None


def _at_least(best: float | None = None, ceiling: float | None = None) -> Any:
    def check(_v: float, vs_best: float | None, vs_ceiling: float | None) -> bool | None:
        if (best is not None and vs_best is None) or (ceiling is not None and vs_ceiling is None):
            return None
        ok = True
        if best is not None and vs_best is not None:
            ok = ok and vs_best >= best
        if ceiling is not None and vs_ceiling is not None:
            ok = ok and vs_ceiling >= ceiling
        return ok

    return check


def _value(op: str, limit: float) -> Any:
    def check(v: float, _b: float | None, _c: float | None) -> bool:
        return v >= limit if op == ">=" else v < limit

    return check


def _process_row(conc: int, n: int) -> Row:
    return Row(
        f"process_c{conc}",
        f"process {n:,} no-ops, concurrency {conc}",
        "/s",
        True,
        ">=5x best peer, >=0.5x ceiling",
        _at_least(best=5, ceiling=0.5),
    )


def rows_for(concurrencies: Sequence[int], n: int, enqueue_n: int, callers: int) -> list[Row]:
    return [
        Row(
            "enqueue_single",
            f"enqueue {enqueue_n:,} single, {callers} callers",
            "/s",
            True,
            ">=3x best peer",
            _at_least(best=3),
        ),
        Row(
            "enqueue_bulk",
            f"enqueue {n:,} bulk",
            "/s",
            True,
            ">=80,000/s",
            _value(">=", 80_000),
        ),
        *(_process_row(c, n) for c in concurrencies),
        Row("latency_p50", "enqueue -> start, idle, p50", "ms", False, "<1 ms", _value("<", 1)),
        Row("latency_p99", "enqueue -> start, idle, p99", "ms", False, "<5 ms", _value("<", 5)),
        Row("enqueue_call_p50", "  of which the enqueue call, p50", "ms", False),
        Row("sched_p50", "delayed start lateness, p50", "ms", False),
        Row("sched_p99", "delayed start lateness, p99", "ms", False, "<20 ms", _value("<", 20)),
        Row("rss_mb", "worker RSS after the run", "MB", False),
        # --rows schedules (runnerq only; see benchmarks/schedules.py)
        Row("tick_workers_p50", "schedule tick -> start, workers firing, p50", "ms", False),
        Row(
            "tick_workers_p99",
            "schedule tick -> start, workers firing, p99",
            "ms",
            False,
            "<20 ms",
            _value("<", 20),
        ),
        Row("tick_firer_p50", "schedule tick -> enqueued, firer loop only, p50", "ms", False),
        Row("tick_firer_p99", "schedule tick -> enqueued, firer loop only, p99", "ms", False),
        Row("tick_operator_p50", "schedule tick -> enqueued, operator only, p50", "ms", False),
        Row(
            "tick_operator_p99",
            "schedule tick -> enqueued, operator only, p99",
            "ms",
            False,
            "<1000 ms",
            _value("<", 1000),
        ),
        Row("tick_python_us", "CPU per schedule tick fired, the firer's process", "us", False),
        Row("tick_redis_us", "CPU per schedule tick fired, Redis", "us", False),
        Row("process_c10_no_schedules", "process, concurrency 10, no schedules", "/s", True),
        Row("process_c10_schedules", "process, concurrency 10, 10,000 schedules", "/s", True),
        Row(
            "schedules_cost_pct",
            "  slower with 10,000 schedules",
            "%",
            False,
            "<3%",
            _value("<", 3),
        ),
        # --rows limits (runnerq only; see benchmarks/limits.py)
        Row("process_c10_no_limits", "process, concurrency 10, no limits", "/s", True),
        Row("process_c10_keys1000", "process, c10, 1,000 keys, 1 per key at once", "/s", True),
        Row("keys1000_cost_pct", "  slower than no limits", "%", False),
        Row("process_c10_skew99", "process, c10, one key 99% of backlog (fairness)", "/s", True),
        Row("skew99_cost_pct", "  slower than no limits", "%", False),
    ]


ROWS = rows_for((10, 100), 20_000, 20_000, 100)


def advantage(runnerq: float | None, other: float | None, higher_is_better: bool) -> float | None:
    if runnerq is None or other is None or runnerq <= 0 or other <= 0:
        return None
    return runnerq / other if higher_is_better else other / runnerq


def build_rows(
    rows: Sequence[Row], cells: Mapping[str, Mapping[str, Cell]], peers: Sequence[str]
) -> list[dict[str, Any]]:
    """One JSON-ready dict per row: every library's cell, the best peer and the ratios."""
    out = []
    for row in rows:
        values = {lib: by_row.get(row.key, Cell()) for lib, by_row in cells.items()}
        candidates = [
            (lib, c.value) for lib, c in values.items() if lib in peers and c.value is not None
        ]
        best: tuple[str, float] | None = None
        if candidates:
            pick = max if row.higher_is_better else min
            best = pick(candidates, key=lambda lv: lv[1])
        rq = values.get("runnerq", Cell()).value
        vs_best = advantage(rq, best[1] if best else None, row.higher_is_better)
        ceiling = values.get("ceiling", Cell()).value
        vs_ceiling = advantage(rq, ceiling, row.higher_is_better)
        met = None if rq is None or row.check is None else row.check(rq, vs_best, vs_ceiling)
        out.append(
            {
                "key": row.key,
                "label": row.label,
                "unit": row.unit,
                "higher_is_better": row.higher_is_better,
                "values": {lib: c.as_dict() for lib, c in values.items()},
                "best_peer": best[0] if best else None,
                "best_peer_value": best[1] if best else None,
                "runnerq_vs_best_peer": vs_best,
                "runnerq_vs_ceiling": vs_ceiling,
                "target": row.target,
                "target_met": met,
            }
        )
    return out


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "/s":
        return f"{value:,.0f}"
    if unit == "ms":
        return f"{value:.2f}" if abs(value) < 100 else f"{value:,.0f}"
    return f"{value:.1f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def format_table(rows: Sequence[Mapping[str, Any]], libraries: Sequence[str]) -> str:
    """A plain-text table, one line per row, plus numbered notes."""
    head = ["", "unit", *libraries, "best peer", "rq/best", "rq/ceil", "target", "met"]
    notes: list[str] = []
    body: list[list[str]] = []
    for row in rows:
        line = [row["label"], row["unit"]]
        for lib in libraries:
            cell = row["values"].get(lib, {"value": None, "note": None})
            text = _fmt(cell["value"], row["unit"])
            if cell.get("note"):
                note = f"{lib}: {cell['note']}"
                if note not in notes:
                    notes.append(note)
                text += f" [{notes.index(note) + 1}]"
            line.append(text)
        met = {True: "yes", False: "NO", None: ""}[row["target_met"]]
        line += [
            row["best_peer"] or "-",
            _ratio(row["runnerq_vs_best_peer"]),
            _ratio(row["runnerq_vs_ceiling"]),
            row["target"],
            met,
        ]
        body.append(line)
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    just = [str.ljust, str.ljust] + [str.rjust] * (len(head) - 4) + [str.ljust, str.ljust]

    def render(cols: list[str]) -> str:
        return "  ".join(j(c, w) for j, c, w in zip(just, cols, widths, strict=True)).rstrip()

    lines = [render(head), render(["-" * w for w in widths]), *map(render, body)]
    lines.append("")
    lines.append("rq/best, rq/ceil: how many times better runnerq is (>1: runnerq ahead)")
    lines += [f"[{i}] {n}" for i, n in enumerate(notes, 1)]
    return "\n".join(lines)


def write_json(path: Path, document: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n")
