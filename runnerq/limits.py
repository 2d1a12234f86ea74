"""Rate and concurrency limits of one queue: the model, checked strictly, and its JSON form.

Limits live in the queue's configuration hash (field ``limits``, this module's JSON), so they
change at runtime; the claim script reads them on every claim and enforces them atomically
across every worker (see docs/limits.md for the algorithms and guarantees). Every part is
optional; ``Limits()`` (nothing limited) is stored as no field at all, which keeps the claim
on its unlimited path.

::

    Limits(
        rate=Rate(50, 1.0, burst=10),          # the whole queue: 50 starts per second
        concurrency=5,                          # at most 5 leased at once, across workers
        types={"email": TypeLimit(rate=Rate(10, 60))},
        keys=KeyLimit(concurrency=1),           # per limit key (ActivityOption.limit_key)
    )
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .durations import Duration, seconds
from .errors import ConfigurationError

__all__ = ["KeyLimit", "LimitStats", "Limits", "Rate", "TypeLimit"]

# Limits of more types than this are refused: the claim script decodes them on every claim.
MAX_TYPES = 1000


def _count(where: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{where} must be a whole number >= 1, not {value!r}")
    return value


def _fields(where: str, doc: object, allowed: tuple[str, ...]) -> Mapping[str, Any]:
    if not isinstance(doc, Mapping):
        raise ConfigurationError(f"{where} must be an object, not {doc!r}")
    unknown = sorted(str(k) for k in doc if k not in allowed)
    if unknown:
        shown = ", ".join(map(repr, unknown))
        raise ConfigurationError(f"{where}: unknown field(s) {shown}; known: {', '.join(allowed)}")
    return doc


@dataclass(frozen=True, slots=True, init=False)
class Rate:
    """``limit`` starts per ``period`` (seconds or a timedelta), with up to ``burst`` at once
    after a quiet time (a token bucket of ``burst`` tokens refilled at ``limit / period``;
    ``burst`` defaults to ``limit``)."""

    limit: int
    period: float
    burst: int

    def __init__(self, limit: int, period: Duration = 1.0, burst: int | None = None) -> None:
        self._set("rate", limit, period, burst)

    def _set(self, where: str, limit: object, period: object, burst: object) -> None:
        limit_n = _count(f"{where} limit", limit)
        period_s = seconds(period)
        if period_s is None or period_s <= 0 or not math.isfinite(period_s):
            raise ConfigurationError(
                f"{where} period must be a number of seconds or a timedelta > 0, not {period!r}"
            )
        burst_n = limit_n if burst is None else _count(f"{where} burst", burst)
        object.__setattr__(self, "limit", limit_n)
        object.__setattr__(self, "period", float(period_s))
        object.__setattr__(self, "burst", burst_n)

    @classmethod
    def from_dict(cls, doc: object, where: str = "rate") -> Rate:
        found = _fields(where, doc, ("limit", "period", "burst"))
        if "limit" not in found:
            raise ConfigurationError(f"{where} needs a 'limit'")
        rate = cls.__new__(cls)
        rate._set(where, found["limit"], found.get("period", 1.0), found.get("burst"))
        return rate

    def to_dict(self) -> dict[str, Any]:
        return {"limit": self.limit, "period": self.period, "burst": self.burst}


def _rate_or_none(where: str, doc: object) -> Rate | None:
    return None if doc is None else Rate.from_dict(doc, where)


def _concurrency_or_none(where: str, value: object) -> int | None:
    return None if value is None else _count(where, value)


def _check(where: str, rate: object, concurrency: object) -> None:
    if rate is not None and not isinstance(rate, Rate):
        raise ConfigurationError(f"{where} rate must be a Rate, not {rate!r}")
    if concurrency is not None:
        _count(f"{where} concurrency", concurrency)


def _part(rate: Rate | None, concurrency: int | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if rate is not None:
        out["rate"] = rate.to_dict()
    if concurrency is not None:
        out["concurrency"] = concurrency
    return out


@dataclass(frozen=True, slots=True)
class TypeLimit:
    """The rate and concurrency of one activity type, across every worker."""

    rate: Rate | None = None
    concurrency: int | None = None

    def __post_init__(self) -> None:
        _check("type limit", self.rate, self.concurrency)

    @classmethod
    def from_dict(cls, doc: object, where: str) -> TypeLimit:
        found = _fields(where, doc, ("rate", "concurrency"))
        return cls(
            _rate_or_none(f"{where} rate", found.get("rate")),
            _concurrency_or_none(f"{where} concurrency", found.get("concurrency")),
        )

    def to_dict(self) -> dict[str, Any]:
        return _part(self.rate, self.concurrency)


@dataclass(frozen=True, slots=True)
class KeyLimit:
    """The rate and concurrency that apply to each limit key, separately."""

    rate: Rate | None = None
    concurrency: int | None = None

    def __post_init__(self) -> None:
        _check("key limit", self.rate, self.concurrency)

    @classmethod
    def from_dict(cls, doc: object, where: str = "keys") -> KeyLimit:
        found = _fields(where, doc, ("rate", "concurrency"))
        return cls(
            _rate_or_none(f"{where} rate", found.get("rate")),
            _concurrency_or_none(f"{where} concurrency", found.get("concurrency")),
        )

    def to_dict(self) -> dict[str, Any]:
        return _part(self.rate, self.concurrency)


@dataclass(frozen=True, slots=True)
class Limits:
    """A queue's limits: its own rate and concurrency, per activity type, per limit key."""

    rate: Rate | None = None
    concurrency: int | None = None
    types: Mapping[str, TypeLimit] = field(default_factory=dict)
    keys: KeyLimit | None = None

    def __post_init__(self) -> None:
        _check("queue", self.rate, self.concurrency)
        if not isinstance(self.types, Mapping):
            raise ConfigurationError(f"types must be a mapping, not {self.types!r}")
        if len(self.types) > MAX_TYPES:
            raise ConfigurationError(f"limits of at most {MAX_TYPES} types, not {len(self.types)}")
        for name, limit in self.types.items():
            if not isinstance(name, str) or not name:
                raise ConfigurationError(f"a limited type must be a non-empty string: {name!r}")
            if not isinstance(limit, TypeLimit):
                raise ConfigurationError(f"types[{name!r}] must be a TypeLimit, not {limit!r}")
        if self.keys is not None and not isinstance(self.keys, KeyLimit):
            raise ConfigurationError(f"keys must be a KeyLimit, not {self.keys!r}")
        object.__setattr__(self, "types", dict(self.types))

    @property
    def empty(self) -> bool:
        """Nothing is limited (stored as no ``limits`` field)."""
        return not self.to_dict()

    @classmethod
    def from_dict(cls, doc: object) -> Limits:
        """Strict: unknown fields, zero or negative numbers are a ``ConfigurationError``."""
        found = _fields("limits", doc, ("rate", "concurrency", "types", "keys"))
        types_doc = found.get("types")
        if types_doc is None:
            types_doc = {}
        if not isinstance(types_doc, Mapping):
            raise ConfigurationError(f"limits types must be an object, not {types_doc!r}")
        types = {
            str(name): TypeLimit.from_dict(limit, f"types[{name!r}]")
            for name, limit in types_doc.items()
        }
        keys = found.get("keys")
        return cls(
            _rate_or_none("rate", found.get("rate")),
            _concurrency_or_none("concurrency", found.get("concurrency")),
            types,
            None if keys is None else KeyLimit.from_dict(keys),
        )

    @classmethod
    def from_json(cls, text: str) -> Limits:
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise ConfigurationError(f"limits are not JSON: {exc}") from None
        return cls.from_dict(doc)

    def to_dict(self) -> dict[str, Any]:
        out = _part(self.rate, self.concurrency)
        types = {name: limit.to_dict() for name, limit in sorted(self.types.items())}
        types = {name: part for name, part in types.items() if part}
        if types:
            out["types"] = types
        if self.keys is not None and self.keys.to_dict():
            out["keys"] = self.keys.to_dict()
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True)


@dataclass(frozen=True, slots=True)
class LimitStats:
    """What the limits are doing (``QueueStore.limit_stats``).

    ``throttled_queue``, ``throttled_by_type`` and ``throttled_by_key`` count claims that
    the queue's own limits, a type's or a key's held back (one per claim and limit, not one
    per activity left pending); ``running_by_type`` and ``running_by_key`` the leases taken
    under limits that have not ended;
    ``held_types`` and ``held_keys`` the types and keys a handler held back
    (``RateLimitedError``), with the seconds left, and ``holds_by_type`` and
    ``holds_by_key`` how often handlers asked for a hold of each;
    ``eligible`` how many pending activities the queue's own rate and concurrency would let
    start now (per-type limits are not counted in it)."""

    throttled_queue: int = 0
    throttled_by_type: dict[str, int] = field(default_factory=dict)
    running_by_type: dict[str, int] = field(default_factory=dict)
    held_types: dict[str, float] = field(default_factory=dict)
    eligible: int = 0
    holds_by_type: dict[str, int] = field(default_factory=dict)
    throttled_by_key: dict[str, int] = field(default_factory=dict)
    running_by_key: dict[str, int] = field(default_factory=dict)
    held_keys: dict[str, float] = field(default_factory=dict)
    holds_by_key: dict[str, int] = field(default_factory=dict)

    @property
    def throttled(self) -> int:
        by_key = sum(self.throttled_by_key.values())
        return self.throttled_queue + sum(self.throttled_by_type.values()) + by_key

    @classmethod
    def read(
        cls, state: Mapping[str, str], limits: Limits, pending: int, running: int, now_ms: int
    ) -> LimitStats:
        """From the limit state hash (see claim.lua's header) and the queue's numbers."""
        by_type: dict[str, int] = {}
        in_use: dict[str, int] = {}
        held: dict[str, float] = {}
        holds: dict[str, int] = {}
        by_key: dict[str, int] = {}
        key_use: dict[str, int] = {}
        held_keys: dict[str, float] = {}
        key_holds: dict[str, int] = {}
        throttled_queue = 0
        eligible = pending
        for name, value in state.items():
            try:
                if name == "t:q":
                    throttled_queue = int(value)
                elif name.startswith("t:t:"):
                    by_type[name[4:]] = int(value)
                elif name.startswith("t:h:"):
                    holds[name[4:]] = int(value)
                elif name.startswith("t:k:"):
                    by_key[name[4:]] = int(value)
                elif name.startswith("t:hk:"):
                    key_holds[name[5:]] = int(value)
                elif name.startswith("hk:") and int(value) > now_ms:
                    held_keys[name[3:]] = (int(value) - now_ms) / 1000.0
                elif name.startswith("ck:"):
                    if int(value) > 0:
                        key_use[name[3:]] = int(value)
                elif name.startswith("c:"):
                    if int(value) > 0:
                        in_use[name[2:]] = int(value)
                elif name.startswith("h:") and int(value) > now_ms:
                    held[name[2:]] = (int(value) - now_ms) / 1000.0
            except ValueError:
                continue  # not runnerq's: left out
        if limits.concurrency is not None:
            eligible = min(eligible, max(0, limits.concurrency - running))
        if limits.rate is not None:
            eligible = min(eligible, int(_tokens(state.get("b:q"), limits.rate, now_ms)))
        return cls(
            throttled_queue,
            by_type,
            in_use,
            held,
            max(0, eligible),
            holds,
            by_key,
            key_use,
            held_keys,
            key_holds,
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "throttled": self.throttled,
            "throttled_queue": self.throttled_queue,
            "throttled_by_type": dict(self.throttled_by_type),
            "running_by_type": dict(self.running_by_type),
            "held_types": dict(self.held_types),
            "eligible": self.eligible,
            "holds_by_type": dict(self.holds_by_type),
            "throttled_by_key": dict(self.throttled_by_key),
            "running_by_key": dict(self.running_by_key),
            "held_keys": dict(self.held_keys),
            "holds_by_key": dict(self.holds_by_key),
        }


def _tokens(stored: str | None, rate: Rate, now_ms: int) -> float:
    """The tokens of a bucket stored as "tokens:ms" (claim.lua), refilled up to ``now_ms``."""
    if stored is None:
        return float(rate.burst)
    try:
        tokens_s, at_s = stored.split(":")
        tokens, at = float(tokens_s), int(at_s)
    except ValueError:
        return float(rate.burst)
    per_ms = rate.limit / (rate.period * 1000)
    return min(float(rate.burst), tokens + max(0, now_ms - at) * per_ms)
