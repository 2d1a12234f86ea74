"""A small HTTP endpoint for a worker process: ``/healthz``, ``/readyz`` and ``/metrics``.

Kubernetes probes and Prometheus scrape it; it needs nothing beyond asyncio (and
prometheus-client for ``/metrics``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

__all__ = ["HealthServer"]

log = logging.getLogger("runnerq.health")


class HealthServer:
    """Serves liveness, readiness (``ready()`` true) and Prometheus metrics."""

    def __init__(
        self,
        ready: Callable[[], bool],
        port: int,
        host: str = "0.0.0.0",
        registry: Any = None,
    ) -> None:
        self._ready = ready
        self.host = host
        self.port = port
        self._registry = registry
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        for sock in self._server.sockets:
            self.port = int(sock.getsockname()[1])
            break
        log.info(
            "health and metrics on http://%s:%d/{healthz,readyz,metrics}", self.host, self.port
        )

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5):
                request = await reader.readline()
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass
            parts = request.decode("latin-1").split()
            path = parts[1].split("?", 1)[0] if len(parts) >= 2 else ""
            status, content_type, body = self._respond(parts[0] if parts else "", path)
            head = (
                f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
        except (TimeoutError, ConnectionError, UnicodeDecodeError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def _respond(self, method: str, path: str) -> tuple[str, str, bytes]:
        text = "text/plain; charset=utf-8"
        if method not in ("GET", "HEAD"):
            return "405 Method Not Allowed", text, b"method not allowed\n"
        if path == "/healthz":
            return "200 OK", text, b"ok\n"
        if path == "/readyz":
            if self._ready():
                return "200 OK", text, b"ready\n"
            return "503 Service Unavailable", text, b"not ready\n"
        if path == "/metrics":
            try:
                import prometheus_client
            except ImportError:
                return "404 Not Found", text, b"install runnerq[prometheus] for /metrics\n"
            registry = self._registry or prometheus_client.REGISTRY
            return (
                "200 OK",
                prometheus_client.CONTENT_TYPE_LATEST,
                prometheus_client.generate_latest(registry),
            )
        return "404 Not Found", text, b"not found\n"
