"""The console against the session's real redis-server: an app per test, served by aiohttp's
test server on a loopback port, with one bearer token per role."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer

from runnerq import ActivityClient
from runnerq.console import ConsoleSettings, create_app
from runnerq.console.auth import hash_token
from runnerq.keys import QueueKeys
from runnerq.record import ActivityRecord, DeadLetterEntry

TOKENS = {"viewer": "viewer-token-1", "operator": "operator-token-1", "admin": "admin-token-1"}
CSRF = "csrf-token-for-the-tests-0123456789"


def tokens_file(tmp_path: Path) -> str:
    path = tmp_path / "tokens"
    lines = ["# console tokens"]
    lines += [f"{hash_token(token)} {role} {role}-user" for role, token in TOKENS.items()]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


class Api:
    """Calls as one role: ``get`` and ``post`` return (status, JSON body)."""

    def __init__(self, client: TestClient[Any, Any]) -> None:
        self.client = client

    def headers(self, role: str | None, csrf: bool = True) -> dict[str, str]:
        out: dict[str, str] = {}
        if role is not None:
            out["Authorization"] = f"Bearer {TOKENS[role]}"
        if csrf:
            out["Cookie"] = f"runnerq_csrf={CSRF}"
            out["X-CSRF-Token"] = CSRF
        return out

    async def get(self, path: str, role: str | None = "viewer", **params: Any) -> tuple[int, Any]:
        query = {k: str(v) for k, v in params.items() if v is not None}
        async with self.client.get(path, headers=self.headers(role, False), params=query) as r:
            return r.status, await r.json()

    async def post(
        self,
        path: str,
        body: Any = None,
        role: str | None = "operator",
        csrf: bool = True,
        raw: str | None = None,
    ) -> tuple[int, Any]:
        data = raw if raw is not None else json.dumps(body if body is not None else {})
        async with self.client.post(path, headers=self.headers(role, csrf), data=data) as r:
            return r.status, await r.json()


MakeApi = Callable[..., Any]


@pytest.fixture
async def make_api(redis_url: str, tmp_path: Path) -> AsyncIterator[MakeApi]:
    """``await make_api(**settings)`` -> an ``Api`` on a console with those settings (a
    tokens file with viewer, operator and admin tokens unless told otherwise)."""
    clients: list[TestClient[Any, Any]] = []

    async def make(**changes: Any) -> Api:
        if changes.get("no_auth"):
            changes.setdefault("tokens_file", None)
        base = ConsoleSettings(redis_url=redis_url, tokens_file=tokens_file(tmp_path))
        settings = replace(base, **changes)
        client: TestClient[Any, Any] = TestClient(TestServer(create_app(settings)))
        await client.start_server()
        clients.append(client)
        return Api(client)

    yield make
    for client in clients:
        await client.close()


@pytest.fixture
async def api(make_api: MakeApi, queue_name: str, client: ActivityClient) -> Api:
    """A console showing every queue, with this test's queue made known (one enqueue-free
    counter, so it exists)."""
    await client.redis.hset(QueueKeys(queue_name).stats, "enqueued", 0)
    result: Api = await make_api()
    return result


async def write_ready(
    redis: aioredis.Redis, queue: str, count: int, activity_type: str = "bulk", start: int = 0
) -> list[str]:
    """``count`` ready normal-priority activities written straight into Redis (test data:
    far faster than enqueues for 100,000), ids ``a<n>``."""
    keys = QueueKeys(queue)
    ids = [f"a{n:07d}" for n in range(start, start + count)]
    now = time.time()
    span = 2**48
    for chunk in range(0, count, 10_000):
        part = ids[chunk : chunk + 10_000]
        async with redis.pipeline(transaction=False) as pipe:
            pipe.hset(
                keys.jobs,
                mapping={
                    i: ActivityRecord(i, activity_type, {"n": i}, created_at=now).encode()
                    for i in part
                },
            )
            pipe.zadd(keys.ready, {i: 2 * span + start + chunk + n for n, i in enumerate(part)})
            pipe.hincrby(keys.stats, "enqueued", len(part))
            await pipe.execute()
    return ids


async def write_dead(
    redis: aioredis.Redis, queue: str, errors: Iterable[str], prefix: str = "d"
) -> list[str]:
    """Dead letters with the given errors (oldest first), ids ``<prefix><n>``."""
    keys = QueueKeys(queue)
    texts = list(errors)
    ids = [f"{prefix}{n:07d}" for n in range(len(texts))]
    for chunk in range(0, len(ids), 10_000):
        part = list(zip(ids[chunk : chunk + 10_000], texts[chunk : chunk + 10_000], strict=True))
        async with redis.pipeline(transaction=False) as pipe:
            pipe.hset(
                keys.dead,
                mapping={
                    i: DeadLetterEntry(
                        i, error, "failed", 1.0, ActivityRecord(i, "broken", {"i": i})
                    ).encode()
                    for i, error in part
                },
            )
            pipe.zadd(keys.dlq, {i: chunk + n + 1 for n, (i, _) in enumerate(part)})
            await pipe.execute()
    return ids
