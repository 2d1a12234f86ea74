"""Run a command's coroutine so that the process exits when it returns.

``asyncio.run`` closes its loop by cancelling what is left and waiting for it, then joining
the default executor's threads, with no limit: a handler that ignores cancellation, or one
that runs blocking code in ``asyncio.to_thread``, would keep a stopped worker's process alive
until Kubernetes kills it at the end of the pod's grace period. ``run`` gives what is left
``wait`` seconds after the cancel, then ends the process at once (``os._exit``), logging what
it left behind. The worker has handed back by then everything it could.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["EXIT_LEFT_RUNNING", "run"]

log = logging.getLogger("runnerq.cli")

EXIT_LEFT_RUNNING = 3  # the exit status when something was still running


def run(main: Coroutine[Any, Any, int], wait: float = 5.0) -> int:
    """``asyncio.run(main)``, except that what ``main`` leaves running gets ``wait`` seconds
    to end before the process exits without it."""
    loop = asyncio.new_event_loop()
    executor = _Executor()  # asyncio.to_thread's threads, so that they can be waited for
    loop.set_default_executor(executor)
    asyncio.set_event_loop(loop)
    left: list[str] = []
    try:
        return loop.run_until_complete(main)
    finally:
        try:
            left = _wind_down(loop, executor, wait)
        finally:
            asyncio.set_event_loop(None)
            if not left:
                loop.close()
        if left:
            failed = sys.exc_info()[1]
            if failed is not None:
                log.error("stopped by %r", failed)
            log.error(
                "exiting with %s still running %.0fs after the worker stopped (it ignores"
                " cancellation or blocks in a thread): not waiting for it",
                ", ".join(left),
                wait,
            )
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(EXIT_LEFT_RUNNING)


class _Executor(concurrent.futures.ThreadPoolExecutor):
    """A thread pool that knows which of its calls have not finished."""

    def __init__(self) -> None:
        super().__init__(thread_name_prefix="runnerq-thread")
        self.unfinished: set[concurrent.futures.Future[Any]] = set()

    def submit(
        self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[Any]:
        future = super().submit(fn, *args, **kwargs)
        self.unfinished.add(future)
        future.add_done_callback(self.unfinished.discard)
        return future


def _wind_down(loop: asyncio.AbstractEventLoop, executor: _Executor, wait: float) -> list[str]:
    """Cancel what is left, wait up to ``wait`` seconds for it and for the threads still
    running calls; returns what is still running."""
    tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.wait(tasks, timeout=wait))
    left = [f"task {task.get_name()}" for task in tasks if not task.done()]
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.error("task %s failed while stopping", task.get_name(), exc_info=task.exception())
    loop.run_until_complete(loop.shutdown_asyncgens())
    # (Not loop.shutdown_default_executor(): on Python 3.11 it joins the threads, however
    # long they take, even when cancelled.)
    _, running = concurrent.futures.wait(list(executor.unfinished), timeout=wait)
    if running:
        left.append(f"{len(running)} call(s) in threads")
        executor.shutdown(wait=False, cancel_futures=True)
    else:
        executor.shutdown(wait=True)
    return left
