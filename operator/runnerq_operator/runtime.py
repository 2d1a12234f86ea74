"""One running operator: its clients, registry, reconciler and autoscaler, started by the
startup handler and stopped by the cleanup handler."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from aiohttp import web

from .actions import QueueWriter
from .autoscaler import Autoscaler
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
        self.peering = PeeringCheck(self.api, peerings) if peerings else None
        self._task: asyncio.Task[None] | None = None
        self._peering_task: asyncio.Task[None] | None = None
        self._metrics_runner: web.AppRunner | None = None
        self.metrics_port: int | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._supervise(), name="runnerq-autoscaler")
        if self.peering is not None:
            self._peering_task = asyncio.create_task(self.peering.run(), name="runnerq-peering")
        if self.config.metrics_port is not None:
            self._metrics_runner = await serve_metrics(
                self.metrics, self.config.metrics_host, self.config.metrics_port
            )
            addresses = self._metrics_runner.addresses
            self.metrics_port = int(addresses[0][1]) if addresses else None
            log.info("operator metrics on port %s", self.metrics_port)

    async def _supervise(self) -> None:
        """Run the autoscaler; an unexpected error restarts it instead of stopping scaling."""
        while True:
            try:
                await self.autoscaler.run()
            except asyncio.CancelledError:
                raise
            except Exception:
                self.metrics.errors.labels("autoscaler").inc()
                log.exception("the autoscaler failed; restarting it in %gs", _RESTART_DELAY)
                await asyncio.sleep(_RESTART_DELAY)

    @property
    def healthy(self) -> bool:
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        for task in (self._task, self._peering_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._peering_task = None
        if self._metrics_runner is not None:
            await self._metrics_runner.cleanup()
            self._metrics_runner = None
        await self.pools.aclose()
        await self.api.aclose()
