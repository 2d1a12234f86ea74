"""A thin Kubernetes API client on aiohttp (which kopf already brings).

kopf watches ActivityQueues and runs the handlers; this client does the operator's own
writes: server-side apply of the owned objects, status patches, Events, and reading
Secrets and pods. Credentials come from kopf's own login functions (in-cluster service
account first, then the kubeconfig), re-read once when the API server answers 401.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import socket
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import kopf

from .naming import FIELD_MANAGER, GROUP, PLURAL, VERSION

__all__ = ["ApiError", "KubeApi", "object_path"]

_PLURALS = {"Deployment": "deployments", "ConfigMap": "configmaps", "Pod": "pods"}

Login = Callable[[], kopf.ConnectionInfo]


class ApiError(Exception):
    """The API server refused a request: ``status`` is the HTTP status, ``reason`` the
    Status object's reason (e.g. ``Forbidden``, ``NotFound``, ``Invalid``)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        self.status = status
        self.reason = reason
        self.message = message
        super().__init__(f"{status} {reason}: {message}")


def _base(api_version: str) -> str:
    return "/api/v1" if api_version == "v1" else f"/apis/{api_version}"


def object_path(api_version: str, plural: str, namespace: str, name: str | None = None) -> str:
    path = f"{_base(api_version)}/namespaces/{namespace}/{plural}"
    return f"{path}/{urllib.parse.quote(name, safe='')}" if name else path


def default_login() -> kopf.ConnectionInfo:
    settings = kopf.OperatorSettings()
    info = kopf.login_with_service_account(settings=settings) or kopf.login_with_kubeconfig(
        settings=settings
    )
    if info is None:
        raise kopf.LoginError("no service account token and no kubeconfig: cannot reach the API")
    return info


class KubeApi:
    def __init__(self, login: Login = default_login, *, timeout: float = 30.0) -> None:
        self._login = login
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._server = ""
        self.instance = socket.gethostname()

    def _open(self) -> aiohttp.ClientSession:
        info = self._login()
        self._server = info.server.rstrip("/")
        headers = {"User-Agent": "runnerq-operator", **info.as_http_headers()}
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=50, ssl=info.as_ssl_context()),
            headers=headers,
            timeout=self._timeout,
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
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        for attempt in (1, 2):
            session = self._session or self._open()
            data = None if body is None else json.dumps(body)
            headers = {"Content-Type": content_type} if body is not None else {}
            async with session.request(
                method, self._server + path, params=params, data=data, headers=headers
            ) as response:
                text = await response.text()
                if response.status == 401 and attempt == 1:
                    await self.aclose()  # the token may have been rotated: log in again
                    continue
                if response.status >= 400:
                    raise _error(response.status, text)
                return json.loads(text) if text else {}
        raise AssertionError("unreachable")

    async def get(self, path: str) -> dict[str, Any] | None:
        try:
            return await self.request("GET", path)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply ``obj`` as the operator's field manager, taking over conflicts."""
        meta = obj["metadata"]
        path = object_path(
            obj["apiVersion"], _PLURALS[obj["kind"]], meta["namespace"], meta["name"]
        )
        return await self.request(
            "PATCH",
            path,
            params={"fieldManager": FIELD_MANAGER, "force": "true"},
            body=obj,
            content_type="application/apply-patch+yaml",
        )

    async def merge_patch(self, path: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        return await self.request(
            "PATCH",
            path,
            params={"fieldManager": FIELD_MANAGER},
            body=patch,
            content_type="application/merge-patch+json",
        )

    async def patch_status(
        self, namespace: str, name: str, status: Mapping[str, Any]
    ) -> dict[str, Any]:
        path = object_path(f"{GROUP}/{VERSION}", PLURAL, namespace, name) + "/status"
        return await self.merge_patch(path, {"status": status})

    async def list(
        self, api_version: str, plural: str, namespace: str, label_selector: str
    ) -> list[dict[str, Any]]:
        found = await self.request(
            "GET",
            object_path(api_version, plural, namespace),
            params={"labelSelector": label_selector},
        )
        return list(found.get("items", []))

    async def secret_value(self, namespace: str, name: str, key: str) -> str:
        """A Secret's value; ``LookupError`` with a readable message when it is missing."""
        secret = await self.get(object_path("v1", "secrets", namespace, name))
        if secret is None:
            raise LookupError(f"Secret {namespace}/{name} does not exist")
        data = secret.get("data") or {}
        if key not in data:
            raise LookupError(f"Secret {namespace}/{name} has no key {key!r}")
        return base64.b64decode(data[key]).decode("utf-8")

    async def post_event(
        self, obj: Mapping[str, Any], type_: str, reason: str, message: str
    ) -> None:
        """An Event about ``obj`` (core/v1, as ``kubectl describe`` shows them)."""
        meta = obj["metadata"]
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": obj.get("apiVersion", f"{GROUP}/{VERSION}"),
                "kind": obj.get("kind", "ActivityQueue"),
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": FIELD_MANAGER},
            "reportingComponent": FIELD_MANAGER,
            "reportingInstance": self.instance,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        await self.request("POST", object_path("v1", "events", meta["namespace"]), body=event)


def _error(status: int, text: str) -> ApiError:
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = {}
    if not isinstance(parsed, dict):
        parsed = {}
    return ApiError(status, str(parsed.get("reason", "")), str(parsed.get("message", text[:500])))
