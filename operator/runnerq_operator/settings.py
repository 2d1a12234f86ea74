"""The operator's own settings, read from ``RUNNERQ_OPERATOR_*`` environment variables at the
entry point (never at import time), before kopf starts. Unknown variables of that prefix are
refused: ``python -m runnerq_operator`` then exits with status 2 and the one-line message.
"""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["AUTO_PRIORITY_MAX", "PREFIX", "OperatorConfig", "SettingsError", "auto_priority"]

PREFIX = "RUNNERQ_OPERATOR_"

#: ``RUNNERQ_OPERATOR_PRIORITY=auto`` gives a priority in 1..AUTO_PRIORITY_MAX.
AUTO_PRIORITY_MAX = 1_000_000


def auto_priority(name: str) -> int:
    """A kopf peering priority from a pod's name (``auto``): stable for the pod, and different
    for the pods of one Deployment but with a chance of about n²/2,000,000 for n pods. kopf
    pauses every operator of the highest priority when two share it, so replicas need their
    own."""
    digest = hashlib.sha256(name.encode()).digest()
    return int.from_bytes(digest[:8], "big") % AUTO_PRIORITY_MAX + 1


class SettingsError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class OperatorConfig:
    """``metrics_port`` None turns /metrics off (``RUNNERQ_OPERATOR_METRICS_PORT=off``)."""

    metrics_host: str = "0.0.0.0"
    metrics_port: int | None = 9090
    #: Least seconds between two status patches that would change only depth figures.
    status_interval: float = 5.0
    #: Most Kubernetes API requests in flight at once during a poll round.
    api_concurrency: int = 20
    #: Queues due within this many seconds of each other are read in the same round trip.
    coalesce: float = 0.25
    #: kopf peering name; None runs standalone (one replica, Deployment strategy Recreate).
    peering: str | None = None
    #: kopf peering priority: of the live operators of one peering the highest one works, the
    #: others pause. None keeps kopf's (0, or ``kopf run --priority``). ``auto`` in the
    #: environment: ``auto_priority`` of the pod's name: ``POD_ID`` (kopf's own variable for
    #: its peer identity, which the chart sets from the pod's name), else the host name.
    priority: int | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, hostname: str | None = None) -> OperatorConfig:
        known = {
            "METRICS_HOST",
            "METRICS_PORT",
            "STATUS_INTERVAL",
            "API_CONCURRENCY",
            "COALESCE",
            "PEERING",
            "PRIORITY",
        }
        ours = {k.removeprefix(PREFIX): v for k, v in env.items() if k.startswith(PREFIX)}
        unknown = sorted(set(ours) - known)
        if unknown:
            raise SettingsError(
                f"unknown settings: {', '.join(PREFIX + u for u in unknown)}"
                f" (known: {', '.join(PREFIX + k for k in sorted(known))})"
            )
        port_text = ours.get("METRICS_PORT", "9090").strip().lower()
        port = None if port_text in ("off", "") else _number(PREFIX + "METRICS_PORT", port_text)
        priority = ours.get("PRIORITY", "").strip()
        return cls(
            metrics_host=ours.get("METRICS_HOST", "0.0.0.0"),
            metrics_port=None if port is None else int(port),
            status_interval=_number(PREFIX + "STATUS_INTERVAL", ours.get("STATUS_INTERVAL", "5")),
            api_concurrency=max(
                1, int(_number(PREFIX + "API_CONCURRENCY", ours.get("API_CONCURRENCY", "20")))
            ),
            coalesce=_number(PREFIX + "COALESCE", ours.get("COALESCE", "0.25")),
            peering=ours.get("PEERING") or None,
            priority=_priority(priority, env.get("POD_ID") or hostname) if priority else None,
        )


def _priority(text: str, hostname: str | None) -> int:
    if text.lower() == "auto":
        return auto_priority(hostname if hostname is not None else socket.gethostname())
    try:
        return int(text)
    except ValueError:
        raise SettingsError(
            f"{PREFIX}PRIORITY must be an integer or 'auto', not {text!r}"
        ) from None


def _number(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise SettingsError(f"{name} must be a number, not {text!r}") from None
    if value < 0:
        raise SettingsError(f"{name} must be >= 0, not {text!r}")
    return value
