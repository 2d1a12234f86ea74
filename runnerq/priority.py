"""Activity priorities: strict order across levels, first-in-first-out within a level."""

from __future__ import annotations

import enum

__all__ = ["ActivityPriority"]


class ActivityPriority(enum.Enum):
    """The four levels, highest first. A ready activity of a higher level always runs first."""

    CRITICAL = "critical"
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"

    @property
    def rank(self) -> int:
        """0 for CRITICAL up to 3 for LOW: the high part of the ready-set score."""
        return _RANKS[self]

    @classmethod
    def parse(cls, value: str | ActivityPriority) -> ActivityPriority:
        if isinstance(value, ActivityPriority):
            return value
        try:
            return cls(value.lower())
        except ValueError:
            names = ", ".join(p.value for p in cls)
            raise ValueError(f"unknown priority {value!r}: expected one of {names}") from None


_RANKS = {p: i for i, p in enumerate(ActivityPriority)}
