"""The one policy engine: who may see which stored version. Pure functions, no I/O.

visible(party, version) = clearance >= classification
                          AND (party's nation is the originator
                               OR, for every REL TO group on the version, the nation is listed in it
                                  or is a current member of a community listed in it)
A version with no REL TO marking is visible to its originator nation only (fail closed).

Another node's token (federation) reads what its nation may see, or what any nation a hub relays for may see,
and never what TLP:RED or TLP:AMBER+STRICT marks: those never leave the node they were published on.
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


NODE_WITHHELD_TLP = frozenset({"red", "amber+strict"})


def node_may_carry(ms: MarkingSet) -> bool:
    """Whether versions of this marking set may leave this node through another node's token at all."""
    return ms.tlp not in NODE_WITHHELD_TLP


def relayed_nations(relay_for: Iterable[str], members: Mapping[str, frozenset[str]]) -> frozenset[str]:
    """The nations a hub relays for today: the nations listed, and the current members of communities listed."""
    out: set[str] = set()
    for entry in relay_for:
        out |= members.get(entry, frozenset({entry}) if len(entry) == 3 and entry.isupper() else frozenset())
    return frozenset(out)


def node_visible_sets(
    nations: Iterable[str], clearance: int, sets: Iterable[MarkingSet], members: Mapping[str, frozenset[str]]
) -> frozenset[int]:
    """The marking sets another node's token may read: those any of `nations` may see at `clearance`, except
    what TLP keeps on its node."""
    wanted = frozenset(nations)
    return frozenset(
        ms.id for ms in sets if node_may_carry(ms) and any(visible(nation, clearance, ms, members) for nation in wanted)
    )
