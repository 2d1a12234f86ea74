"""Who calls the console, and what they may do: roles, hashed bearer tokens, and the user
and groups headers of a trusted proxy (oauth2-proxy's ``X-Forwarded-User`` and
``X-Forwarded-Groups``).

Roles are ordered: a viewer reads; an operator also acts on activities (cancel, requeue
selected dead letters, enqueue, trigger a schedule) and pauses and resumes queues; an admin
also purges dead letters and requeues all of them. The server checks the role of every
request (``Role.allows``); the page only hides buttons to match.
"""

from __future__ import annotations

import enum
import hashlib
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigurationError

__all__ = [
    "Authenticator",
    "Identity",
    "Role",
    "TokenTable",
    "hash_token",
    "parse_group_roles",
]


class Role(enum.Enum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def level(self) -> int:
        return _LEVELS[self]

    def allows(self, needed: Role) -> bool:
        return self.level >= needed.level

    @classmethod
    def parse(cls, text: str) -> Role:
        try:
            return cls(text.strip().lower())
        except ValueError:
            raise ConfigurationError(
                f"unknown role {text!r}: use viewer, operator or admin"
            ) from None


_LEVELS = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}


@dataclass(frozen=True, slots=True)
class Identity:
    """A caller: ``name`` (shown in the audit), ``role``, and ``via`` (token, proxy, none)."""

    name: str
    role: Role
    via: str

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "role": self.role.value, "via": self.via}


def hash_token(token: str) -> str:
    """What the tokens file holds for ``token``: ``sha256:<hex>``."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


class TokenTable:
    """Bearer tokens by their SHA-256, read from a file of lines ``sha256:<hex> <role> <name>``
    (blank lines and ``#`` comments ignored). Only hashes are kept: the file and the process
    never hold a usable token."""

    def __init__(self, entries: Mapping[str, tuple[Role, str]]) -> None:
        self._by_hash = dict(entries)

    def __len__(self) -> int:
        return len(self._by_hash)

    @classmethod
    def parse(cls, text: str, source: str = "tokens file") -> TokenTable:
        entries: dict[str, tuple[Role, str]] = {}
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split(None, 2)
            where = f"{source} line {number}"
            if len(parts) != 3:
                raise ConfigurationError(f"{where}: expected 'sha256:<hex> <role> <name>'")
            digest, role_text, name = parts
            algo, _, hex_part = digest.partition(":")
            if algo != "sha256" or len(hex_part) != 64 or not _is_hex(hex_part):
                raise ConfigurationError(f"{where}: the token must be given as sha256:<64 hex>")
            try:
                role = Role.parse(role_text)
            except ConfigurationError as exc:
                raise ConfigurationError(f"{where}: {exc}") from None
            key = "sha256:" + hex_part.lower()
            if key in entries:
                raise ConfigurationError(f"{where}: the same token is listed twice")
            entries[key] = (role, name.strip())
        return cls(entries)

    @classmethod
    def from_file(cls, path: str) -> TokenTable:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigurationError(f"cannot read the tokens file {path!r}: {exc}") from None
        return cls.parse(text, path)

    def lookup(self, token: str) -> tuple[Role, str] | None:
        return self._by_hash.get(hash_token(token))


def _is_hex(text: str) -> bool:
    try:
        int(text, 16)
    except ValueError:
        return False
    return True


def parse_group_roles(items: Iterable[str]) -> dict[str, Role]:
    """``GROUP=ROLE`` items (the ``--group-role`` flags) as a mapping."""
    out: dict[str, Role] = {}
    for item in items:
        group, sep, role = item.rpartition("=")
        if not sep or not group:
            raise ConfigurationError(f"--group-role takes GROUP=ROLE, not {item!r}")
        out[group] = Role.parse(role)
    return out


class Authenticator:
    """Turns a request's peer address and headers into an ``Identity`` (or None: unknown).

    A bearer token is looked up in the token table. Otherwise, from a peer inside one of
    the trusted proxies' networks, ``X-Forwarded-User`` names the user and the highest role
    of the groups in ``X-Forwarded-Groups`` (comma-separated) applies, or the default role.
    Those headers from any other peer are ignored. ``read_only`` caps every role at viewer.
    """

    def __init__(
        self,
        tokens: TokenTable | None,
        trusted_proxies: Iterable[str],
        group_roles: Mapping[str, Role],
        proxy_default_role: Role | None,
        read_only: bool,
        no_auth: bool,
    ) -> None:
        self._tokens = tokens
        self._proxies = [ipaddress.ip_network(c, strict=False) for c in trusted_proxies]
        self._group_roles = dict(group_roles)
        self._default_role = proxy_default_role
        self.read_only = read_only
        self.no_auth = no_auth

    def _cap(self, identity: Identity) -> Identity:
        if self.read_only and identity.role is not Role.VIEWER:
            return Identity(identity.name, Role.VIEWER, identity.via)
        return identity

    def trusted(self, peer: str | None) -> bool:
        if peer is None or not self._proxies:
            return False
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(address in network for network in self._proxies)

    def identify(self, peer: str | None, headers: Mapping[str, str]) -> Identity | None:
        if self.no_auth:
            return self._cap(Identity("anonymous", Role.ADMIN, "none"))
        authorization = headers.get("Authorization", "")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip() and self._tokens is not None:
            found = self._tokens.lookup(token.strip())
            if found is None:
                return None
            return self._cap(Identity(found[1], found[0], "token"))
        user = headers.get("X-Forwarded-User", "").strip()
        if user and self.trusted(peer):
            groups = [g.strip() for g in headers.get("X-Forwarded-Groups", "").split(",")]
            roles = [self._group_roles[g] for g in groups if g in self._group_roles]
            if roles:
                role = max(roles, key=lambda r: r.level)
            elif self._default_role is not None:
                role = self._default_role
            else:
                return None
            return self._cap(Identity(user, role, "proxy"))
        return None
