"""Who asks: a party is a token's holder, seen as (nation, clearance) by the policy."""

from __future__ import annotations

import difflib
import functools
import os
import re
from dataclasses import dataclass

from relto.domain.errors import InvalidValue

_NATION = re.compile(r"^[A-Z]{3}$")
# Codes people type for a nation that are not its ISO 3166-1 alpha-3 code (sports, vehicle, military and
# everyday usage), to say which one they meant.
_ALIASES = {
    "GER": "DEU",
    "SUI": "CHE",
    "NED": "NLD",
    "HOL": "NLD",
    "DEN": "DNK",
    "ROK": "KOR",
    "ROC": "TWN",
    "UAE": "ARE",
    "RSA": "ZAF",
    "ENG": "GBR",
    "SCO": "GBR",
    "WAL": "GBR",
    "INA": "IDN",
    "MAS": "MYS",
    "PHI": "PHL",
    "VIE": "VNM",
    "KSA": "SAU",
    "CHI": "CHL",
    "POR": "PRT",
    "CRO": "HRV",
    "GRE": "GRC",
    "BUL": "BGR",
    "LAT": "LVA",
    "SLO": "SVN",
    "ROM": "ROU",
    "IRI": "IRN",
    "NGR": "NGA",
}
EXTRA_NATIONS_ENV = "RELTO_EXTRA_NATIONS"


@functools.cache
def _iso_codes() -> frozenset[str]:
    import pycountry

    return frozenset(c.alpha_3 for c in pycountry.countries)


def _names() -> dict[str, str]:
    import pycountry

    return {c.alpha_3: c.name for c in pycountry.countries}


def extra_nations() -> frozenset[str]:
    """Codes outside ISO 3166-1 that this installation accepts as nations (RELTO_EXTRA_NATIONS, comma-separated
    three-letter codes): for a coalition that needs one, set explicitly by its operator."""
    raw = os.environ.get(EXTRA_NATIONS_ENV, "")
    return frozenset(x.strip().upper() for x in raw.split(",") if _NATION.match(x.strip().upper()))


def check_nation(code: str) -> str:
    """Return an ISO 3166-1 alpha-3 code in upper case (or one the operator added), or raise saying which
    code was probably meant: a partner named by a wrong code would silently receive nothing."""
    upper = code.strip().upper()
    if not _NATION.match(upper):
        raise InvalidValue(f"{code!r} is not an ISO 3166-1 alpha-3 nation code (three letters, e.g. GBR)")
    if upper in _iso_codes() or upper in extra_nations():
        return upper
    hint = _suggest(upper)
    raise InvalidValue(
        f"{upper} is not an ISO 3166-1 alpha-3 nation code{hint}; a coalition that needs a code outside ISO "
        f"3166-1 can allow it with {EXTRA_NATIONS_ENV}={upper}"
    )


def _suggest(code: str) -> str:
    """' (did you mean DEU, Germany?)' for GER, or '' when nothing is close."""
    names = _names()
    if code in _ALIASES:
        found = [_ALIASES[code]]
    else:
        found = [c for c, name in names.items() if name.upper().startswith(code)]
        found = found or difflib.get_close_matches(code, sorted(names), n=2, cutoff=0.67)
    if not found:
        return ""
    return " (did you mean " + " or ".join(f"{c}, {names[c]}" for c in found[:3]) + "?)"


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
