"""One running operator: its clients, registry, reconciler and autoscaler, started by the
startup handler and stopped by the cleanup handler."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web

from .actions import QueueWriter
from .autoscaler import Autoscaler
from .firing import ScheduleFiring
from .kube import KubeApi
from .metrics import OperatorMetrics, serve_metrics
from .peering import PeeringCheck, PeeringObject
from .reconciler import Reconciler
from .redis_queues import RedisPools
from .registry import QueueRegistry
from .settings import OperatorConfig

__all__ = ["OperatorRuntime"]

log = logging.getLogger("runnerq_operator.runtime")

_RESTART_DELAY = 1.0


class OperatorRuntime:
    """``peered``: kopf peers and may pause the operator; then the autoscaler serves only the
    queues whose ``serve`` daemon kopf runs (``Reconciler.take``/``release``). ``peerings``:
    the peering objects kopf needs, looked for (and warned about) in the background."""

    def __init__(
        self,
        config: OperatorConfig,
        api: KubeApi | None = None,
        *,
        peered: bool = False,
        peerings: Sequence[PeeringObject] | None = None,
    ) -> None:
        self.config = config
        self.api = api or KubeApi()
        self.pools = RedisPools()
        self.metrics = OperatorMetrics()
        self.registry = QueueRegistry(gated=peered)
        self.writer = QueueWriter(self.api, self.pools, self.metrics, config)
        self.reconciler = Reconciler(self.registry, self.writer, self.api, self.pools, self.metrics)
        self.autoscaler = Autoscaler(self.registry, self.writer, self.pools, self.metrics, config)
        self.firing = ScheduleFiring(self.registry, self.writer, self.pools, self.metrics)
        self.peering = PeeringCheck(self.api, peerings) if peerings else None
        self._task: asyncio.Task[None] | None = None
        self._firing_task: asyncio.Task[None] | None = None
        self._peering_task: asyncio.Task[None] | None = None
        self._metrics_runner: web.AppRunner | None = None
        self.metrics_port: int | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(
            self._supervise("autoscaler", self.autoscaler.run), name="runnerq-autoscaler"
        )
        self._firing_task = asyncio.create_task(
            self._supervise("schedule firing", self.firing.run), name="runnerq-schedules"
        )
        if self.peering is not None:
            self._peering_task = asyncio.create_task(self.peering.run(), name="runnerq-peering")
        if self.config.metrics_port is not None:
            self._metrics_runner = await serve_metrics(
                self.metrics, self.config.metrics_host, self.config.metrics_port
            )
            addresses = self._metrics_runner.addresses
            self.metrics_port = int(addresses[0][1]) if addresses else None
            log.info("operator metrics on port %s", self.metrics_port)

    async def _supervise(self, what: str, run: Callable[[], Awaitable[None]]) -> None:
        """Run the autoscaler (or the schedule firing); an unexpected error restarts it
        instead of stopping scaling (or firing)."""
        while True:
            try:
                await run()
            except asyncio.CancelledError:
                raise
            except Exception:
                self.metrics.errors.labels(what.split()[-1]).inc()
                log.exception("the %s failed; restarting it in %gs", what, _RESTART_DELAY)
                await asyncio.sleep(_RESTART_DELAY)

    @property
    def healthy(self) -> bool:
        tasks = (self._task, self._firing_task)
        return all(t is not None and not t.done() for t in tasks)

    async def stop(self) -> None:
        for task in (self._task, self._firing_task, self._peering_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._firing_task = self._peering_task = None
        if self._metrics_runner is not None:
            await self._metrics_runner.cleanup()
            self._metrics_runner = None
        await self.pools.aclose()
        await self.api.aclose()
