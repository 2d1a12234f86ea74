"""Celery with the Redis broker: one worker process with the ``threads`` pool (the default
prefork pool would be one process per slot), defaults otherwise (no result backend, early
acks, prefetch multiplier 4)."""

from __future__ import annotations

import argparse

from celery import Celery, group  # type: ignore[import-not-found,import-untyped,unused-ignore]

from benchmarks.peers import _common as c


def _app(url: str) -> Celery:
    app = Celery("bench", broker=url)

    @app.task(name="noop")  # type: ignore[untyped-decorator,unused-ignore]
    def noop(i: int) -> None:
        c.hit(i)

    return app


def worker(a: argparse.Namespace) -> None:
    app = _app(a.url)
    app.worker_main(
        ["worker", "--pool=threads", f"--concurrency={a.concurrency}", "--loglevel=WARNING"]
    )


class Producer:
    supports_bulk = True

    def __init__(self, a: argparse.Namespace) -> None:
        self.app = _app(a.url)
        self.task = self.app.tasks["noop"]

    def open(self) -> None:
        pass

    def one(self, idx: int, delay: float | None) -> None:
        if delay:
            self.task.apply_async((idx,), countdown=delay)
        else:
            self.task.delay(idx)

    def bulk(self, idxs: list[int]) -> None:
        group(self.task.s(i) for i in idxs).apply_async()

    def close(self) -> None:
        self.app.close()


if __name__ == "__main__":
    c.main(worker=worker, sync_producer=Producer)
