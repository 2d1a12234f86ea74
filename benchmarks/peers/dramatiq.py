"""Dramatiq with its Redis broker and default middleware: a thread per slot."""

from __future__ import annotations

import argparse
import threading

import dramatiq  # type: ignore[import-not-found,import-untyped,unused-ignore]
from dramatiq.brokers.redis import RedisBroker  # type: ignore[import-not-found,import-untyped,unused-ignore]

from benchmarks.peers import _common as c


def _actor(url: str) -> object:
    broker = RedisBroker(url=url)
    dramatiq.set_broker(broker)

    @dramatiq.actor(actor_name="noop", broker=broker)  # type: ignore[untyped-decorator,unused-ignore]
    def noop(i: int) -> None:
        c.hit(i)

    return noop


def worker(a: argparse.Namespace) -> None:
    _actor(a.url)
    w = dramatiq.Worker(dramatiq.get_broker(), worker_threads=a.concurrency)
    w.start()
    threading.Event().wait()


class Producer:
    supports_bulk = False

    def __init__(self, a: argparse.Namespace) -> None:
        self.actor: object = _actor(a.url)

    def open(self) -> None:
        pass

    def one(self, idx: int, delay: float | None) -> None:
        if delay:
            self.actor.send_with_options(args=(idx,), delay=round(delay * 1000))  # type: ignore[attr-defined]
        else:
            self.actor.send(idx)  # type: ignore[attr-defined]

    def bulk(self, idxs: list[int]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        dramatiq.get_broker().close()


if __name__ == "__main__":
    c.main(worker=worker, sync_producer=Producer)
