"""A deliberately simple reference for federation tests: who may see a published report, from its markings alone
(one REL TO marking, a level, maybe a TLP), and whether it may leave its node through a node token at all."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from relto.domain.communities import default_communities

SECRET = 3  # the node tokens' and readers' clearance in these tests
MEMBERS = {c.name: c.members_on(date.today()) for c in default_communities()}


@dataclass(frozen=True)
class Published:
    id: str
    origin: str
    rank: int
    rel_to: tuple[str, ...]
    tlp: str | None


def visible(nation: str, p: Published, clearance: int) -> bool:
    """Cleared high enough, and the originator or named in REL TO (directly or as a member today)."""
    if p.rank > clearance:
        return False
    return nation == p.origin or any(nation == e or nation in MEMBERS.get(e, ()) for e in p.rel_to)


def carriable(p: Published) -> bool:
    """Whether a node token (cleared SECRET) may carry it: never TLP:RED or TLP:AMBER+STRICT, nothing above."""
    return p.tlp not in ("red", "amber+strict") and p.rank <= SECRET
