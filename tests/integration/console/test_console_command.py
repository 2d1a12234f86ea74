"""``runnerq console`` as a real process on a real port."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from tests.support.polling import eventually
from tests.support.processes import terminate
from tests.support.redis_server import free_port

ROOT = Path(__file__).resolve().parents[3]


def run(*args: str, redis_url: str, quiet: bool = False) -> subprocess.Popen[bytes]:
    out = subprocess.DEVNULL if quiet else subprocess.PIPE
    return subprocess.Popen(
        [sys.executable, "-m", "runnerq", "console", "--redis-url", redis_url, *args],
        cwd=ROOT,
        env={**os.environ},
        stdout=out,
        stderr=out,
        stdin=subprocess.DEVNULL,
    )


def fetch(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def test_console_serves_on_its_port(redis_url: str) -> None:
    port = free_port()
    process = run("--no-auth", "--port", str(port), redis_url=redis_url, quiet=True)
    try:

        async def up() -> bool:
            try:
                return fetch(f"http://127.0.0.1:{port}/healthz")[0] == 200
            except OSError:
                assert process.poll() is None, "the console exited"
                return False

        await eventually(up, timeout=30, interval=0.1, what="the console answering")
        status, doc = fetch(f"http://127.0.0.1:{port}/api/session")
        assert status == 200
        assert doc["identity"] == {"name": "anonymous", "role": "admin", "via": "none"}
    finally:
        terminate(process)


def test_console_refuses_no_auth_off_loopback_and_no_way_in(redis_url: str) -> None:
    for args, words in [
        (("--no-auth", "--host", "0.0.0.0"), b"loopback"),
        ((), b"--tokens-file"),
        (("--tokens-file", "/nonexistent/tokens"), b"cannot read the tokens file"),
        (("--trusted-proxy", "10.0.0.0/8", "--group-role", "ops"), b"GROUP=ROLE"),
    ]:
        process = run(*args, redis_url=redis_url)
        _, err = process.communicate(timeout=60)
        assert process.returncode == 2, (args, err)
        assert words in err, (args, err)
