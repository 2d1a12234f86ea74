"""A ``MetricsSink`` that prometheus-client exposes (``pip install runnerq[prometheus]``).

Counters become ``<namespace>_<name>_total`` and durations histograms
``<namespace>_<name>_seconds``, each with a ``queue`` label. Every metric the engine reports
(``runnerq.metrics``) is exposed from the start, at zero, for each queue a sink is made for;
other names appear when first reported. The schedule counters are also kept per schedule, as
``<namespace>_schedule_ticks_total{queue, schedule, outcome}`` (outcome ``fired``,
``skipped`` or ``missed``; a series appears with the first tick it counts), unless the sink
is made with ``schedule_labels=False`` (for a queue with so many schedules that a series
each is too many: the counts stay per schedule in Redis, ``runnerq stats``).

Reporting is on the worker's hot path (two durations per activity), so the sink keeps plain
numbers, one small lock per series, and a collector turns them into metric families only when
``/metrics`` is scraped: an observation costs a fraction of prometheus-client's own
``Histogram.observe``.

Not exported: the ``_created`` series, and prometheus-client's multiprocess mode
(``PROMETHEUS_MULTIPROC_DIR``): the numbers live in the process that reports them, which for a
worker (one process) is where ``/metrics`` is served.
"""

from __future__ import annotations

import bisect
import math
import threading
import weakref
from collections.abc import Iterator
from typing import Any

from .metrics import COUNTERS, DURATIONS, SCHEDULE_FIRED, SCHEDULE_MISSED, SCHEDULE_SKIPPED

try:
    import prometheus_client
    from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "runnerq.prometheus needs prometheus-client: pip install 'runnerq[prometheus]'"
    ) from exc

__all__ = ["DURATION_BUCKETS", "PrometheusMetrics"]

DURATION_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    math.inf,
)
_OUTCOMES = {SCHEDULE_FIRED: "fired", SCHEDULE_SKIPPED: "skipped", SCHEDULE_MISSED: "missed"}
# The ``le`` labels as prometheus-client writes them (Go's float format for these bounds).
_BUCKET_LABELS = tuple("+Inf" if math.isinf(b) else repr(b) for b in DURATION_BUCKETS)


class _Counter:
    __slots__ = ("lock", "value")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.value = 0.0


class _Histogram:
    """Per-bucket counts (not cumulative: an observation adds to one bucket) and the sum."""

    __slots__ = ("counts", "lock", "sum")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts = [0] * len(DURATION_BUCKETS)
        self.sum = 0.0

    def snapshot(self) -> tuple[list[tuple[str, float]], float]:
        with self.lock:
            counts, total = list(self.counts), self.sum
        cumulative, buckets = 0, []
        for label, count in zip(_BUCKET_LABELS, counts, strict=True):
            cumulative += count
            buckets.append((label, float(cumulative)))
        return buckets, total


class _Collector:
    """Every runnerq series of one namespace in one registry, across queues."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self._lock = threading.Lock()
        self._counters: dict[str, dict[str, _Counter]] = {n: {} for n in COUNTERS}
        self._histograms: dict[str, dict[str, _Histogram]] = {n: {} for n in DURATIONS}
        self._ticks: dict[tuple[str, str, str], _Counter] = {}  # (queue, schedule, outcome)

    def counter(self, name: str, queue: str) -> _Counter:
        with self._lock:
            return self._counters.setdefault(name, {}).setdefault(queue, _Counter())

    def histogram(self, name: str, queue: str) -> _Histogram:
        with self._lock:
            return self._histograms.setdefault(name, {}).setdefault(queue, _Histogram())

    def ticks(self, queue: str, schedule: str, outcome: str) -> _Counter:
        with self._lock:
            return self._ticks.setdefault((queue, schedule, outcome), _Counter())

    def describe(self) -> Iterator[Any]:
        # The names this collector stands for, so that a registry refuses a clashing metric.
        counters, histograms = self._families()
        for name in counters:
            yield self._counter_family(name)
        for name in histograms:
            yield self._histogram_family(name)
        yield self._ticks_family()

    def collect(self) -> Iterator[Any]:
        counters, histograms = self._families()
        for name, by_queue in counters.items():
            family = self._counter_family(name)
            for queue, counter in sorted(by_queue.items()):
                family.add_metric([queue], counter.value)
            yield family
        for name, hists in histograms.items():
            family = self._histogram_family(name)
            for queue, histogram in sorted(hists.items()):
                buckets, total = histogram.snapshot()
                family.add_metric([queue], buckets, total)
            yield family
        with self._lock:
            ticks = sorted(self._ticks.items())
        family = self._ticks_family()
        for labels, counter in ticks:
            family.add_metric(list(labels), counter.value)
        yield family

    def _families(self) -> tuple[dict[str, dict[str, _Counter]], dict[str, dict[str, _Histogram]]]:
        with self._lock:
            counters = {name: dict(by_queue) for name, by_queue in self._counters.items()}
            histograms = {name: dict(by_queue) for name, by_queue in self._histograms.items()}
        return counters, histograms

    def _counter_family(self, name: str) -> Any:
        return CounterMetricFamily(
            f"{self.namespace}_{name}", f"runnerq {name.replace('_', ' ')}", labels=["queue"]
        )

    def _ticks_family(self) -> Any:
        return CounterMetricFamily(
            f"{self.namespace}_schedule_ticks",
            "runnerq schedule ticks by schedule and outcome (fired, skipped, missed)",
            labels=["queue", "schedule", "outcome"],
        )

    def _histogram_family(self, name: str) -> Any:
        return HistogramMetricFamily(
            f"{self.namespace}_{name}_seconds",
            f"runnerq {name.replace('_', ' ')} in seconds",
            labels=["queue"],
        )


# One collector per registry and namespace: sinks for several queues in one process share it.
_collectors: weakref.WeakKeyDictionary[Any, dict[str, _Collector]] = weakref.WeakKeyDictionary()
_collectors_lock = threading.Lock()


def _collector(registry: Any, namespace: str) -> _Collector:
    with _collectors_lock:
        by_namespace = _collectors.setdefault(registry, {})
        collector = by_namespace.get(namespace)
        if collector is None:
            collector = _Collector(namespace)
            registry.register(collector)  # raises if the registry has such names already
            by_namespace[namespace] = collector
        return collector


class PrometheusMetrics:
    """Reports one queue's metrics to a prometheus-client registry (the default one unless
    given)."""

    def __init__(
        self,
        queue: str,
        registry: Any = None,
        namespace: str = "runnerq",
        *,
        schedule_labels: bool = True,
    ) -> None:
        self.queue = queue
        self.schedule_labels = schedule_labels
        self._ticks: dict[tuple[str, str], _Counter] = {}  # (schedule, outcome)
        self.registry = registry if registry is not None else prometheus_client.REGISTRY
        self.namespace = namespace
        self._collector = _collector(self.registry, namespace)
        self._counters = {n: self._collector.counter(n, queue) for n in COUNTERS}
        self._histograms = {n: self._collector.histogram(n, queue) for n in DURATIONS}

    def inc_counter(self, name: str, value: int = 1) -> None:
        if value < 0:
            raise ValueError(f"counter {name} can only go up, not by {value}")
        counter = self._counters.get(name)
        if counter is None:
            counter = self._counters[name] = self._collector.counter(name, self.queue)
        with counter.lock:
            counter.value += value

    def inc_schedule_counter(self, name: str, schedule: str, value: int = 1) -> None:
        outcome = _OUTCOMES.get(name)
        if not self.schedule_labels or outcome is None:
            return
        counter = self._ticks.get((schedule, outcome))
        if counter is None:
            counter = self._ticks[schedule, outcome] = self._collector.ticks(
                self.queue, schedule, outcome
            )
        with counter.lock:
            counter.value += value

    def observe_duration(self, name: str, seconds: float) -> None:
        histogram = self._histograms.get(name)
        if histogram is None:
            histogram = self._histograms[name] = self._collector.histogram(name, self.queue)
        with histogram.lock:
            histogram.counts[bisect.bisect_left(DURATION_BUCKETS, seconds)] += 1
            histogram.sum += seconds
