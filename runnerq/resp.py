"""Commands in Redis's wire format (RESP), for the paths that write to a connection directly.

redis-py's ``Connection.pack_command`` encodes argument by argument, with type checks and a
bytes join for each: about 1 us an argument, most of a bulk enqueue's client time once the
records are made. Arguments here are text and integers only, and the common case is ASCII
(records are JSON, ids are hex), where a character is a byte: the whole command is put
together as one string and encoded once. Commands that always start with the same arguments
(a script's sha and keys) pack those once, as a ``CommandPrefix``.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["CommandPrefix", "pack_command"]


class CommandPrefix:
    """The first arguments of a command sent many times, packed once (``pack_command``)."""

    __slots__ = ("args", "body")

    def __init__(self, args: Sequence[str | int]) -> None:
        self.args = tuple(args)
        body = _body([_text(a) for a in self.args])
        #: the packed arguments, or None when they are not all ASCII (then packed each time)
        self.body = body if body.isascii() else None


def pack_command(args: Sequence[str | int], prefix: CommandPrefix | None = None) -> bytes:
    """The bytes that send ``prefix``'s arguments, then ``args``, as one command (UTF-8, like
    redis-py's default)."""
    texts = [a if type(a) is str else _text(a) for a in args]
    body = _body(texts)
    count = len(texts)
    if prefix is not None:
        if prefix.body is None:
            return pack_command([*prefix.args, *args])
        body = prefix.body + body
        count += len(prefix.args)
    if body.isascii():
        return f"*{count}\r\n{body}".encode()
    # Some text is not ASCII: bulk string lengths count bytes, not characters.
    if prefix is not None:
        texts = [_text(a) for a in prefix.args] + texts
    encoded = [t.encode() for t in texts]
    return b"".join([b"*%d\r\n" % len(encoded), *[b"$%d\r\n%s\r\n" % (len(e), e) for e in encoded]])


def _body(texts: Sequence[str]) -> str:
    return "".join([f"${len(t)}\r\n{t}\r\n" for t in texts])


def _text(value: str | int) -> str:
    if type(value) is str:
        return value
    if type(value) is int:
        return str(value)
    if isinstance(value, str):
        return str.__str__(value)
    raise TypeError(f"a command argument must be text or an integer, not {type(value).__name__}")
