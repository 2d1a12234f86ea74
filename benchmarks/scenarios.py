"""The measurements, one library at a time, against one Redis flushed before each phase.

* enqueue, single: ``enqueue_n`` enqueues from ``callers`` concurrent asyncio tasks (sync
  libraries: ``threads`` threads) in one process, after a warm-up of 200;
* enqueue, bulk: ``n`` activities through the library's bulk API, after a warm-up of 200;
* processing: ``n`` no-op activities are enqueued first, then one worker process starts; the
  rate is taken between the hit marks at 5% and 100% (the first 5% is warm-up);
* latency: an idle worker (concurrency 10, warmed up by ``warmup`` activities): each of
  ``latency_samples`` activities is sent ``latency_gap`` seconds (plus a random jitter of up
  to the longest latency seen so far, so that polling workers are met at every phase) after
  the previous one started (at most ``latency_budget`` seconds of them); enqueue call
  start -> handler start (and, to tell the client's share from the worker's, how long the
  enqueue call took);
* scheduling: ``sched_samples`` activities with ``sched_delay``, sent ``sched_gap`` apart
  with at most delay/gap of them waiting (so a slow worker is not buried);
  handler start - (enqueue call start + delay);
* RSS: the worker's process tree right after the processing run at the highest concurrency.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from .proc import Adapter, AdapterError, PacedProducer, WorkerProcess
from .stats import percentile

__all__ = ["Cell", "Scenarios", "Settings"]

Attach = Callable[[int], Callable[[], None]]


@dataclass(frozen=True, slots=True)
class Settings:
    n: int = 20_000
    enqueue_n: int = 20_000
    callers: int = 100
    threads: int = 8
    concurrencies: tuple[int, ...] = (10, 100)
    warmup: int = 50
    latency_samples: int = 1_000
    latency_gap: float = 0.01
    latency_concurrency: int = 10
    latency_budget: float = 90.0
    sched_samples: int = 200
    sched_gap: float = 0.02
    sched_delay: float = 0.5
    sched_budget: float = 60.0
    budget: float = 180.0


@dataclass(slots=True)
class Cell:
    value: float | None = None
    note: str | None = None
    samples: list[float] | None = None  # every round's value, when there were several

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"value": self.value, "note": self.note}
        if self.samples is not None:
            out["samples"] = self.samples
        return out


class Scenarios:
    def __init__(self, settings: Settings, flush: Callable[[], None]) -> None:
        self.s = settings
        self.flush = flush

    def run(self, ad: Adapter, rows: set[str] | None = None) -> dict[str, Cell]:
        """Every row for one library (``rows`` limits which groups run)."""
        out: dict[str, Cell] = {}

        def want(group: str) -> bool:
            return rows is None or group in rows

        if want("enqueue"):
            out.update(self._guard(("enqueue_single", "enqueue_bulk"), lambda: self.enqueue(ad)))
        if want("process"):
            out.update(self._guard(self._process_keys(), lambda: self.processing(ad)))
        if want("latency"):
            keys = ("latency_p50", "latency_p99", "enqueue_call_p50", "sched_p50", "sched_p99")
            out.update(self._guard(keys, lambda: self.latency(ad)))
        return out

    def _process_keys(self) -> tuple[str, ...]:
        return (*(f"process_c{c}" for c in self.s.concurrencies), "rss_mb")

    @staticmethod
    def _guard(keys: tuple[str, ...], fn: Callable[[], dict[str, Cell]]) -> dict[str, Cell]:
        try:
            return fn()
        except (AdapterError, OSError) as exc:
            return {k: Cell(None, f"error: {exc}") for k in keys}

    # -- enqueue -------------------------------------------------------------------------

    def enqueue(self, ad: Adapter) -> dict[str, Cell]:
        s = self.s
        self.flush()
        r = ad.produce(mode="single", n=s.enqueue_n, callers=s.callers, threads=s.threads)
        single = Cell(r["n"] / r["seconds"])
        if "threads" in r:
            single.note = f"{r['threads']} threads (sync client)"
        self.flush()
        r = ad.produce(mode="bulk", n=s.n)
        bulk = Cell(None, "no bulk API") if r.get("unsupported") else Cell(r["n"] / r["seconds"])
        self.flush()
        return {"enqueue_single": single, "enqueue_bulk": bulk}

    # -- processing ----------------------------------------------------------------------

    def processing(self, ad: Adapter) -> dict[str, Cell]:
        out: dict[str, Cell] = {}
        rss: int | None = None
        for conc in self.s.concurrencies:
            key = f"process_c{conc}"
            if ad.lib.serial and out:
                first = next(iter(out.values()))
                out[key] = Cell(first.value, first.note)
                continue
            try:
                cell, rss = self.throughput(ad, conc)
            except AdapterError as exc:
                cell = Cell(None, f"error: {exc}")
            if ad.lib.serial:
                cell.note = "one job at a time (forks a child per job), whatever the concurrency"
            out[key] = cell
        out["rss_mb"] = Cell(None if rss is None else rss / 2**20)
        return out

    def throughput(
        self,
        ad: Adapter,
        conc: int,
        attach: Attach | None = None,
        n: int | None = None,
        prepare: Callable[[], None] | None = None,
    ) -> tuple[Cell, int]:
        """(processing rate, worker RSS in bytes after the run); ``prepare`` runs after the
        flush, before the activities are enqueued."""
        s = self.s if n is None else replace(self.s, n=n)
        self.flush()
        if prepare is not None:
            prepare()
        ad.produce(mode="fill", n=s.n, callers=s.callers, threads=s.threads)
        marks = sorted({max(1, s.n * k // 20) for k in range(1, 21)})
        worker = ad.start_worker(concurrency=conc, marks=",".join(map(str, marks)))
        detach = None
        try:
            reached = self._marks(worker, marks[:1])
            if attach is not None and reached:
                detach = attach(worker.pid)  # from the first mark: startup left out
            reached += self._marks(worker, marks[1:])
            if detach is not None:
                detach()
                detach = None
            time.sleep(0.5)
            rss = worker.rss_bytes()
        finally:
            if detach is not None:
                detach()
            worker.stop()
            self.flush()
        if len(reached) < 2:
            raise AdapterError(f"{ad.lib.name}: too few activities ran in {s.budget:.0f}s")
        first, last = reached[0], reached[-1]
        rate = (last["count"] - first["count"]) / max(1e-9, last["time"] - first["time"])
        note = None
        if last["count"] < s.n:
            note = f"partial: {last['count']} of {s.n} within {s.budget:.0f}s"
        return Cell(rate, note), rss

    def _marks(self, worker: WorkerProcess, marks: list[int]) -> list[dict[str, Any]]:
        deadline = time.monotonic() + self.s.budget  # per call: the warm-up mark has its own
        reached: list[dict[str, Any]] = []
        for mark in marks:
            event = worker.wait_mark(mark, deadline - time.monotonic())
            if event is None:
                break
            reached.append(event)
        return reached

    # -- latency and scheduling ----------------------------------------------------------

    def latency(self, ad: Adapter) -> dict[str, Cell]:
        s = self.s
        self.flush()
        worker = ad.start_worker(
            concurrency=s.latency_concurrency, marks="", record=True, scheduling=True
        )
        producer: PacedProducer | None = None
        out: dict[str, Cell] = {}
        try:
            producer = ad.start_paced()
            warm = range(s.warmup)
            self._pace(producer, worker, warm, None, s.latency_gap, 1, 60.0)
            if not worker.wait_for(set(warm), 30):
                raise AdapterError(f"{ad.lib.name}: the warm-up activities did not run")
            idxs = range(s.warmup, s.warmup + s.latency_samples)
            sent = self._pace(producer, worker, idxs, None, s.latency_gap, 1, s.latency_budget)
            worker.wait_for(set(sent), 10)
            out.update(self._summarise("latency", sent, worker.times, 0.0, s.latency_samples))
            calls = [producer.durations[i] * 1000 for i in sent if i in producer.durations]
            out["enqueue_call_p50"] = Cell(percentile(calls, 50) if calls else None)
            if not ad.lib.scheduling:
                na = Cell(None, "needs a scheduler process besides the worker")
                return {**out, "sched_p50": na, "sched_p99": na}
            start = s.warmup + s.latency_samples
            idxs = range(start, start + s.sched_samples)
            window = max(1, round(s.sched_delay / s.sched_gap))
            sent = self._pace(
                producer, worker, idxs, s.sched_delay, s.sched_gap, window, s.sched_budget
            )
            worker.wait_for(set(sent), s.sched_delay + 10)
            out.update(self._summarise("sched", sent, worker.times, s.sched_delay, s.sched_samples))
        finally:
            if producer is not None:
                producer.close()
            worker.stop()
            self.flush()
        return out

    @staticmethod
    def _pace(
        producer: PacedProducer,
        worker: WorkerProcess,
        idxs: range,
        delay: float | None,
        gap: float,
        window: int,
        budget: float,
    ) -> dict[int, float]:
        """Send ``idxs`` one by one, at least ``gap`` apart, with at most ``window`` sent but
        not started (window 1: each after the previous started, plus ``gap`` and a random
        jitter: an idle worker), until ``budget`` seconds have gone; the send times."""
        rng = random.Random(idxs.start)
        deadline = time.monotonic() + budget
        asked: list[int] = []
        pending: list[int] = []
        last = 0.0
        span = 0.0  # the longest latency seen so far (window 1), capped at 1 s
        for idx in idxs:
            while len(pending) >= window:
                if not worker.wait_for({pending[0]}, deadline - time.monotonic()):
                    break
                with worker.cond:
                    pending = [i for i in pending if i not in worker.times]
            if len(pending) >= window or time.monotonic() >= deadline:
                break
            if window > 1:
                pause = last + gap - time.monotonic()
            elif asked:
                # A random extra pause, up to the longest latency so far: a worker that polls
                # (arq every 0.5 s) would otherwise be met at the same phase of its cycle.
                prev = asked[-1]
                if prev in worker.times and prev in producer.times:
                    span = min(1.0, max(span, worker.times[prev] - producer.times[prev]))
                pause = gap + rng.uniform(0.0, span)
            else:
                pause = 0.0
            if pause > 0:
                time.sleep(pause)
            last = time.monotonic()
            producer.send(idx, delay)
            asked.append(idx)
            pending.append(idx)
        producer.wait_for(set(asked), 30)
        return {i: producer.times[i] for i in asked if i in producer.times}

    @staticmethod
    def _summarise(
        prefix: str, sent: dict[int, float], hits: dict[int, float], delay: float, n: int
    ) -> dict[str, Cell]:
        ms = [(hits[i] - (t + delay)) * 1000 for i, t in sent.items() if i in hits]
        note = None
        if len(sent) < n:
            note = f"{len(sent)} samples in the time budget"
        if len(ms) < len(sent):
            note = f"{len(sent) - len(ms)} of {len(sent)} did not start"
        if not ms:
            return {f"{prefix}_p50": Cell(None, note), f"{prefix}_p99": Cell(None, note)}
        return {
            f"{prefix}_p50": Cell(percentile(ms, 50), note),
            f"{prefix}_p99": Cell(percentile(ms, 99), note),
        }
