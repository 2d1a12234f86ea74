"""Loading the Lua scripts in ``runnerq/scripts/``: one file per state transition.

Each script is prepended with the helpers of ``_prelude.lua`` that it uses (each helper is
made again by every run of a script, so a script carries only its own) and registered once
per client; redis-py runs it with EVALSHA and loads it again if Redis forgot it (a restart).
"""

from __future__ import annotations

import functools
import re
from importlib import resources

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

__all__ = ["SCRIPT_NAMES", "Scripts", "script_source", "with_helpers"]

SCRIPT_NAMES = (
    "enqueue",
    "claim",
    "claim_limited",
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
    "progress",
    "schedule_upsert",
    "schedule_remove",
    "schedule_suspend",
    "schedule_due",
    "schedule_fire",
)


_SECTION = re.compile(r"^--- (.+)$", re.MULTILINE)


def _sections(prelude: str) -> tuple[str, list[tuple[list[str], str]]]:
    """The prelude's header, and its sections: (the names one defines, its text), in order."""
    marks = list(_SECTION.finditer(prelude))
    if not marks:
        return prelude, []
    sections = []
    for i, mark in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(prelude)
        sections.append((mark.group(1).split(), prelude[mark.start() : end]))
    return prelude[: marks[0].start()], sections


def _uses(text: str, names: list[str]) -> bool:
    return any(re.search(rf"(?<![\w.]){re.escape(n)}(?!\w)", text) for n in names)


def with_helpers(prelude: str, body: str) -> str:
    """``body`` with the prelude's header and the sections it uses, directly or through
    another section, in the prelude's order."""
    header, sections = _sections(prelude)
    chosen = [False] * len(sections)
    text = body
    grew = True
    while grew:
        grew = False
        for i, (names, section) in enumerate(sections):
            if not chosen[i] and _uses(text, names):
                chosen[i] = True
                text += section
                grew = True
    parts = [header.rstrip("\n")]
    parts += [section.rstrip("\n") for (_, section), c in zip(sections, chosen, strict=True) if c]
    return "\n\n".join(parts) + "\n\n" + body


@functools.cache
def script_source(name: str) -> str:
    """The full text of one script, with the prelude's helpers it uses."""
    folder = resources.files("runnerq") / "scripts"
    prelude = (folder / "_prelude.lua").read_text(encoding="utf-8")
    body = (folder / f"{name}.lua").read_text(encoding="utf-8")
    return with_helpers(prelude, body)


class Scripts:
    """The registered scripts of one client, one attribute per transition."""

    enqueue: AsyncScript
    claim: AsyncScript
    claim_limited: AsyncScript
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
    progress: AsyncScript
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
