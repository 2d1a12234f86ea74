"""The operator's Prometheus metrics, on a registry of their own, served at ``/metrics``.

Liveness is kopf's own endpoint (``--liveness``); this serves metrics only.
"""

from __future__ import annotations

import contextlib

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = ["OperatorMetrics", "serve_metrics"]


class OperatorMetrics:
    """Every metric the operator exports. One instance per operator (tests make several)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.reconciles = Counter(
            "runnerq_operator_reconciles",
            "ActivityQueue reconciliations (create, update, resume), by result.",
            ["result"],
            registry=r,
        )
        self.scale_decisions = Counter(
            "runnerq_operator_scale_decisions",
            "Changes of a worker Deployment's replicas, by direction.",
            ["direction"],
            registry=r,
        )
        self.errors = Counter(
            "runnerq_operator_errors",
            "Errors by kind (redis, kubernetes, spec, schedules).",
            ["kind"],
            registry=r,
        )
        self.redis_round_trips = Counter(
            "runnerq_operator_redis_round_trips",
            "Pipelined Redis round trips made to read queue depths.",
            registry=r,
        )
        self.polls = Counter(
            "runnerq_operator_queue_polls",
            "Queue depth readings (one per queue per poll).",
            registry=r,
        )
        self.poll_seconds = Histogram(
            "runnerq_operator_poll_duration_seconds",
            "Time of one poll round: read depths, decide, write replicas and status.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.depth = Gauge(
            "runnerq_operator_queue_depth",
            "Activities per queue and state, as last read.",
            ["namespace", "name", "queue", "state"],
            registry=r,
        )
        self.held_keys = Gauge(
            "runnerq_operator_held_keys",
            "Limit keys that a handler holds back now (RateLimitedError with hold='key').",
            ["namespace", "name", "queue"],
            registry=r,
        )
        self.desired = Gauge(
            "runnerq_operator_desired_replicas",
            "Replicas the operator wants for the queue's workers.",
            ["namespace", "name", "queue"],
            registry=r,
        )
        self.schedule_ticks = Counter(
            "runnerq_operator_schedule_ticks",
            "Schedule ticks the operator fired, skipped (previous run not done) or missed.",
            ["outcome"],
            registry=r,
        )
        self.queues = Gauge(
            "runnerq_operator_queues",
            "ActivityQueues the operator polls (with peering: none while kopf pauses it).",
            registry=r,
        )

    def forget(self, namespace: str, name: str, queue: str) -> None:
        """Drop a deleted queue's series."""
        for state in ("ready", "in_flight", "scheduled", "due_soon", "dead_letter", "eligible"):
            with contextlib.suppress(KeyError):
                self.depth.remove(namespace, name, queue, state)
        with contextlib.suppress(KeyError):
            self.desired.remove(namespace, name, queue)
        with contextlib.suppress(KeyError):
            self.held_keys.remove(namespace, name, queue)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


async def serve_metrics(metrics: OperatorMetrics, host: str, port: int) -> web.AppRunner:
    """Serve ``GET /metrics`` on ``host:port`` (port 0 picks a free one); returns the runner
    (``runner.addresses`` tells where), to be cleaned up with ``await runner.cleanup()``."""

    async def handle(_: web.Request) -> web.Response:
        response = web.Response(body=metrics.exposition())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    app = web.Application()
    app.router.add_get("/metrics", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner
