"""The console in a real browser: ``runnerq console`` as a process on a free loopback port,
over a database of its own on the session's redis-server, and Debian's Chromium driven by
Playwright (``/usr/bin/chromium``: ``make setup`` installs it; nothing is downloaded).

One console and one browser serve the whole folder (package scope); each test gets a fresh
browser context (no cookies, no session storage) from ``open_page(role)``. Screenshots go to
``test-artifacts/browser/`` (``shot``), a failed test's last page too; the run's summary names
the folder.

Playwright's sync API keeps its own event loop running in the thread while it is started, so
this folder's tests are plain functions: what they need from runnerq's async client runs in
a thread of its own (``run_async``), and the browser is stopped when the folder is done,
before the async tests of other folders run.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Page,
    Playwright,
    expect,
    sync_playwright,
)

from runnerq.console.auth import hash_token
from tests.support.processes import terminate
from tests.support.redis_server import RedisServer, free_port

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
CHROMIUM = "/usr/bin/chromium"
TOKENS = {role: f"browser-{role}-token" for role in ("viewer", "operator", "admin")}
# The browser tests' own database on the session's redis-server: the overview shows every
# queue of its Redis, and other folders' tests leave hundreds in database 0.
DATABASE = 7
# Seconds between two live updates of a page (the console's --live-interval).
LIVE_INTERVAL = 0.25
# How long `expect` waits for what the page shows (a loaded machine runs the whole suite).
EXPECT_TIMEOUT_MS = 15_000
# The app of the workers the tests start (tests/browser/app.py).
APP = "tests.browser.app:engine"

T = TypeVar("T")
_FAILED = pytest.StashKey[bool]()


def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> None:
    if call.when == "call" and call.excinfo is not None:
        item.stash[_FAILED] = True


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if ARTIFACTS.is_dir() and any(ARTIFACTS.iterdir()):
        count = sum(1 for _ in ARTIFACTS.glob("*.png"))
        terminalreporter.write_line(f"browser screenshots ({count}): {ARTIFACTS}")


def run_async(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``make()`` to the end on an event loop of its own, in another thread."""
    import asyncio

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result(timeout=120)


@dataclass
class Console:
    """``runnerq console`` as a process: its URL and the Redis URL it reads."""

    url: str
    redis_url: str
    process: subprocess.Popen[bytes]
    log: Path


def _wait_healthy(console: Console, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if console.process.poll() is not None:
            raise RuntimeError(
                f"runnerq console exited with {console.process.returncode}:\n"
                + console.log.read_text(errors="replace")
            )
        try:
            with urllib.request.urlopen(console.url + "healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"runnerq console did not answer on {console.url} within {timeout}s")


@pytest.fixture(scope="package")
def artifacts() -> Path:
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    return ARTIFACTS


@pytest.fixture(scope="package")
def browser_redis_url(redis_server: RedisServer) -> Iterator[str]:
    """The session's redis-server, database ``DATABASE``, emptied before and after."""
    url = f"{redis_server.url}/{DATABASE}"
    with redis.Redis.from_url(url) as r:
        r.flushdb()
    yield url
    with redis.Redis.from_url(url) as r:
        r.flushdb()


@pytest.fixture(scope="package")
def console(
    browser_redis_url: str, tmp_path_factory: pytest.TempPathFactory, artifacts: Path
) -> Iterator[Console]:
    """``runnerq console`` with a token per role, on a free loopback port."""
    folder = tmp_path_factory.mktemp("console")
    tokens = folder / "tokens"
    tokens.write_text(
        "".join(f"{hash_token(t)} {role} {role}-user\n" for role, t in TOKENS.items())
    )
    port = free_port()
    log = artifacts / "console.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "runnerq",
                "console",
                "--redis-url",
                browser_redis_url,
                "--tokens-file",
                str(tokens),
                "--port",
                str(port),
                "--live-interval",
                str(LIVE_INTERVAL),
                "--no-kube",
            ],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    found = Console(f"http://127.0.0.1:{port}/", browser_redis_url, process, log)
    try:
        _wait_healthy(found)
        yield found
    finally:
        terminate(process)


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run `make setup` (installs Debian's chromium)")
    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    # --no-sandbox: the tests run as root in CI, where Chromium's sandbox refuses to start.
    found = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
    yield found
    found.close()


@dataclass
class Pages:
    """Opens pages of the console as one role (a token in the tab's session storage, as
    the page keeps it after signing in), each in a context of its own."""

    browser: Browser
    console: Console
    name: str
    opened: list[Page] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def open(self, role: str | None = "operator", view: str = "#/") -> Page:
        context = self.browser.new_context(viewport={"width": 1280, "height": 800})
        context.set_default_timeout(EXPECT_TIMEOUT_MS)
        if role is not None:
            context.add_init_script(
                f"sessionStorage.setItem('runnerq-token', {json.dumps(TOKENS[role])})"
            )
        page = context.new_page()
        page.on("pageerror", lambda exc: self.errors.append(f"{exc.name}: {exc.message}"))
        page.on("console", self._console)
        self.opened.append(page)
        page.goto(self.console.url + view)
        return page

    def _console(self, message: ConsoleMessage) -> None:
        # An answer with an error status is logged by the browser itself ("Failed to load
        # resource"): some tests provoke them. Anything else the page logs as an error is one.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.errors.append(f"console.error: {message.text}")

    def shot(self, page: Page, what: str) -> Path:
        """Save a screenshot of ``page`` as ``<test>-<what>.png`` and print its path."""
        path = ARTIFACTS / f"{self.name}-{what}.png"
        page.screenshot(path=str(path))
        print(f"screenshot: {path}")
        return path


@pytest.fixture
def pages(browser: Browser, console: Console, request: pytest.FixtureRequest) -> Iterator[Pages]:
    """``pages.open(role, view)`` -> a page of the console; ``pages.shot(page, what)``. A
    failed test leaves a screenshot of each page it opened; a JavaScript error that the page
    did not catch (or logged with console.error) fails the test."""
    name = request.node.name.replace("[", "-").replace("]", "").replace("/", "-")
    found = Pages(browser, console, name)
    yield found
    failed = request.node.stash.get(_FAILED, False)
    for n, page in enumerate(found.opened):
        if failed:
            path = ARTIFACTS / f"FAILED-{name}-{n}.png"
            try:
                page.screenshot(path=str(path))
                print(f"screenshot of the failure: {path}")
            except Exception as exc:  # a page that crashed has no picture left
                print(f"no screenshot of {page.url}: {exc}")
        page.context.close()
    assert not found.errors, f"the page raised: {found.errors}"


@pytest.fixture
def workers(console: Console) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """``workers(queue)`` -> a ``runnerq worker`` process of ``tests/browser/app.py`` on
    that queue (stopped at teardown)."""
    started: list[subprocess.Popen[bytes]] = []

    def start(queue: str, *args: str) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "runnerq",
                "worker",
                APP,
                "--redis-url",
                console.redis_url,
                "--queue",
                queue,
                "--log-level",
                "WARNING",
                *args,
            ],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        terminate(process)
