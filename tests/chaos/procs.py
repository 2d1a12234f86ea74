"""Real worker processes (``python -m runnerq worker ...``) and the Redis servers of a run."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support.redis_server import RedisServer

__all__ = ["ROOT", "ChaosRedis", "WorkerProc", "libfaketime"]

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.chaos.app:engine"


def libfaketime() -> Path | None:
    """Debian's libfaketime (package ``faketime``), if installed."""
    for candidate in (
        Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"),
        Path("/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1"),
        Path("/usr/lib/faketime/libfaketime.so.1"),
    ):
        if candidate.exists():
            return candidate
    return None


class ChaosRedis(RedisServer):
    """A ``RedisServer`` whose AOF fsync policy is re-applied after every (re)start."""

    def __init__(self, *, appendonly: bool = False, appendfsync: str = "everysec") -> None:
        super().__init__(appendonly=appendonly)
        self.appendfsync = appendfsync

    def start(self) -> ChaosRedis:
        super().start()
        if self.appendonly and self.appendfsync != "everysec":
            cli = shutil.which("redis-cli")
            if cli is None:
                raise RuntimeError("redis-cli is not on PATH (Debian package redis-tools)")
            subprocess.run(
                [cli, "-p", str(self.port), "CONFIG", "SET", "appendfsync", self.appendfsync],
                check=True,
                capture_output=True,
            )
        return self


class WorkerProc:
    """One ``runnerq worker`` process running the chaos app, logging to a file."""

    def __init__(
        self,
        name: str,
        redis_url: str,
        queue: str,
        log_dir: Path,
        env: dict[str, str],
        app: str = APP,
    ) -> None:
        self.name = name
        self.redis_url = redis_url
        self.queue = queue
        self.log_path = log_dir / f"{name}.log"
        self.env = env
        self.app = app
        self.process: subprocess.Popen[bytes] | None = None
        self.signalled: str | None = None
        self.exit_code: int | None = None

    def start(self) -> WorkerProc:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "runnerq",
                    "worker",
                    self.app,
                    "--redis-url",
                    self.redis_url,
                    "--queue",
                    self.queue,
                    "--log-level",
                    "INFO",
                ],
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT), **self.env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    @property
    def ready(self) -> bool:
        return "running queue" in self.log()

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, its leases stay until they expire."""
        if self.alive:
            assert self.process is not None
            self.signalled = "SIGKILL"
            self.process.send_signal(signal.SIGKILL)
            self.exit_code = self.process.wait()

    async def terminate(self, timeout: float) -> int | None:
        """SIGTERM and wait; ``None`` if it did not exit within ``timeout`` (then killed)."""
        if self.process is None:
            return None
        if self.process.poll() is not None:
            self.exit_code = self.process.returncode
            return self.exit_code
        self.signalled = "SIGTERM"
        self.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                self.exit_code = code
                return code
            await asyncio.sleep(0.02)
        self.kill()
        self.exit_code = None
        return None

    def cleanup(self) -> None:
        if self.alive:
            self.kill()
