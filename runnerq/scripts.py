"""Loading the Lua scripts in ``runnerq/scripts/``: one file per state transition.

Each script is prepended with ``_prelude.lua`` (shared helpers) and registered once per
client; redis-py runs it with EVALSHA and loads it again if Redis forgot it (a restart).
"""

from __future__ import annotations

import functools
from importlib import resources

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

__all__ = ["SCRIPT_NAMES", "Scripts", "script_source"]

SCRIPT_NAMES = (
    "enqueue",
    "claim",
    "heartbeat",
    "complete",
    "retry",
    "dead_letter",
    "throttle",
    "promote_due",
    "reap",
    "release",
    "cancel",
    "requeue",
    "purge_dead",
    "schedule_upsert",
    "schedule_remove",
    "schedule_suspend",
    "schedule_due",
    "schedule_fire",
)


@functools.cache
def script_source(name: str) -> str:
    """The full text of one script, prelude included."""
    folder = resources.files("runnerq") / "scripts"
    prelude = (folder / "_prelude.lua").read_text(encoding="utf-8")
    body = (folder / f"{name}.lua").read_text(encoding="utf-8")
    return f"{prelude}\n{body}"


class Scripts:
    """The registered scripts of one client, one attribute per transition."""

    enqueue: AsyncScript
    claim: AsyncScript
    heartbeat: AsyncScript
    complete: AsyncScript
    retry: AsyncScript
    dead_letter: AsyncScript
    throttle: AsyncScript
    promote_due: AsyncScript
    reap: AsyncScript
    release: AsyncScript
    cancel: AsyncScript
    requeue: AsyncScript
    purge_dead: AsyncScript
    schedule_upsert: AsyncScript
    schedule_remove: AsyncScript
    schedule_suspend: AsyncScript
    schedule_due: AsyncScript
    schedule_fire: AsyncScript

    def __init__(self, client: aioredis.Redis) -> None:
        for name in SCRIPT_NAMES:
            setattr(self, name, client.register_script(script_source(name)))

    async def load(self, client: aioredis.Redis) -> None:
        """Load every script into Redis (at start, and after Redis lost them in a restart)."""
        for name in SCRIPT_NAMES:
            await client.script_load(getattr(self, name).script)
