"""``Coalescer``: a lone caller sends its own item; callers that come while a send is on its
way share the next one, in order; errors reach exactly the callers of the failed send."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from runnerq.batching import Coalescer


class Recorder:
    def __init__(self, delay: float = 0.01, fail_on: set[int] | None = None) -> None:
        self.calls: list[list[int]] = []
        self.tasks: list[asyncio.Task[object] | None] = []
        self.delay = delay
        self.fail_on = fail_on or set()

    async def flush(self, items: Sequence[int]) -> list[int]:
        self.calls.append(list(items))
        self.tasks.append(asyncio.current_task())
        await asyncio.sleep(self.delay)
        if self.fail_on & set(items):
            raise RuntimeError(f"failed {list(items)}")
        return [i * 10 for i in items]


async def test_a_lone_caller_sends_its_item_from_its_own_task() -> None:
    rec = Recorder()
    coalescer = Coalescer(rec.flush)
    assert await coalescer.submit(1) == 10
    assert rec.calls == [[1]]
    assert rec.tasks == [asyncio.current_task()]


async def test_callers_that_come_meanwhile_share_the_next_send_in_order() -> None:
    rec = Recorder()
    coalescer = Coalescer(rec.flush)
    results = await asyncio.gather(*(coalescer.submit(i) for i in range(10)))
    assert results == [i * 10 for i in range(10)]
    assert rec.calls == [[0], list(range(1, 10))]
    assert await coalescer.submit(42) == 420  # idle again: a lone caller once more
    assert rec.calls[-1] == [42]


async def test_batches_are_capped() -> None:
    rec = Recorder()
    coalescer = Coalescer(rec.flush, max_batch=4)
    await asyncio.gather(*(coalescer.submit(i) for i in range(10)))
    assert rec.calls == [[0], [1, 2, 3, 4], [5, 6, 7, 8], [9]]


async def test_a_failed_send_fails_only_its_own_callers() -> None:
    rec = Recorder(fail_on={0, 5})
    coalescer = Coalescer(rec.flush, max_batch=4)
    outcomes = await asyncio.gather(
        *(coalescer.submit(i) for i in range(10)), return_exceptions=True
    )
    failed = [i for i, o in enumerate(outcomes) if isinstance(o, RuntimeError)]
    assert failed == [0, 5, 6, 7, 8]  # the lone first send, then the batch holding 5
    assert [o for o in outcomes if not isinstance(o, BaseException)] == [10, 20, 30, 40, 90]


async def test_a_cancelled_lone_caller_does_not_strand_the_queue() -> None:
    rec = Recorder(delay=0.05)
    coalescer = Coalescer(rec.flush)
    first = asyncio.create_task(coalescer.submit(0))
    await asyncio.sleep(0.01)
    queued = [asyncio.create_task(coalescer.submit(i)) for i in (1, 2)]
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert [await t for t in queued] == [10, 20]


async def test_aclose_waits_for_what_was_submitted() -> None:
    rec = Recorder(delay=0.05)
    coalescer = Coalescer(rec.flush)
    tasks = [asyncio.create_task(coalescer.submit(i)) for i in range(3)]
    await asyncio.sleep(0)
    await coalescer.aclose()
    assert rec.calls == [[0], [1, 2]]
    assert all(t.done() for t in tasks)
