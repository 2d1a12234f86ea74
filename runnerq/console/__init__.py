"""The console: a web page and a JSON API over every queue in one Redis (``runnerq console``).

A thin HTTP layer (aiohttp, docs/adr/0003-console-web-stack.md) over the same store, stats,
schedules and limits the CLI uses. It keeps nothing in memory that a restart would lose, so
several replicas can serve one Redis. docs/console.md describes the views, the roles, how to
set up authentication and every route of the API.
"""

from __future__ import annotations

from .app import create_app, serve
from .auth import Identity, Role
from .settings import ConsoleSettings

__all__ = ["ConsoleSettings", "Identity", "Role", "create_app", "serve"]
