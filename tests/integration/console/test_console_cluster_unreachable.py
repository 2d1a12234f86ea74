"""The console told to read a cluster whose API server does not answer (a closed port): the
overview still answers 200 with ``cluster: null`` and a logged warning, one failed list
serves every request for its time to live, and an action with ``--kube-events`` succeeds
while its Event fails in the background. (tests/e2e/test_console_chart.py has the console
against a real API server.)"""

from __future__ import annotations

import logging

import pytest

from runnerq import ActivityClient
from runnerq.console.kube import KubeConfig
from runnerq.keys import QueueKeys
from tests.support.redis_server import free_port

from .conftest import MakeApi


async def test_an_unreachable_api_server_is_cluster_null_never_a_500(
    make_api: MakeApi,
    queue_name: str,
    client: ActivityClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await client.redis.hset(QueueKeys(queue_name).stats, "enqueued", 0)
    kube = KubeConfig(server=f"https://127.0.0.1:{free_port()}", token="t")
    api = await make_api(kube=kube, kube_events=True)
    status, created = await api.post(f"/api/queues/{queue_name}/activities", {"type": "t"})
    assert status == 201
    with caplog.at_level(logging.WARNING, logger="runnerq.console"):
        status, overview = await api.get("/api/queues")
        assert status == 200
        mine = [q for q in overview["queues"] if q["queue"] == queue_name]
        assert mine and mine[0]["cluster"] is None
        status, one = await api.get(f"/api/queues/{queue_name}")
        assert (status, one["cluster"]) == (200, None)
        status, paused = await api.post(f"/api/queues/{queue_name}/pause")
        assert (status, paused["paused"]) == (200, True)
    # One failed list for all three (the cache keeps the failure for its time to live).
    assert caplog.text.count("cannot list ActivityQueues") == 1
    assert created["created"] is True
