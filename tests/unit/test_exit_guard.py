"""``exit_guard.run``: like ``asyncio.run``, except that what the coroutine leaves running
cannot keep the process alive (those cases run in a child process: it ends with os._exit)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

from runnerq import exit_guard


def test_returns_what_the_coroutine_returns_and_cancels_what_it_left() -> None:
    cancelled = []

    async def main() -> int:
        async def lingering() -> None:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancelled.append(True)
                raise

        asyncio.get_running_loop().create_task(lingering())
        await asyncio.sleep(0)
        return 7

    assert exit_guard.run(main(), wait=5) == 7
    assert cancelled == [True]


def _child(body: str) -> subprocess.CompletedProcess[str]:
    """Runs ``body`` in a child process. What it leaves running never ends by itself, so a
    child kept alive by it would run forever: the timeout is only that case's limit (raising
    ``TimeoutExpired``, failing the test), far above the child's start-up on a loaded machine;
    how fast the child exits is measured by nothing here."""
    script = textwrap.dedent(
        """
        import asyncio, contextlib, logging, threading
        from runnerq import exit_guard
        logging.basicConfig(level="INFO")
        """
    ) + textwrap.dedent(body)
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )


def test_a_task_that_ignores_cancellation_does_not_keep_the_process() -> None:
    done = _child(
        """
        async def stubborn():
            while True:
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.sleep(0.01)

        async def main():
            asyncio.get_running_loop().create_task(stubborn(), name="stubborn-handler")
            await asyncio.sleep(0)  # the task has started
            return 0

        exit_guard.run(main(), wait=0.3)
        print("not reached")
        """
    )
    assert done.returncode == exit_guard.EXIT_LEFT_RUNNING, done.stderr
    assert "task stubborn-handler" in done.stderr
    assert "not reached" not in done.stdout


def test_a_blocked_thread_does_not_keep_the_process() -> None:
    done = _child(
        """
        never = threading.Event()

        async def main():
            asyncio.get_running_loop().create_task(asyncio.to_thread(never.wait))
            await asyncio.sleep(0)  # the task has started
            return 0

        exit_guard.run(main(), wait=0.3)
        print("not reached")
        """
    )
    assert done.returncode == exit_guard.EXIT_LEFT_RUNNING, done.stderr
    assert "1 call(s) in threads" in done.stderr
    assert "not reached" not in done.stdout


def test_nothing_left_exits_normally() -> None:
    done = _child(
        """
        async def main():
            await asyncio.to_thread(threading.Event().wait, 0.01)
            return 0

        print("status", exit_guard.run(main(), wait=5))
        """
    )
    assert done.returncode == 0, done.stderr
    assert "status 0" in done.stdout
