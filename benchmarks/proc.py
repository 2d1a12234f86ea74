"""Running adapters: producers (run to completion, one JSON result) and workers (long-lived,
a stream of JSON events), each in its library's interpreter, with stderr to a log file."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, Any

from .pins import Library

__all__ = ["Adapter", "AdapterError", "PacedProducer", "WorkerProcess", "tree_rss_bytes"]

REPO = Path(__file__).resolve().parent.parent


class AdapterError(RuntimeError):
    """An adapter failed or gave no answer in time (its log says why)."""


class Adapter:
    """How to run one library's adapter module against one Redis."""

    def __init__(self, lib: Library, python: Path, url: str, log: Path) -> None:
        self.lib = lib
        self.python = python
        self.url = url
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)

    def _command(self, role: str, options: dict[str, Any]) -> list[str]:
        cmd = [str(self.python), "-m", self.lib.module, role, "--url", self.url]
        for key, value in options.items():
            flag = "--" + key.replace("_", "-")
            if value is True:
                cmd.append(flag)
            elif value is not None and value is not False:
                cmd += [flag, str(value)]
        return cmd

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        return env

    def note(self, text: str) -> None:
        with self.log.open("a") as f:
            f.write(f"\n=== {time.strftime('%H:%M:%S')} {text}\n")

    def produce(
        self, timeout: float = 600.0, wrap: tuple[str, ...] = (), **options: Any
    ) -> dict[str, Any]:
        """Run the producer role (under ``wrap``, e.g. a profiler); its result object."""
        self.note(f"enqueue {options}")
        with self.log.open("a") as err:
            try:
                done = subprocess.run(
                    [*wrap, *self._command("enqueue", options)],
                    cwd=REPO,
                    env=self._env(),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=err,
                    timeout=timeout,
                    check=False,
                )
            except subprocess.TimeoutExpired as exc:
                raise AdapterError(f"{self.lib.name} producer timed out ({options})") from exc
        for line in reversed(done.stdout.decode(errors="replace").splitlines()):
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict) and event.get("event") == "result":
                    return event
        raise AdapterError(
            f"{self.lib.name} producer exited with {done.returncode} and no result (see {self.log})"
        )

    def _spawn(self, role: str, options: dict[str, Any]) -> tuple[subprocess.Popen[bytes], IO[str]]:
        self.note(f"{role} {options}")
        err = self.log.open("a")
        popen = subprocess.Popen(
            self._command(role, options),
            cwd=REPO,
            env=self._env(),
            stdin=subprocess.PIPE if role == "enqueue" else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            start_new_session=True,
        )
        return popen, err

    def start_worker(self, **options: Any) -> WorkerProcess:
        return WorkerProcess(*self._spawn("worker", options))

    def start_paced(self) -> PacedProducer:
        """A producer that enqueues one activity per ``send``."""
        return PacedProducer(*self._spawn("enqueue", {"mode": "paced"}))


class _Events:
    """A long-lived adapter process whose stdout is a stream of JSON events: ``key`` events
    ({"i": .., "t": ..}) are collected into ``times`` (first time per index, under a
    condition), the others queued in ``events``."""

    key = ""

    def __init__(self, popen: subprocess.Popen[bytes], err: IO[str]) -> None:
        self.popen = popen
        self.pid = popen.pid
        self._err = err
        self.events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.times: dict[int, float] = {}
        self.durations: dict[int, float] = {}
        self.cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for raw in self.popen.stdout:
            try:
                event = json.loads(raw)
            except ValueError:
                continue
            if event.get("event") == self.key:
                with self.cond:
                    self.times.setdefault(int(event["i"]), float(event["t"]))
                    if "d" in event:
                        self.durations.setdefault(int(event["i"]), float(event["d"]))
                    self.cond.notify_all()
            else:
                self.events.put(event)
        self.events.put(None)
        with self.cond:
            self.cond.notify_all()

    def wait_for(self, idxs: set[int], timeout: float) -> bool:
        """Until every index in ``idxs`` has its time (or the process ended)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not idxs.issubset(self.times.keys()):
                left = deadline - time.monotonic()
                if left <= 0 or self.popen.poll() is not None:
                    return False
                self.cond.wait(min(left, 0.5))
        return True

    def _finish(self) -> None:
        self.popen.wait()
        self._reader.join(timeout=5)
        self._err.close()


class PacedProducer(_Events):
    key = "sent"

    def send(self, idx: int, delay: float | None = None) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write((json.dumps({"i": idx, "delay": delay}) + "\n").encode())
        self.popen.stdin.flush()

    def close(self, timeout: float = 30.0) -> None:
        if self.popen.stdin is not None:
            with contextlib.suppress(OSError):
                self.popen.stdin.close()
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
        self._finish()


class WorkerProcess(_Events):
    """A running worker adapter: its marks and hits, its memory, and stopping it."""

    key = "hit"

    def wait_mark(self, count: int, timeout: float) -> dict[str, Any] | None:
        """The first mark event at or past ``count``; None on timeout or exit."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                event = self.events.get(timeout=left)
            except queue.Empty:
                return None
            if event is None:
                self.events.put(None)
                return None
            if event.get("event") == "mark" and int(event["count"]) >= count:
                return event

    def rss_bytes(self) -> int:
        return tree_rss_bytes(self.pid)

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM to the worker's process group, SIGKILL after ``grace`` seconds."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=grace)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)  # forked children (RQ) too
        self._finish()


def _children() -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        out.setdefault(int(fields[1]), []).append(int(entry.name))
    return out


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of a process and all its descendants, from /proc."""
    children = _children()
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += _rss_kb(p)
        todo += children.get(p, [])
    return total * 1024
