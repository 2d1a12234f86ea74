"""Opaque cursors: where the next page of a list or a search starts.

A cursor is URL-safe base64 of a small JSON object naming the list it belongs to and a
position in it (for sorted sets: the last entry's score and id). Clients pass it back as it
came; anything else is a ``BadCursor`` (HTTP 400). It is a position, not a secret: forging one
only moves where a page starts.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

__all__ = ["BadCursor", "decode_cursor", "encode_cursor"]


class BadCursor(ValueError):
    """A cursor that this console did not make, or made for another list."""


def encode_cursor(kind: str, **position: Any) -> str:
    doc = {"k": kind, **position}
    raw = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str, kind: str) -> dict[str, Any]:
    """The position in ``text``, which must be a cursor of list ``kind``."""
    if not text or len(text) > 2048:
        raise BadCursor("bad cursor: empty or too long")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        doc = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise BadCursor("bad cursor: not one this console made") from None
    if not isinstance(doc, dict) or doc.get("k") != kind:
        raise BadCursor(f"bad cursor: not a cursor of {kind}")
    return doc
