"""What every adapter shares: the command line, the JSON-lines protocol, hit counting in the
worker, and the enqueue drivers. Standard library only: it runs in every peer's venv.

Protocol: an adapter writes JSON lines to the file descriptor that was its stdout when it
started (the harness reads them); fd 1 itself is pointed at stderr, so whatever a library prints
goes to the log. A worker writes ``{"event": "mark", ...}`` each time its hit count reaches one of
``--marks``; a producer writes one result object and exits.

Completion counting: each no-op handler calls ``hit(i)`` as its only work. ``hit`` takes the
time and bumps an in-process counter under a lock (no Redis round trip, the same for every
library). Where a library forks a child per job (RQ), ``hit`` in the child writes one line to a
pipe that a thread of the worker process reads.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

__all__ = [
    "AsyncProducer",
    "SyncProducer",
    "hit",
    "main",
]

_out_fd: int | None = None


def _take_stdout() -> None:
    global _out_fd
    if _out_fd is None:
        _out_fd = os.dup(1)
        os.dup2(2, 1)


def emit(obj: dict[str, Any]) -> None:
    data = (json.dumps(obj) + "\n").encode()
    fd = _out_fd if _out_fd is not None else 1
    while data:
        data = data[os.write(fd, data) :]


# -- the worker side -----------------------------------------------------------------------


class Hits:
    """Counts handler starts; writes a mark line when the count reaches each mark and, with
    ``record``, one line per hit (latency runs, where activities are spaced out)."""

    def __init__(self, marks: Sequence[int], record: bool) -> None:
        self.marks = sorted(set(marks))
        self.record = record
        self.count = 0
        self._next = 0
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._pipe_w: int | None = None

    def forward_from_children(self) -> None:
        """Let forked children report their hits through a pipe (read by a thread here)."""
        r, w = os.pipe()
        self._pipe_w = w
        threading.Thread(target=self._read_pipe, args=(r,), daemon=True).start()

    def _read_pipe(self, fd: int) -> None:
        with os.fdopen(fd, "rb") as pipe:
            for line in pipe:
                idx, t = line.split()
                self.count_hit(int(idx), float(t))

    def hit(self, idx: int) -> None:
        t = time.time()
        if self._pipe_w is not None and os.getpid() != self._pid:
            os.write(self._pipe_w, f"{idx} {t!r}\n".encode())
            return
        self.count_hit(idx, t)

    def count_hit(self, idx: int, t: float) -> None:
        with self._lock:
            self.count += 1
            if self.record:
                emit({"event": "hit", "i": idx, "t": t})
            if self._next < len(self.marks) and self.count >= self.marks[self._next]:
                self._next += 1
                emit({"event": "mark", "count": self.count, "time": t})


HITS: Hits | None = None


def hit(idx: int) -> None:
    """The only work of every benchmark handler."""
    hits = HITS
    if hits is not None:
        hits.hit(int(idx))


# -- the producer side ---------------------------------------------------------------------


class AsyncProducer(Protocol):
    supports_bulk: bool

    async def open(self) -> None: ...

    async def one(self, idx: int, delay: float | None) -> None: ...

    async def bulk(self, idxs: list[int]) -> None: ...

    async def close(self) -> None: ...


class SyncProducer(Protocol):
    supports_bulk: bool

    def open(self) -> None: ...

    def one(self, idx: int, delay: float | None) -> None: ...

    def bulk(self, idxs: list[int]) -> None: ...

    def close(self) -> None: ...


_WARMUP = 200
_BULK_CHUNK = 20_000


async def _drive_async(p: AsyncProducer, a: argparse.Namespace) -> dict[str, Any]:
    await p.open()
    try:
        idxs = list(range(a.start, a.start + a.n))
        if a.mode == "single":
            await _async_many(p, list(range(-_WARMUP, 0)), a.callers)
            t0 = time.perf_counter()
            await _async_many(p, idxs, a.callers)
            return {"n": a.n, "seconds": time.perf_counter() - t0}
        if a.mode == "bulk":
            if not p.supports_bulk:
                return {"unsupported": True}
            await p.bulk(list(range(-_WARMUP, 0)))
            t0 = time.perf_counter()
            await p.bulk(idxs)
            return {"n": a.n, "seconds": time.perf_counter() - t0}
        if a.mode == "fill":
            t0 = time.perf_counter()
            if p.supports_bulk:
                for i in range(0, len(idxs), _BULK_CHUNK):
                    await p.bulk(idxs[i : i + _BULK_CHUNK])
            else:
                await _async_many(p, idxs, a.callers)
            return {"n": a.n, "seconds": time.perf_counter() - t0}
        loop = asyncio.get_running_loop()
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            request = json.loads(line)
            t = time.time()
            await p.one(request["i"], request.get("delay"))
            emit({"event": "sent", "i": request["i"], "t": t, "d": time.time() - t})
        return {}
    finally:
        await p.close()


async def _async_many(p: AsyncProducer, idxs: list[int], callers: int) -> None:
    it = iter(idxs)

    async def caller() -> None:
        for idx in it:
            await p.one(idx, None)

    await asyncio.gather(*(caller() for _ in range(max(1, callers))))


def _drive_sync(p: SyncProducer, a: argparse.Namespace) -> dict[str, Any]:
    p.open()
    try:
        idxs = list(range(a.start, a.start + a.n))
        if a.mode == "single":
            _sync_many(p, list(range(-_WARMUP, 0)), a.threads)
            t0 = time.perf_counter()
            _sync_many(p, idxs, a.threads)
            return {"n": a.n, "seconds": time.perf_counter() - t0, "threads": a.threads}
        if a.mode == "bulk":
            if not p.supports_bulk:
                return {"unsupported": True}
            p.bulk(list(range(-_WARMUP, 0)))
            t0 = time.perf_counter()
            p.bulk(idxs)
            return {"n": a.n, "seconds": time.perf_counter() - t0}
        if a.mode == "fill":
            t0 = time.perf_counter()
            if p.supports_bulk:
                for i in range(0, len(idxs), _BULK_CHUNK):
                    p.bulk(idxs[i : i + _BULK_CHUNK])
            else:
                _sync_many(p, idxs, a.threads)
            return {"n": a.n, "seconds": time.perf_counter() - t0}
        for line in sys.stdin:
            request = json.loads(line)
            t = time.time()
            p.one(request["i"], request.get("delay"))
            emit({"event": "sent", "i": request["i"], "t": t, "d": time.time() - t})
        return {}
    finally:
        p.close()


def _sync_many(p: SyncProducer, idxs: list[int], threads: int) -> None:
    it = iter(idxs)
    lock = threading.Lock()
    errors: list[BaseException] = []

    def caller() -> None:
        try:
            while True:
                with lock:
                    idx = next(it, None)
                if idx is None:
                    return
                p.one(idx, None)
        except BaseException as exc:
            errors.append(exc)

    pool = [threading.Thread(target=caller) for _ in range(max(1, threads))]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if errors:
        raise errors[0]


# -- the command line ----------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="benchmark adapter (driven by python -m benchmarks)")
    ap.add_argument("role", choices=["worker", "enqueue"])
    ap.add_argument("--url", required=True)
    ap.add_argument("--queue", default="bench")
    # worker
    ap.add_argument("--concurrency", type=int, default=10)
    ap.add_argument("--marks", default="")
    ap.add_argument("--record", action="store_true")
    ap.add_argument("--scheduling", action="store_true", help="run what delayed jobs need")
    # producer
    # paced: one activity per JSON line read from stdin ({"i": 1, "delay": 0.5}), each
    # answered with {"event": "sent", "i": 1, "t": <time.time() before the enqueue call>,
    # "d": <how long the call took>}
    ap.add_argument("--mode", choices=["single", "bulk", "fill", "paced"], default="single")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--callers", type=int, default=100)
    ap.add_argument("--threads", type=int, default=8)
    return ap.parse_args(argv)


def main(
    *,
    worker: Callable[[argparse.Namespace], None],
    async_producer: Callable[[argparse.Namespace], AsyncProducer] | None = None,
    sync_producer: Callable[[argparse.Namespace], SyncProducer] | None = None,
    fork_per_job: bool = False,
) -> None:
    """Entry point of an adapter: ``worker`` blocks running the library's worker."""
    global HITS
    _take_stdout()
    a = parse_args()
    if a.role == "worker":
        marks = [int(m) for m in a.marks.split(",") if m]
        HITS = Hits(marks, a.record)
        if fork_per_job:
            HITS.forward_from_children()
        emit({"event": "started", "pid": os.getpid()})
        worker(a)
        return
    if async_producer is not None:
        result = asyncio.run(_drive_async(async_producer(a), a))
    elif sync_producer is not None:
        result = _drive_sync(sync_producer(a), a)
    else:
        raise SystemExit("this adapter has no producer")
    emit({"event": "result", **result})


def run_async(coro: Awaitable[Any]) -> None:
    """``asyncio.run`` for a worker coroutine (uvloop is never installed: default loops)."""

    async def wrap() -> None:
        await coro

    asyncio.run(wrap())


def counter() -> Callable[[], int]:
    """A thread-safe id counter (for adapters that need unique job ids)."""
    return itertools.count().__next__
