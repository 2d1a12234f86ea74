"""A ``MetricsSink`` on prometheus-client (``pip install runnerq[prometheus]``).

Counters become ``<namespace>_<name>_total`` and durations histograms
``<namespace>_<name>_seconds``, each with a ``queue`` label.
"""

from __future__ import annotations

import threading
from typing import Any

try:
    import prometheus_client
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
    float("inf"),
)


class PrometheusMetrics:
    """Creates each metric the first time it is reported."""

    def __init__(
        self,
        queue: str,
        registry: Any = None,
        namespace: str = "runnerq",
    ) -> None:
        self.queue = queue
        self.registry = registry if registry is not None else prometheus_client.REGISTRY
        self.namespace = namespace
        self._lock = threading.Lock()
        self._counters: dict[str, Any] = {}
        self._histograms: dict[str, Any] = {}

    def _counter(self, name: str) -> Any:
        metric = self._counters.get(name)
        if metric is None:
            with self._lock:
                metric = self._counters.get(name)
                if metric is None:
                    family = self._existing(
                        f"{self.namespace}_{name}"
                    ) or prometheus_client.Counter(
                        name,
                        f"runnerq {name.replace('_', ' ')}",
                        ["queue"],
                        namespace=self.namespace,
                        registry=self.registry,
                    )
                    metric = family.labels(queue=self.queue)
                    self._counters[name] = metric
        return metric

    def _histogram(self, name: str) -> Any:
        metric = self._histograms.get(name)
        if metric is None:
            with self._lock:
                metric = self._histograms.get(name)
                if metric is None:
                    full = f"{self.namespace}_{name}_seconds"
                    family = self._existing(full) or prometheus_client.Histogram(
                        f"{name}_seconds",
                        f"runnerq {name.replace('_', ' ')} in seconds",
                        ["queue"],
                        namespace=self.namespace,
                        registry=self.registry,
                        buckets=DURATION_BUCKETS,
                    )
                    metric = family.labels(queue=self.queue)
                    self._histograms[name] = metric
        return metric

    def _existing(self, full_name: str) -> Any:
        # Two sinks (two queues) in one process share one metric family per name.
        names = getattr(self.registry, "_names_to_collectors", {})
        return names.get(full_name)

    def inc_counter(self, name: str, value: int = 1) -> None:
        self._counter(name).inc(value)

    def observe_duration(self, name: str, seconds: float) -> None:
        self._histogram(name).observe(seconds)
