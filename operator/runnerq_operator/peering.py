"""kopf peering, as the operator uses it.

Peering is kopf's, not a leader election: every operator of one peering name writes a
keep-alive with its priority into a ``KopfPeering`` (``--namespace``) or ``ClusterKopfPeering``
object; an operator that sees a live peer of a higher priority *pauses*, and operators of the
same priority all pause. kopf pauses what it runs (watch streams, handlers, daemons); the
autoscaler is our own task, so it serves a queue only while kopf runs the queue's ``serve``
daemon (see ``registry.QueueRegistry.take``/``release``), which kopf stops when it pauses.
"""

from __future__ import annotations

import kopf

from .settings import OperatorConfig

__all__ = ["configure_peering"]


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
