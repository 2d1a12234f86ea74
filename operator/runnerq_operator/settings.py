"""The operator's own settings, read from ``RUNNERQ_OPERATOR_*`` environment variables by
the startup handler (never at import time). Unknown variables of that prefix are refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["PREFIX", "OperatorConfig", "SettingsError"]

PREFIX = "RUNNERQ_OPERATOR_"


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
    #: Longest delay between polls of a queue whose Redis does not answer.
    max_backoff: float = 60.0
    #: Queues due within this many seconds of each other are read in the same round trip.
    coalesce: float = 0.25
    #: kopf peering name; None runs standalone (one replica, Deployment strategy Recreate).
    peering: str | None = None
    #: kopf peering priority: of the live operators of one peering the highest one works, the
    #: others pause. None keeps kopf's (0, or ``kopf run --priority``).
    priority: int | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> OperatorConfig:
        known = {
            "METRICS_HOST",
            "METRICS_PORT",
            "STATUS_INTERVAL",
            "API_CONCURRENCY",
            "MAX_BACKOFF",
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
            max_backoff=_number(PREFIX + "MAX_BACKOFF", ours.get("MAX_BACKOFF", "60")),
            coalesce=_number(PREFIX + "COALESCE", ours.get("COALESCE", "0.25")),
            peering=ours.get("PEERING") or None,
            priority=_integer(PREFIX + "PRIORITY", priority) if priority else None,
        )


def _integer(name: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, not {text!r}") from None


def _number(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise SettingsError(f"{name} must be a number, not {text!r}") from None
    if value < 0:
        raise SettingsError(f"{name} must be >= 0, not {text!r}")
    return value
