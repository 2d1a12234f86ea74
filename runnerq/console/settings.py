"""``ConsoleSettings``: what ``runnerq console`` is started with, checked before it serves."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from ..config import DEFAULT_REDIS_URL
from ..errors import ConfigurationError
from ..keys import validate_queue_name
from .auth import Role
from .kube import KubeConfig

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "DEFAULT_SSE_INTERVAL",
    "ConsoleSettings",
    "is_loopback",
]

DEFAULT_HOST = "127.0.0.1"
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
DEFAULT_PORT = 8080
# The shortest time between two updates of one live stream (seconds).
DEFAULT_SSE_INTERVAL = 1.0


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class ConsoleSettings:
    """How the console serves and whom it lets in (see docs/console.md, "Authentication").

    ``queues`` limits the console to those queues (empty: every queue in the Redis).
    ``tokens_file`` holds hashed bearer tokens; ``trusted_proxies`` are the CIDRs whose
    ``X-Forwarded-User`` / ``X-Forwarded-Groups`` headers are believed, with ``group_roles``
    mapping groups to roles and ``proxy_default_role`` for a user in none of them (None: such
    a user is refused). ``read_only`` makes everyone a viewer. ``no_auth`` lets everyone in as
    an admin (a viewer when read-only) and is refused unless ``host`` is a loopback address.
    """

    redis_url: str = DEFAULT_REDIS_URL
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    queues: tuple[str, ...] = ()
    tokens_file: str | None = None
    trusted_proxies: tuple[str, ...] = ()
    group_roles: dict[str, Role] = field(default_factory=dict)
    proxy_default_role: Role | None = Role.VIEWER
    read_only: bool = False
    no_auth: bool = False
    sse_interval: float = DEFAULT_SSE_INTERVAL
    # Secure cookies (the CSRF cookie): set when the console is reached over HTTPS.
    secure_cookies: bool = False
    # In a cluster (docs/console.md, "In Kubernetes"): read ActivityQueues through ``kube``
    # (the pod's service account or a kubeconfig, resolved by the command), only in
    # ``kube_namespaces`` when given, and post each audited action as an Event on its
    # ActivityQueue (``kube_events``). None: the overview's ``cluster`` is always null.
    kube: KubeConfig | None = None
    kube_namespaces: tuple[str, ...] = ()
    kube_events: bool = False

    def __post_init__(self) -> None:
        for queue in self.queues:
            validate_queue_name(queue)
        if not 0 <= self.port <= 65535:
            raise ConfigurationError(f"port must be 0-65535, not {self.port}")
        if self.no_auth and not is_loopback(self.host):
            raise ConfigurationError(
                f"--no-auth serves every action to whoever reaches the port: it is allowed only"
                f" on a loopback address (127.0.0.1, ::1), not on {self.host!r}"
            )
        if self.no_auth and (self.tokens_file or self.trusted_proxies):
            raise ConfigurationError(
                "--no-auth goes with neither --tokens-file nor --trusted-proxy"
            )
        if not self.no_auth and not self.tokens_file and not self.trusted_proxies:
            raise ConfigurationError(
                "the console needs a way to know who calls: give --tokens-file or"
                " --trusted-proxy (or --no-auth, on a loopback address only)"
            )
        for cidr in self.trusted_proxies:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ConfigurationError(
                    f"--trusted-proxy {cidr!r} is not an address or CIDR"
                ) from None
        if self.kube is None and (self.kube_namespaces or self.kube_events):
            raise ConfigurationError(
                "--kube-namespace and --kube-events need a cluster: run the console in a pod"
                " with a service account token, or give --kubeconfig"
            )
        for namespace in self.kube_namespaces:
            if not _DNS_LABEL.fullmatch(namespace):
                raise ConfigurationError(
                    f"--kube-namespace {namespace!r} is not a namespace name (a DNS label)"
                )
        if not self.sse_interval >= 0.05:
            raise ConfigurationError(f"sse_interval must be >= 0.05 s, not {self.sse_interval!r}")
