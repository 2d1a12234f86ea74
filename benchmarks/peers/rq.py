"""RQ: the default ``Worker`` forks a work horse per job; ``enqueue_many`` pipelines."""

from __future__ import annotations

import argparse
import datetime as dt

from redis import Redis
from rq import Queue, Worker  # type: ignore[import-not-found,import-untyped,unused-ignore]

from benchmarks.peers import _common as c

_FUNC = "benchmarks.peers.rq.noop"


def noop(i: int) -> None:
    c.hit(i)


def worker(a: argparse.Namespace) -> None:
    conn = Redis.from_url(a.url)
    w = Worker([Queue(connection=conn)], connection=conn)
    # Delayed jobs need RQ's scheduler, which the worker runs in a forked process.
    w.work(with_scheduler=a.scheduling, logging_level="WARNING")


class Producer:
    supports_bulk = True

    def __init__(self, a: argparse.Namespace) -> None:
        self.queue = Queue(connection=Redis.from_url(a.url))

    def open(self) -> None:
        pass

    def one(self, idx: int, delay: float | None) -> None:
        if delay:
            self.queue.enqueue_in(dt.timedelta(seconds=delay), _FUNC, idx)
        else:
            self.queue.enqueue(_FUNC, idx)

    def bulk(self, idxs: list[int]) -> None:
        self.queue.enqueue_many([Queue.prepare_data(_FUNC, (i,)) for i in idxs])

    def close(self) -> None:
        self.queue.connection.close()


if __name__ == "__main__":
    c.main(worker=worker, sync_producer=Producer, fork_per_job=True)
