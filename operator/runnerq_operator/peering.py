"""kopf peering, as the operator uses it.

Peering is kopf's, not a leader election: every operator of one peering name writes a
keep-alive with its priority into a ``KopfPeering`` (``--namespace``) or ``ClusterKopfPeering``
object; an operator that sees a live peer of a higher priority *pauses*, and operators of the
same priority all pause. kopf pauses what it runs (watch streams, handlers, daemons); the
autoscaler is our own task, so it serves a queue only while kopf runs the queue's ``serve``
daemon (see ``registry.QueueRegistry.take``/``release``), which kopf stops when it pauses.

kopf creates neither the peering CRDs nor the peering object, and an operator whose peering
object is missing stays paused for good, saying so only at debug level. ``PeeringCheck`` looks
for the object at startup (and again until it appears), logs a warning that names what is
missing and how to create it, and reports it in ``/healthz``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import kopf

from .kube import ApiError, KubeApi
from .settings import OperatorConfig

__all__ = [
    "DOCS",
    "PeeringCheck",
    "PeeringObject",
    "PeeringReport",
    "configure_peering",
    "expected_peerings",
    "missing_peering_message",
]

log = logging.getLogger("runnerq_operator.peering")

DOCS = "docs/operator.md#several-operators-kopf-peering"
_CRD_FILE = "operator/crd/kopf-peering.yaml"
_GLOB = frozenset("*?[]!")


def configure_peering(settings: kopf.OperatorSettings, config: OperatorConfig) -> bool:
    """Apply ``RUNNERQ_OPERATOR_PEERING``/``_PRIORITY`` over kopf's own settings (which
    ``kopf run --peering/--priority/--standalone`` may have set), and return whether kopf
    peers, i.e. may pause this operator.

    Without a peering name from either, the operator runs standalone: kopf's default would
    peer through an object named ``default`` when its CRD happens to exist.
    """
    peering = settings.peering
    if config.peering:
        peering.name = config.peering
        peering.standalone = False
        peering.mandatory = True
    elif not peering.mandatory:  # no `kopf run --peering NAME` either
        peering.standalone = True
    if config.priority is not None:
        peering.priority = config.priority
    return not peering.standalone


@dataclass(frozen=True, slots=True)
class PeeringObject:
    """A peering object kopf needs: a ``ClusterKopfPeering`` (``namespace`` None), or a
    ``KopfPeering`` in ``namespace``, or in any namespace (``anywhere``: the namespaces the
    operator serves are not known by name, e.g. patterns, or started by ``kopf run``)."""

    name: str
    namespace: str | None = None
    anywhere: bool = False

    @property
    def kind(self) -> str:
        return (
            "KopfPeering" if self.namespace is not None or self.anywhere else "ClusterKopfPeering"
        )

    @property
    def path(self) -> str:
        """The list to look for it in (with a field selector on its name)."""
        if self.namespace is not None:
            return f"/apis/kopf.dev/v1/namespaces/{self.namespace}/kopfpeerings"
        return f"/apis/kopf.dev/v1/{'kopfpeerings' if self.anywhere else 'clusterkopfpeerings'}"

    def describe(self) -> str:
        where = ""
        if self.namespace is not None:
            where = f" in namespace {self.namespace!r}"
        elif self.anywhere:
            where = " in any namespace"
        return f"{self.kind} {self.name!r}{where}"

    def manifest(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": self.name}
        if self.namespace is not None:
            meta["namespace"] = self.namespace
        return {"apiVersion": "kopf.dev/v1", "kind": self.kind, "metadata": meta}


def expected_peerings(
    name: str, *, clusterwide: bool, namespaces: Sequence[str] | None
) -> list[PeeringObject]:
    """The objects kopf keeps its keep-alives in: the ``ClusterKopfPeering`` of an operator
    that serves every namespace, else a ``KopfPeering`` in each namespace it serves.
    ``namespaces`` None (unknown) or holding patterns: one somewhere must do."""
    if clusterwide:
        return [PeeringObject(name)]
    if namespaces is None or any(_GLOB & set(ns) for ns in namespaces):
        exact = [] if namespaces is None else [ns for ns in namespaces if not _GLOB & set(ns)]
        return [PeeringObject(name, ns) for ns in exact] + [PeeringObject(name, anywhere=True)]
    return [PeeringObject(name, ns) for ns in dict.fromkeys(namespaces)]


@dataclass(slots=True)
class PeeringReport:
    """What one check of the ``expected`` objects found: the ``missing`` ones, or that the
    CRDs are missing altogether, or the ``error`` that kept it from looking."""

    expected: list[PeeringObject]
    missing: list[PeeringObject] = field(default_factory=list)
    crds_missing: bool = False
    error: str | None = None
    forbidden: bool = False

    @property
    def name(self) -> str:
        return self.expected[0].name

    @property
    def ok(self) -> bool:
        return not self.missing and not self.crds_missing and self.error is None

    def health(self) -> dict[str, Any]:
        """For ``/healthz``: ``ok`` is False while kopf keeps the operator paused for it."""
        found: dict[str, Any] = {"name": self.name, "ok": self.ok}
        if self.crds_missing:
            found["missing"] = ["CRDs kopfpeerings.kopf.dev, clusterkopfpeerings.kopf.dev"]
        elif self.missing:
            found["missing"] = [o.describe() for o in self.missing]
        if self.error is not None:
            found["error"] = self.error
        return found


def _create_command(obj: PeeringObject) -> str:
    manifest = json.dumps(obj.manifest(), separators=(",", ":"))
    return f"echo '{manifest}' | kubectl apply -f -" + (" -n NAMESPACE" if obj.anywhere else "")


def missing_peering_message(report: PeeringReport) -> str | None:
    """The warning for a report that is not ok: what is missing, what that does, and the
    commands that fix it."""
    if report.ok:
        return None
    if report.error is not None:
        hint = (
            "; bind the peering ClusterRole (operator/rbac/peering-clusterrole.yaml) to the"
            " operator's ServiceAccount"
            if report.forbidden
            else ""
        )
        return (
            f"cannot check the kopf peering object {report.name!r}: {report.error}{hint}"
            f" (see {DOCS})"
        )
    paused = "kopf keeps this operator paused, serving no ActivityQueue, until it exists"
    if report.crds_missing:
        create = "; ".join(_create_command(o) for o in report.expected)
        return (
            f"peering {report.name!r} is on, but the kopf peering CRDs are not installed:"
            f" {paused}. Install them: kubectl apply --server-side -f {_CRD_FILE}; then create"
            f" the peering object: {create} (see {DOCS})"
        )
    what = ", ".join(o.describe() for o in report.missing)
    verb = "does" if len(report.missing) == 1 else "do"
    create = "; ".join(_create_command(o) for o in report.missing)
    return (
        f"peering {report.name!r} is on, but {what} {verb} not exist: {paused}."
        f" Create it: {create} (see {DOCS})"
    )


class PeeringCheck:
    """Looks for the peering objects through the operator's own API client (a list with a
    field selector on the name: the peering ClusterRole's ``list``): at once, then every
    ``interval`` seconds until all are there. Warns when something is missing (again every
    ``remind`` seconds while it is), says when it has appeared, and keeps the last report
    for ``/healthz``."""

    def __init__(
        self,
        api: KubeApi,
        expected: Sequence[PeeringObject],
        *,
        interval: float = 30.0,
        remind: float = 300.0,
    ) -> None:
        if not expected:
            raise ValueError("no peering object to look for")
        self.api = api
        self.expected = list(expected)
        self.interval = interval
        self.remind = remind
        self.report: PeeringReport | None = None
        self._warned_at: float | None = None

    async def check(self) -> PeeringReport:
        report = PeeringReport(self.expected)
        for obj in self.expected:
            try:
                found = await self.api.request(
                    "GET", obj.path, params={"fieldSelector": f"metadata.name={obj.name}"}
                )
            except ApiError as exc:
                if exc.status == 404:  # the list itself: the resource (its CRD) is not there
                    report.crds_missing = True
                else:
                    report.error = str(exc)
                    report.forbidden = exc.status == 403
                break
            if not found.get("items"):
                report.missing.append(obj)
        return report

    async def run(self) -> None:
        while True:
            try:
                report = await self.check()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # e.g. the API server unreachable: say so, try again
                report = PeeringReport(self.expected, error=f"{type(exc).__name__}: {exc}")
            self.record(report, asyncio.get_running_loop().time())
            if report.ok:
                return
            await asyncio.sleep(self.interval)

    def record(self, report: PeeringReport, now: float) -> None:
        """Keep ``report`` and log what changed (pure but for the log)."""
        before, self.report = self.report, report
        if report.ok:
            late = " now" if before is not None and not before.ok else ""
            found = ", ".join(o.describe() for o in report.expected)
            log.info("kopf peering %r: %s found%s", report.name, found, late)
            return
        changed = before is None or before.health() != report.health()
        if changed or self._warned_at is None or now - self._warned_at >= self.remind:
            log.warning("%s", missing_peering_message(report))
            self._warned_at = now

    def health(self) -> dict[str, Any]:
        if self.report is None:
            return {"name": self.expected[0].name, "ok": None}  # not checked yet
        return self.report.health()
