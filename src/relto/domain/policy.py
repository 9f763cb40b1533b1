"""The one policy engine: who may see which stored version. Pure functions, no I/O.

visible(party, version) = clearance >= classification
                          AND (party's nation is the originator
                               OR, for every REL TO group on the version, the nation is listed in it
                                  or is a current member of a community listed in it)
A version with no REL TO marking is visible to its originator nation only (fail closed).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from relto.domain.markings import MarkingSet


def releasable_to(nation: str, ms: MarkingSet, members: Mapping[str, frozenset[str]]) -> bool:
    """Whether the REL TO part of a marking set admits `nation` (members: community -> nations today)."""
    if ms.public or nation == ms.originator:
        return True
    if ms.rel_to is None:
        return False
    return all(any(entry == nation or nation in members.get(entry, ()) for entry in group) for group in ms.rel_to)


def visible(nation: str, clearance: int, ms: MarkingSet, members: Mapping[str, frozenset[str]]) -> bool:
    """The decision for one marking set: cleared high enough, and releasable to the nation."""
    if ms.public:
        return True
    return clearance >= ms.rank and releasable_to(nation, ms, members)


def visible_sets(
    nation: str, clearance: int, sets: Iterable[MarkingSet], members: Mapping[str, frozenset[str]]
) -> frozenset[int]:
    """The ids of the marking sets a party may see: the read path filters versions by these in its query."""
    return frozenset(ms.id for ms in sets if visible(nation, clearance, ms, members))
