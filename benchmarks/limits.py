"""Limit rows (``python -m benchmarks --only runnerq --rows limits``; runnerq only, not part
of the default run). Processing throughput at concurrency 10 (the processing row's method:
``n`` no-ops enqueued first, then one worker), in alternating rounds, medians:

* no limits and no limit keys (the baseline);
* 1,000 limit keys (activity i has key i % 1000) and a per-key concurrency of 1
  (``Limits(keys=KeyLimit(concurrency=1))``): the claim's limited path with a key check for
  every activity it takes;
* one key holding 99% of the backlog, the rest over 100 keys, no limit: the cost of fair
  queuing between keys alone (the keyed ready set and the merged scan).

Each limited row's cost is how much slower it is than the baseline of the same rounds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .proc import Adapter, AdapterError
from .scenarios import Cell, Scenarios

__all__ = ["KEYS", "LimitSettings", "run_limit_rows"]

KEYS = (
    "process_c10_no_limits",
    "process_c10_keys1000",
    "keys1000_cost_pct",
    "process_c10_skew99",
    "skew99_cost_pct",
)


@dataclass(frozen=True, slots=True)
class LimitSettings:
    n: int = 50_000
    rounds: int = 3

    @classmethod
    def quick(cls) -> LimitSettings:
        return cls(n=20_000, rounds=2)


@contextlib.contextmanager
def _limit_keys(spec: str | None) -> Iterator[None]:
    """The producer's limit keys (benchmarks/peers/runnerq.py) while the block runs."""
    old = os.environ.pop("RUNNERQ_BENCH_LIMIT_KEYS", None)
    if spec is not None:
        os.environ["RUNNERQ_BENCH_LIMIT_KEYS"] = spec
    try:
        yield
    finally:
        os.environ.pop("RUNNERQ_BENCH_LIMIT_KEYS", None)
        if old is not None:
            os.environ["RUNNERQ_BENCH_LIMIT_KEYS"] = old


async def _set_per_key_concurrency(url: str, queue: str) -> None:
    from runnerq import ActivityClient, KeyLimit, Limits

    async with ActivityClient(url, queue) as client:
        await client.set_limits(Limits(keys=KeyLimit(concurrency=1)))


def run_limit_rows(
    scenarios: Scenarios, ad: Adapter, ls: LimitSettings, say: Callable[[str], None]
) -> dict[str, Cell]:
    def per_key_limit() -> None:
        asyncio.run(_set_per_key_concurrency(ad.url, "bench"))

    cases: dict[str, tuple[str | None, Callable[[], None] | None]] = {
        "process_c10_no_limits": (None, None),
        "process_c10_keys1000": ("spread:1000", per_key_limit),
        "process_c10_skew99": ("skew:99", None),
    }
    rates: dict[str, list[float]] = {key: [] for key in cases}
    notes: list[str] = []
    for round_ in range(ls.rounds):
        order = list(cases) if round_ % 2 == 0 else list(reversed(cases))
        for key in order:
            spec, prepare = cases[key]
            try:
                with _limit_keys(spec):
                    cell, _ = scenarios.throughput(ad, 10, n=ls.n, prepare=prepare)
            except AdapterError as exc:
                notes.append(str(exc))
                continue
            if cell.value is not None:
                rates[key].append(cell.value)
                say(f"   {key}: {cell.value:,.0f}/s")
            if cell.note:
                notes.append(cell.note)
    note = "; ".join(dict.fromkeys(notes)) or None
    med = {k: statistics.median(v) if v else None for k, v in rates.items()}
    out = {k: Cell(med[k], note, rates[k] or None) for k in cases}
    base = med["process_c10_no_limits"]
    for key, cost_key in (
        ("process_c10_keys1000", "keys1000_cost_pct"),
        ("process_c10_skew99", "skew99_cost_pct"),
    ):
        value = med[key]
        cost = None if not base or value is None else (base - value) / base * 100
        out[cost_key] = Cell(cost, f"median of {ls.rounds} alternating rounds")
    return out
