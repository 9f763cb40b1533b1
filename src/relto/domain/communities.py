"""Communities: named sets of nations with membership history (NATO, EU, FVEY, IP4, ...)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date

from relto.domain.errors import InvalidValue

_NAME = re.compile(r"^[A-Z][A-Z0-9_+-]{1,31}$")


def check_community_name(name: str) -> str:
    """Community names are upper case words of 2-32 characters that are not nation codes (3 letters)."""
    upper = name.strip().upper()
    if not _NAME.match(upper) or (len(upper) == 3 and upper.isalpha()):
        raise InvalidValue(
            f"{name!r} is not a community name: use 2-32 upper-case letters, digits, _ + - "
            "(and not three letters, which would read as a nation code)"
        )
    return upper


@dataclass(frozen=True)
class Membership:
    """One spell of a nation's membership: from `since` (inclusive) to `until` (exclusive), or open."""

    nation: str
    since: date
    until: date | None = None

    def covers(self, day: date) -> bool:
        """Whether the nation is a member on this day."""
        return self.since <= day and (self.until is None or day < self.until)


@dataclass(frozen=True)
class Community:
    """A named set of nations with dated memberships."""

    name: str
    description: str = ""
    members: tuple[Membership, ...] = field(default_factory=tuple)

    def has_member(self, nation: str, day: date) -> bool:
        """Whether `nation` is a member on `day`."""
        return any(m.nation == nation and m.covers(day) for m in self.members)

    def members_on(self, day: date) -> frozenset[str]:
        """The nations that are members on `day`."""
        return frozenset(m.nation for m in self.members if m.covers(day))


def _spells(since: str, nations: Iterable[str], until: str | None = None) -> list[Membership]:
    end = date.fromisoformat(until) if until else None
    return [Membership(n, date.fromisoformat(since), end) for n in nations]


def default_communities() -> list[Community]:
    """The communities a new node starts with; operators may edit them.

    Dates are accession dates from the treaties' depositaries (NATO: date of deposit of the instrument of
    accession; EU: date of entry into force of the accession treaty, the EEC's founders from 1958-01-01).
    FVEY and IP4 have no treaty dates: the years are those usually cited (UKUSA 1946, CAN 1948, AUS and NZL
    1956; the IP4 first met as a group at NATO's Madrid summit, 2022-06-29).
    """
    nato = (
        _spells("1949-08-24", ["BEL", "CAN", "DNK", "FRA", "ISL", "ITA", "LUX", "NLD", "NOR", "PRT", "GBR", "USA"])
        + _spells("1952-02-18", ["GRC", "TUR"])
        + _spells("1955-05-06", ["DEU"])
        + _spells("1982-05-30", ["ESP"])
        + _spells("1999-03-12", ["CZE", "HUN", "POL"])
        + _spells("2004-03-29", ["BGR", "EST", "LVA", "LTU", "ROU", "SVK", "SVN"])
        + _spells("2009-04-01", ["ALB", "HRV"])
        + _spells("2017-06-05", ["MNE"])
        + _spells("2020-03-27", ["MKD"])
        + _spells("2023-04-04", ["FIN"])
        + _spells("2024-03-07", ["SWE"])
    )
    eu = (
        _spells("1958-01-01", ["BEL", "FRA", "DEU", "ITA", "LUX", "NLD"])
        + _spells("1973-01-01", ["DNK", "IRL"])
        + _spells("1973-01-01", ["GBR"], until="2020-02-01")
        + _spells("1981-01-01", ["GRC"])
        + _spells("1986-01-01", ["ESP", "PRT"])
        + _spells("1995-01-01", ["AUT", "FIN", "SWE"])
        + _spells("2004-05-01", ["CYP", "CZE", "EST", "HUN", "LVA", "LTU", "MLT", "POL", "SVK", "SVN"])
        + _spells("2007-01-01", ["BGR", "ROU"])
        + _spells("2013-07-01", ["HRV"])
    )
    fvey = (
        _spells("1946-03-05", ["GBR", "USA"]) + _spells("1948-01-01", ["CAN"]) + _spells("1956-01-01", ["AUS", "NZL"])
    )
    ip4 = _spells("2022-06-29", ["AUS", "JPN", "KOR", "NZL"])
    return [
        Community("NATO", "North Atlantic Treaty Organization", tuple(nato)),
        Community("EU", "European Union (EEC before 1993)", tuple(eu)),
        Community("FVEY", "Five Eyes", tuple(fvey)),
        Community("IP4", "NATO's Indo-Pacific partners", tuple(ip4)),
    ]


def membership_index(communities: Iterable[Community], day: date) -> Mapping[str, frozenset[str]]:
    """Community name -> its members on `day`."""
    return {c.name: c.members_on(day) for c in communities}
