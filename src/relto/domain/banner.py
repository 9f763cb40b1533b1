"""The marking banner people read above and below an item: "SECRET // REL TO GBR, KOR, NATO" and its TLP.

Pure: derived from a version's marking set alone (the policy's own reading of its markings), so the banner
says exactly what the release decision used.
"""

from __future__ import annotations

from dataclasses import dataclass

from relto.domain.levels import Ladder
from relto.domain.markings import MarkingSet


@dataclass(frozen=True, kw_only=True)
class Banner:
    """A version's marking as shown to people: the banner line, its parts, and the TLP colour (or None)."""

    text: str
    classification: str
    rel_to: tuple[str, ...]
    tlp: str | None

    def as_dict(self) -> dict[str, object]:
        """The banner as JSON for the UI."""
        return {"text": self.text, "classification": self.classification, "rel_to": list(self.rel_to), "tlp": self.tlp}


def banner(ms: MarkingSet, ladder: Ladder) -> Banner:
    """The banner of a marking set.

    Nations (the originator always among them) come first, then communities, each alphabetical; several REL TO
    groups (all must admit a reader) are shown one after another. A set without REL TO is for the originator
    only (fail closed) and says so; TLP definitions (public vocabulary) are the lowest level.
    """
    level = ladder.name(ms.rank) if ms.rank < len(ladder.levels) else ladder.levels[-1]
    tlp = ms.tlp.upper() if ms.tlp else None
    if ms.public:
        return Banner(text=ladder.levels[0], classification=ladder.levels[0], rel_to=(), tlp=tlp)
    if ms.rel_to is None:
        return Banner(text=f"{level} // {ms.originator} ONLY", classification=level, rel_to=(ms.originator,), tlp=tlp)
    groups = [_ordered({ms.originator, *group}) for group in ms.rel_to] or [(ms.originator,)]
    text = " // ".join([level, *(f"REL TO {', '.join(g)}" for g in groups)])
    everyone = _ordered({p for g in groups for p in g})
    return Banner(text=text, classification=level, rel_to=everyone, tlp=tlp)


def _ordered(parties: set[str]) -> tuple[str, ...]:
    nations = sorted(p for p in parties if len(p) == 3 and p.isalpha() and p.isupper())
    return (*nations, *sorted(parties - set(nations)))
