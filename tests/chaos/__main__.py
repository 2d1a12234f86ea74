"""``python -m tests.chaos``: run the fault-injection suite at full size and print the table.

    python -m tests.chaos                 # every scenario, thousands of activities each
    python -m tests.chaos --short         # the sizes the pytest run uses
    python -m tests.chaos sigkill poison  # some scenarios only
    python -m tests.chaos --json out.json # also write the reports

Exits 1 when any scenario broke a promise (lost, duplicated, unexplained re-run, hang, crash).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

from tests.chaos.audit import ScenarioReport
from tests.chaos.harness import FULL, SHORT
from tests.chaos.known_bugs import KNOWN_BUGS, OPEN_BUGS
from tests.chaos.scenarios import SCENARIOS

_COLUMNS = [
    ("scenario", 20),
    ("activities", 10),
    ("completed once", 14),
    ("re-run (crash/lease)", 20),
    ("dead-lettered", 13),
    ("lost", 4),
    ("AOF-window lost", 15),
    ("duplicates", 10),
    ("seconds", 7),
    ("result", 9),
]


def _row(report: ScenarioReport, status: str) -> list[str]:
    return [
        report.scenario,
        str(report.activities),
        str(report.completed_once),
        str(report.rerun),
        str(report.dead_lettered),
        str(report.lost),
        str(report.aof_lost),
        str(report.duplicates),
        f"{report.seconds:.0f}",
        status,
    ]


def table(rows: list[list[str]]) -> str:
    header = " | ".join(name.ljust(width) for name, width in _COLUMNS)
    rule = "-+-".join("-" * width for _, width in _COLUMNS)
    body = [
        " | ".join(cell.ljust(width) for cell, (_, width) in zip(row, _COLUMNS, strict=True))
        for row in rows
    ]
    return "\n".join([header, rule, *body])


async def _main(args: argparse.Namespace, reports: list[ScenarioReport]) -> int:
    size = SHORT if args.short else FULL
    chosen = args.scenarios or [*SCENARIOS, *KNOWN_BUGS]
    unknown = [s for s in chosen if s not in SCENARIOS and s not in KNOWN_BUGS]
    if unknown:
        print(f"unknown scenarios: {unknown}; choose from {[*SCENARIOS, *KNOWN_BUGS]}")
        return 2
    rows: list[list[str]] = []
    failed = False
    started = time.monotonic()
    for name in chosen:
        print(f"--- {name} ({size.name})", flush=True)
        if name in SCENARIOS:
            report = await SCENARIOS[name](size, args.seed)
            status = "ok" if report.ok else "FAIL"
            failed |= not report.ok
        else:
            report = await KNOWN_BUGS[name]()
            if name in OPEN_BUGS:  # shows up as problems; "fixed?" once it does not
                status = "known bug" if not report.ok else "fixed?"
            else:  # a fixed bug, now a regression test
                status = "ok" if report.ok else "FAIL"
                failed |= not report.ok
        print(report.summary(), flush=True)
        rows.append(_row(report, status))
        reports.append(report)
    print()
    print(table(rows))
    print(f"\n{len(rows)} scenarios in {time.monotonic() - started:.0f}s ({size.name} sizes)")
    return 1 if failed else 0


def _plain(value: Any) -> Any:
    """JSON-ready: dict keys as text (a Counter of tuples has tuple keys)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument("scenarios", nargs="*", help="scenario names (default: all)")
    parser.add_argument("--short", action="store_true", help="the small sizes of the pytest run")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", help="write the reports to this file")
    args = parser.parse_args()
    reports: list[ScenarioReport] = []
    code = asyncio.run(_main(args, reports))
    if args.json:
        Path(args.json).write_text(
            json.dumps([_plain(dataclasses.asdict(r)) for r in reports], indent=2, default=str)
        )
    return code


if __name__ == "__main__":
    sys.exit(main())
