"""A small asyncio TCP proxy on loopback that injects network trouble between a worker and
Redis: added latency, stalls (a partition: bytes are held, not lost, as TCP would), cut
connections (reset), refused connections, and half-open connections (the peer vanished
without a FIN or RST: existing connections go silent for good while new ones work).

It runs inside the test's event loop and forwards only to the upstream it was given, which
is always a redis-server on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from dataclasses import dataclass, field

__all__ = ["ChaosProxy"]

_CHUNK = 65536


@dataclass(eq=False)
class _Pipe:
    """One client connection and its upstream connection."""

    client_writer: asyncio.StreamWriter
    upstream_writer: asyncio.StreamWriter
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    dead: bool = False  # half-open: never forwards again


class ChaosProxy:
    """Forwards ``127.0.0.1:<port>`` to ``upstream_host:upstream_port`` with faults on demand.

    * ``latency``: seconds added to every chunk, both directions (order is kept);
    * ``stall()`` / ``resume()``: hold every byte (existing and new connections) until resumed;
    * ``hold_replies()`` / ``release_replies()``: the same for what Redis sends only (calls
      reach Redis and run; their replies wait), so a call can be caught applied, unanswered;
    * ``cut()``: reset every open connection now;
    * ``refusing``: new connections are reset as soon as they are accepted;
    * ``half_open()``: current connections go silent forever (no FIN, no RST), new ones work;
    * ``close_after_replies(n)``: let ``n`` more bytes through from Redis, then close that
      connection (Redis going away between two replies).
    """

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        if upstream_host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the chaos proxy only forwards to loopback")
        self.upstream = (upstream_host, upstream_port)
        self.latency = 0.0
        self.refusing = False
        self.port = 0
        self.accepted = 0
        self.cuts = 0
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._replies_flowing = asyncio.Event()
        self._replies_flowing.set()
        self._reply_budget: int | None = None
        self._pipes: set[_Pipe] = set()
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    @property
    def connections(self) -> int:
        return sum(1 for p in self._pipes if not p.dead)

    async def start(self) -> ChaosProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        self._flowing.set()
        self._replies_flowing.set()
        for pipe in list(self._pipes):
            await self._close(pipe, reset=True)

    async def __aenter__(self) -> ChaosProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- faults ------------------------------------------------------------------------

    def stall(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    @property
    def stalled(self) -> bool:
        return not self._flowing.is_set()

    def hold_replies(self) -> None:
        self._replies_flowing.clear()

    def release_replies(self) -> None:
        self._replies_flowing.set()

    async def cut(self) -> int:
        """Reset every open connection; returns how many were cut."""
        pipes = [p for p in self._pipes if not p.dead]
        for pipe in pipes:
            await self._close(pipe, reset=True)
        self.cuts += len(pipes)
        return len(pipes)

    def half_open(self) -> int:
        """Silence every current connection for good, leaving both sockets open."""
        pipes = [p for p in self._pipes if not p.dead]
        for pipe in pipes:
            pipe.dead = True
        return len(pipes)

    def close_after_replies(self, nbytes: int) -> None:
        self._reply_budget = nbytes

    # -- forwarding --------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.refusing:
            _reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            _reset(writer)
            return
        pipe = _Pipe(writer, up_writer)
        self._pipes.add(pipe)
        pipe.tasks.append(asyncio.create_task(self._pump(pipe, reader, up_writer)))
        pipe.tasks.append(asyncio.create_task(self._pump(pipe, up_reader, writer)))

    async def _pump(
        self, pipe: _Pipe, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Read one direction; a sender task writes each chunk once its latency passed."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        pipe.tasks.append(asyncio.create_task(self._send(pipe, queue, writer)))
        try:
            while True:
                try:
                    data = await reader.read(_CHUNK)
                except OSError:
                    break
                if not data:
                    break
                queue.put_nowait((loop.time() + self.latency, data))
        finally:
            queue.put_nowait((0.0, b""))

    async def _send(
        self, pipe: _Pipe, queue: asyncio.Queue[tuple[float, bytes]], writer: asyncio.StreamWriter
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                due, data = await queue.get()
                if not data:
                    break
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                await self._flowing.wait()
                if writer is pipe.client_writer:
                    await self._replies_flowing.wait()
                if pipe.dead:
                    await asyncio.Event().wait()  # half-open: hold the bytes forever
                budget = self._reply_budget
                if budget is not None and writer is pipe.client_writer and len(data) >= budget:
                    self._reply_budget = None
                    writer.write(data[:budget])
                    await writer.drain()
                    break  # then closed, after the bytes let through
                if budget is not None and writer is pipe.client_writer:
                    self._reply_budget = budget - len(data)
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        # One side closed (or failed): close the other, as a real connection would end.
        await self._close(pipe, reset=False)

    async def _close(self, pipe: _Pipe, *, reset: bool) -> None:
        if pipe not in self._pipes:
            return
        if pipe.dead and not reset:
            return  # a half-open connection stays open until the proxy closes
        self._pipes.discard(pipe)
        current = asyncio.current_task()
        for task in pipe.tasks:
            if task is not current:
                task.cancel()
        for writer in (pipe.client_writer, pipe.upstream_writer):
            if reset:
                _reset(writer)
            else:
                with contextlib.suppress(OSError, RuntimeError):
                    writer.close()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with an RST (SO_LINGER 0), as a crashed peer or a middlebox would."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
