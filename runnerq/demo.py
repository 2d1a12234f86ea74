"""``runnerq demo``: a tour of the engine against a real Redis (embedded if none given).

Handlers: ``send_email``; ``process_order``, which fans out child activities and awaits
them; ``send_reminder``, scheduled for later; ``flaky_payment``, which fails twice and then
succeeds on retry; ``charge_card``, which fails for good and lands in the dead-letter queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import Any

from .context import ActivityContext
from .embedded import embedded_redis
from .engine import WorkerEngine
from .errors import ActivityDeadLetteredError, ActivityError
from .priority import ActivityPriority

__all__ = ["build_demo_engine", "run_demo"]

_t0 = time.monotonic()


def say(message: str) -> None:
    print(f"[{time.monotonic() - _t0:6.2f}s] {message}", flush=True)


def build_demo_engine(redis_url: str, queue: str, *, quick: bool = False) -> WorkerEngine:
    engine = (
        WorkerEngine.builder()
        .redis_url(redis_url)
        .queue_name(queue)
        .max_workers(10)
        .backoff(base=0.1 if quick else 0.5, factor=2.0, cap=2.0, jitter=0.2)
        .shutdown_grace(5)
        .engine()
    )
    pause = 0.02 if quick else 0.2

    @engine.activity("send_email")
    async def send_email(payload: Any, ctx: ActivityContext) -> Any:
        await asyncio.sleep(pause)
        say(f"  email to {payload['to']}: {payload['subject']!r} (priority {ctx.priority.value})")
        return {"delivered_to": payload["to"]}

    @engine.activity("reserve_stock")
    async def reserve_stock(payload: Any, ctx: ActivityContext) -> Any:
        await asyncio.sleep(pause / 2)
        return {"sku": payload["sku"], "reserved": payload["qty"]}

    @engine.activity("process_order")
    async def process_order(payload: Any, ctx: ActivityContext) -> Any:
        executor = ctx.activity_executor
        say(f"  order {payload['order_id']}: fanning out {len(payload['items'])} reservations")
        children = [
            await executor.activity("reserve_stock")
            .payload(item)
            .priority(ActivityPriority.HIGH)
            .execute()
            for item in payload["items"]
        ]
        reserved = [await child.get_result(timeout=30) for child in children]
        await (
            executor.activity("send_email")
            .payload({"to": payload["email"], "subject": f"order {payload['order_id']} confirmed"})
            .execute()
        )
        return {"order_id": payload["order_id"], "reserved": reserved}

    @engine.activity("send_reminder")
    async def send_reminder(payload: Any, ctx: ActivityContext) -> Any:
        late = time.time() - payload["due_at"]
        say(f"  reminder {payload['text']!r} ran {late * 1000:.0f} ms after its due time")
        return {"late_ms": round(late * 1000, 1)}

    @engine.activity("flaky_payment")
    async def flaky_payment(payload: Any, ctx: ActivityContext) -> Any:
        if ctx.retry_count < 2:
            say(f"  payment attempt {ctx.retry_count + 1} failed: gateway busy (will retry)")
            raise ActivityError.retry("gateway busy")
        say(f"  payment attempt {ctx.retry_count + 1} succeeded")
        return {"charged": payload["amount"]}

    @engine.activity("charge_card")
    async def charge_card(payload: Any, ctx: ActivityContext) -> Any:
        say("  card declined: not retryable")
        raise ActivityError.non_retry("card declined")

    return engine


async def run_demo(redis_url: str | None, queue: str = "demo", *, quick: bool = False) -> int:
    with _redis(redis_url) as url:
        say(f"using Redis at {url}, queue {queue!r}")
        engine = build_demo_engine(url, queue, quick=quick)
        await engine.connect()
        client = engine.get_activity_executor()
        await client.purge_dead_letters()
        runner = asyncio.create_task(engine.start(install_signal_handlers=False))
        try:
            return await _tour(client, runner, quick)
        finally:
            await engine.stop()
            with contextlib.suppress(Exception):
                await runner
            stats = await client.get_stats()
            say(
                "final stats: "
                + ", ".join(
                    f"{k}={v}"
                    for k, v in stats.as_dict().items()
                    if k not in ("queue", "by_priority")
                )
            )
            await engine.aclose()


async def _tour(client: Any, runner: asyncio.Task[None], quick: bool) -> int:
    delay = 0.5 if quick else 2.0
    say(
        "enqueue: an email, an order with 3 items, a reminder in "
        f"{delay:g}s, a flaky payment, a declined card"
    )
    email = (
        await client.activity("send_email")
        .payload({"to": "ada@example.com", "subject": "welcome"})
        .priority(ActivityPriority.CRITICAL)
        .execute()
    )
    order = (
        await client.activity("process_order")
        .payload(
            {
                "order_id": "A-1001",
                "email": "ada@example.com",
                "items": [
                    {"sku": "book", "qty": 1},
                    {"sku": "pen", "qty": 3},
                    {"sku": "lamp", "qty": 1},
                ],
            }
        )
        .execute()
    )
    reminder = (
        await client.activity("send_reminder")
        .payload({"text": "renew subscription", "due_at": time.time() + delay})
        .delay(delay)
        .execute()
    )
    payment = (
        await client.activity("flaky_payment").payload({"amount": 42}).max_retries(3).execute()
    )
    declined = await client.activity("charge_card").payload({"amount": 9000}).execute()

    ok = True
    for name, future in (
        ("email", email),
        ("order", order),
        ("payment", payment),
        ("reminder", reminder),
    ):
        result = await future.get_result(timeout=60)
        say(f"{name} done: {result}")
    try:
        await declined.get_result(timeout=30)
        ok = False
        say("the declined card unexpectedly succeeded")
    except ActivityDeadLetteredError as exc:
        say(f"declined card is in the dead-letter queue: {exc.last_error}")
    for entry in await client.dead_letters():
        say(
            f"dead letter {entry.id}: {entry.record.activity_type if entry.record else '?'}"
            f" [{entry.reason}] {entry.error}"
        )
    if runner.done():
        runner.result()
    return 0 if ok else 1


@contextlib.contextmanager
def _redis(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    with embedded_redis() as embedded:
        say("no Redis configured: started an embedded redis-server")
        yield embedded
