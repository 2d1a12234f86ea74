"""A small Kubernetes API client for the console, on aiohttp (which the console needs anyway).

It does two things: list ActivityQueues (``GET .../activityqueues``, in pages) and create an
Event. Where the API server is and who the console is come from the pod's service account
(``in_cluster_config``: ``KUBERNETES_SERVICE_HOST``/``_PORT`` and the token and CA files
the kubelet mounts) or from a kubeconfig (``load_kubeconfig``: a token, a token file or a
client certificate; exec and auth-provider plugins are not supported). The token file of a
service account is read again every minute and after a 401: the kubelet rotates it.

The library never imports the operator or a Kubernetes client package; this module is all
the console knows of Kubernetes besides ``cluster`` (what it shows) and ``kube_audit``.
"""

from __future__ import annotations

import base64
import binascii
import json
import ssl
import tempfile
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from ..errors import ConfigurationError

__all__ = [
    "ACTIVITY_QUEUES",
    "SERVICE_ACCOUNT_DIR",
    "KubeClient",
    "KubeConfig",
    "KubeError",
    "in_cluster_available",
    "in_cluster_config",
    "kubeconfig_from",
    "load_kubeconfig",
]

#: Where the kubelet mounts a pod's service account token, CA bundle and namespace.
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
GROUP = "runnerq.io"
VERSION = "v1alpha1"
ACTIVITY_QUEUES = "activityqueues"
#: How long a token read from a file is used before the file is read again (the kubelet
#: refreshes projected tokens well before they expire).
TOKEN_REREAD_SECONDS = 60.0


class KubeError(Exception):
    """The API server answered with an error: ``status`` (HTTP), ``reason`` (the Status
    object's, e.g. ``Forbidden``, ``Expired``) and its ``message``."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        self.status = status
        self.reason = reason
        self.message = message
        super().__init__(f"{status} {reason}: {message}")


@dataclass(frozen=True, slots=True)
class KubeConfig:
    """Where the API server is and how to authenticate to it. ``token`` or ``token_file``
    (a bearer token), or a client certificate (``cert_pem`` and ``key_pem``); the server's
    certificate is checked against ``ca_pem`` (else the system's CAs) unless ``insecure``."""

    server: str
    ca_pem: str | None = None
    insecure: bool = False
    tls_server_name: str | None = None
    token: str | None = field(default=None, repr=False)
    token_file: str | None = None
    cert_pem: str | None = field(default=None, repr=False)
    key_pem: str | None = field(default=None, repr=False)

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cadata=self.ca_pem) if self.ca_pem else None
        if context is None:
            context = ssl.create_default_context()
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.cert_pem and self.key_pem:
            # load_cert_chain reads files only: write them to a private directory for the call.
            with tempfile.TemporaryDirectory(prefix="runnerq-console-") as directory:
                cert, key = Path(directory, "tls.crt"), Path(directory, "tls.key")
                cert.write_text(self.cert_pem)
                key.touch(mode=0o600)
                key.write_text(self.key_pem)
                context.load_cert_chain(cert, key)
        return context


def _service_url(host: str, port: str) -> str:
    if ":" in host and not host.startswith("["):  # an IPv6 address
        host = f"[{host}]"
    return f"https://{host}:{port}"


def in_cluster_available(environ: Mapping[str, str], directory: str | None = None) -> bool:
    """True in a pod that has a service account token and the API server's address."""
    where = Path(directory or SERVICE_ACCOUNT_DIR)
    return bool(
        environ.get("KUBERNETES_SERVICE_HOST")
        and environ.get("KUBERNETES_SERVICE_PORT")
        and (where / "token").is_file()
    )


def in_cluster_config(environ: Mapping[str, str], directory: str | None = None) -> KubeConfig:
    """The pod's service account: the API server at ``KUBERNETES_SERVICE_HOST``:``_PORT``,
    the token file and CA bundle in ``directory`` (default: where the kubelet mounts them)."""
    where = Path(directory or SERVICE_ACCOUNT_DIR)
    host, port = environ.get("KUBERNETES_SERVICE_HOST"), environ.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        raise ConfigurationError(
            "not in a Kubernetes pod: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT"
            " are not set (give --kubeconfig, or --no-kube)"
        )
    token = where / "token"
    if not token.is_file():
        raise ConfigurationError(
            f"no service account token at {token}: the pod mounts none"
            " (automountServiceAccountToken: false?)"
        )
    ca = where / "ca.crt"
    try:
        ca_pem = ca.read_text() if ca.is_file() else None
    except OSError as exc:
        raise ConfigurationError(f"cannot read the cluster's CA bundle {ca}: {exc}") from None
    return KubeConfig(server=_service_url(host, port), ca_pem=ca_pem, token_file=str(token))


def _parse_document(text: str, path: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        import yaml
    except ImportError:
        raise ConfigurationError(
            f"{path} is YAML: reading it needs PyYAML (pip install pyyaml), or give it as JSON"
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{path} is not a kubeconfig: {exc}") from None


def _named(items: Any, name: str, what: str, path: str) -> dict[str, Any]:
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and item.get("name") == name:
            found = item.get(what)
            if isinstance(found, dict):
                return found
    raise ConfigurationError(f"{path}: no {what} named {name!r}")


def _pem(data: Any, file: Any, base: Path, what: str, path: str) -> str | None:
    """A PEM from ``*-data`` (base64) or from a file (relative to the kubeconfig's folder)."""
    if data:
        try:
            return base64.b64decode(str(data), validate=True).decode("ascii")
        except (binascii.Error, UnicodeDecodeError):
            raise ConfigurationError(f"{path}: {what}-data is not base64 PEM") from None
    if file:
        try:
            return (base / str(file)).read_text()
        except OSError as exc:
            raise ConfigurationError(f"{path}: cannot read {what} {file}: {exc}") from None
    return None


def load_kubeconfig(path: str, context: str | None = None) -> KubeConfig:
    """The cluster and user of the kubeconfig's current context (or ``context``)."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigurationError(f"cannot read the kubeconfig {path}: {exc}") from None
    doc = _parse_document(text, path)
    return kubeconfig_from(doc, Path(path).resolve().parent, path, context)


def kubeconfig_from(
    doc: Any, base: Path, path: str = "the kubeconfig", context: str | None = None
) -> KubeConfig:
    """``load_kubeconfig`` of a parsed document; files it names are relative to ``base``."""
    if not isinstance(doc, dict):
        raise ConfigurationError(f"{path} is not a kubeconfig")
    name = context or doc.get("current-context")
    if not name:
        raise ConfigurationError(f"{path} has no current-context")
    ctx = _named(doc.get("contexts"), str(name), "context", path)
    cluster = _named(doc.get("clusters"), str(ctx.get("cluster")), "cluster", path)
    user = _named(doc.get("users"), str(ctx.get("user")), "user", path) if ctx.get("user") else {}
    if "exec" in user or "auth-provider" in user:
        raise ConfigurationError(
            f"{path}: the user of context {name!r} logs in through an exec or auth-provider"
            " plugin, which the console does not run: give it a kubeconfig with a token or"
            " a client certificate (kubectl create token ...)"
        )
    server = cluster.get("server")
    if not isinstance(server, str) or not server.startswith(("https://", "http://")):
        raise ConfigurationError(f"{path}: cluster {ctx.get('cluster')!r} has no server URL")
    token_file = user.get("tokenFile")
    return KubeConfig(
        server=server.rstrip("/"),
        ca_pem=_pem(
            cluster.get("certificate-authority-data"),
            cluster.get("certificate-authority"),
            base,
            "certificate-authority",
            path,
        ),
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        tls_server_name=cluster.get("tls-server-name") or None,
        token=user.get("token") or None,
        token_file=str(base / str(token_file)) if token_file else None,
        cert_pem=_pem(
            user.get("client-certificate-data"),
            user.get("client-certificate"),
            base,
            "client-certificate",
            path,
        ),
        key_pem=_pem(user.get("client-key-data"), user.get("client-key"), base, "client-key", path),
    )


def _error(status: int, text: str) -> KubeError:
    try:
        found = json.loads(text)
    except ValueError:
        found = None
    if isinstance(found, dict) and found.get("kind") == "Status":
        return KubeError(status, str(found.get("reason") or ""), str(found.get("message") or ""))
    return KubeError(status, "", text[:300])


class KubeClient:
    """Requests to the API server with ``config``'s credentials; each request is given up
    after ``timeout`` seconds. Open it (and use it) inside the event loop; ``aclose`` it."""

    def __init__(self, config: KubeConfig, *, timeout: float = 5.0) -> None:
        self.config = config
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._ssl: ssl.SSLContext | None = None
        self._token: str | None = config.token
        self._token_read = 0.0

    def _bearer(self, force: bool = False) -> str | None:
        if self.config.token_file is None:
            return self._token
        stale = time.monotonic() - self._token_read > TOKEN_REREAD_SECONDS
        if force or stale or self._token is None:
            try:
                self._token = Path(self.config.token_file).read_text().strip()
            except OSError as exc:
                raise KubeError(0, "TokenUnreadable", f"{self.config.token_file}: {exc}") from exc
            self._token_read = time.monotonic()
        return self._token

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            if self.config.server.startswith("https://"):
                self._ssl = self.config.ssl_context()
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                headers={"User-Agent": "runnerq-console", "Accept": "application/json"},
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
    ) -> dict[str, Any]:
        session = self._open()
        for attempt in (1, 2):
            headers: dict[str, str] = {}
            token = self._bearer(force=attempt == 2)
            if token:
                headers["Authorization"] = f"Bearer {token}"
            if body is not None:
                headers["Content-Type"] = "application/json"
            async with session.request(
                method,
                self.config.server + path,
                params=params,
                data=None if body is None else json.dumps(body),
                headers=headers,
                ssl=self._ssl if self._ssl is not None else True,
                server_hostname=self.config.tls_server_name,
            ) as response:
                text = await response.text()
                if response.status == 401 and attempt == 1 and self.config.token_file:
                    continue  # the kubelet may have rotated the token: read it again
                if response.status >= 400:
                    raise _error(response.status, text)
                found = json.loads(text) if text else {}
                if not isinstance(found, dict):
                    raise KubeError(response.status, "", "the answer is not a JSON object")
                return found
        raise AssertionError("unreachable")

    async def list_activity_queues(
        self, namespaces: Sequence[str] = (), *, page: int = 500, most: int = 5000
    ) -> list[dict[str, Any]]:
        """ActivityQueues of every namespace (or of ``namespaces``), read ``page`` at a time
        (``limit`` and ``continue``); at most ``most``. Raises ``KubeError`` or aiohttp's
        errors: a partial list is never returned."""
        base = f"/apis/{GROUP}/{VERSION}"
        paths = (
            [f"{base}/namespaces/{urllib.parse.quote(ns, safe='')}/{ACTIVITY_QUEUES}"
             for ns in namespaces]
            if namespaces
            else [f"{base}/{ACTIVITY_QUEUES}"]
        )  # fmt: skip
        items: list[dict[str, Any]] = []
        for path in paths:
            token = ""
            while len(items) < most:
                params = {"limit": str(min(page, most - len(items)))}
                if token:
                    params["continue"] = token
                found = await self.request("GET", path, params=params)
                items += [i for i in found.get("items") or () if isinstance(i, dict)]
                token = str((found.get("metadata") or {}).get("continue") or "")
                if not token:
                    break
        return items[:most]

    async def create_event(self, namespace: str, event: Mapping[str, Any]) -> None:
        quoted = urllib.parse.quote(namespace, safe="")
        await self.request("POST", f"/api/v1/namespaces/{quoted}/events", body=event)
