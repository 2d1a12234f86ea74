"""CSRF protection: a double-submit token.

``GET /api/session`` sets a random token in the ``runnerq_csrf`` cookie (``SameSite=Strict``,
so a browser never sends it along with a request another site starts) and returns it in its
body. Every request that is not a GET, HEAD or OPTIONS must send the same value in the
``X-CSRF-Token`` header; a page of another origin can neither read the cookie nor set that
header on a cross-site request, so it cannot make a signed-in browser act. Nothing is kept on
the server: any replica checks any request.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping

__all__ = ["CSRF_COOKIE", "CSRF_HEADER", "SAFE_METHODS", "csrf_ok", "new_csrf_token"]

CSRF_COOKIE = "runnerq_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_ok(method: str, cookies: Mapping[str, str], headers: Mapping[str, str]) -> bool:
    """Whether a request may go on: a safe method, or a header that equals the cookie."""
    if method.upper() in SAFE_METHODS:
        return True
    cookie = cookies.get(CSRF_COOKIE, "")
    header = headers.get(CSRF_HEADER, "")
    if len(cookie) < 16 or not header:
        return False
    return hmac.compare_digest(cookie.encode(), header.encode())
