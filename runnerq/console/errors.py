"""The console's HTTP errors: every one is JSON ``{"error": {"code", "message"}}``."""

from __future__ import annotations

import json

from aiohttp import web

__all__ = ["ApiError", "error_response"]


class ApiError(Exception):
    """An error the API answers with ``status`` and a machine-readable ``code``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def error_response(status: int, code: str, message: str) -> web.Response:
    body = json.dumps({"error": {"code": code, "message": message}})
    return web.Response(status=status, text=body, content_type="application/json")
