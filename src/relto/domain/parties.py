"""Who asks: a party is a token's holder, seen as (nation, clearance) by the policy."""

from __future__ import annotations

import re
from dataclasses import dataclass

from relto.domain.errors import InvalidValue

_NATION = re.compile(r"^[A-Z]{3}$")


def check_nation(code: str) -> str:
    """Return an ISO 3166-1 alpha-3 code in upper case, or raise if it is not three letters."""
    upper = code.strip().upper()
    if not _NATION.match(upper):
        raise InvalidValue(f"{code!r} is not an ISO 3166-1 alpha-3 nation code (three letters, e.g. GBR)")
    return upper


@dataclass(frozen=True, kw_only=True)
class Party:
    """The holder of a token: a nation and a clearance rank; admin may manage the node."""

    token_id: int
    nation: str
    clearance: int
    organisation: str = ""
    name: str = ""
    admin: bool = False
    can_write: bool = True
    # A node token (docs/federation.md): "peer" reads what `nation` may receive, "relay" what any nation of
    # `relay_for` (nations, and communities' members) may; "" is a person's token.
    kind: str = ""
    relay_for: tuple[str, ...] = ()

    @property
    def is_node(self) -> bool:
        """Whether this is another node's token: it is told each version's originator and path, receives
        every nation's copy of an id, and never receives TLP:RED or TLP:AMBER+STRICT."""
        return bool(self.kind)

    def __repr__(self) -> str:
        return f"Party(token_id={self.token_id}, nation={self.nation!r}, clearance={self.clearance})"
