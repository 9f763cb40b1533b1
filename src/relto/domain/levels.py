"""The classification ladder: ordered level names, configurable per node."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from relto.domain.errors import InvalidValue

DEFAULT_LEVELS = ("UNCLASSIFIED", "RESTRICTED", "CONFIDENTIAL", "SECRET", "TOP SECRET")


@dataclass(frozen=True)
class Ladder:
    """Classification levels from lowest to highest; a level's rank is its index."""

    levels: tuple[str, ...] = DEFAULT_LEVELS

    @classmethod
    def of(cls, levels: Sequence[str]) -> Ladder:
        """Build a ladder, normalising names to upper case and refusing duplicates or an empty list."""
        names = tuple(" ".join(level.upper().split()) for level in levels)
        if not names or any(not n for n in names):
            raise InvalidValue("a classification ladder needs at least one non-empty level name")
        if len(set(names)) != len(names):
            raise InvalidValue(f"classification levels must be distinct, got {list(names)}")
        return cls(names)

    def rank(self, name: str) -> int:
        """The rank of a level name (case and spacing insensitive)."""
        key = " ".join(name.upper().replace("_", " ").split())
        try:
            return self.levels.index(key)
        except ValueError:
            raise InvalidValue(
                f"unknown classification {name!r}; this node's levels are {', '.join(self.levels)}"
            ) from None

    def name(self, rank: int) -> str:
        """The level name of a rank."""
        return self.levels[rank]
