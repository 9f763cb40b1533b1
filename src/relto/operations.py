"""Operating a node's parties: issue and revoke tokens, edit community membership.

Kept apart from admin.py (which also serves the app) so that the UI's operator endpoints call the very
functions the `relto` command calls without an import cycle; admin.py re-exports them.
"""

from __future__ import annotations

from datetime import date

from relto.domain.communities import Community, Membership, check_community_name
from relto.domain.errors import InvalidRequest, InvalidValue, NotFound
from relto.domain.parties import check_nation
from relto.domain.timestamps import now_micros
from relto.domain.tokens import make_token
from relto.node import Node
from relto.store import Store
from relto.store.base import TokenRecord


def issue_token(
    store: Store,
    *,
    nation: str,
    clearance: str,
    organisation: str,
    name: str,
    admin: bool = False,
    can_write: bool = True,
    kind: str = "",
    relay_for: str = "",
) -> str:
    """Store a new token's hash and return the token (the only time its secret exists in the clear).

    `kind` "peer" makes another node's token reading what `nation` may receive; "relay" a hub's, reading what
    any of `relay_for` may (docs/federation.md). Node tokens read and never publish."""
    new = make_token()
    store.add_token(
        TokenRecord(
            id=0,
            key_id=new.key_id,
            secret_hash=new.secret_hash,
            nation=nation,
            organisation=organisation,
            name=name,
            clearance=clearance,
            admin=admin and not kind,
            can_write=can_write and not kind,
            created=now_micros(),
            revoked=None,
            kind=kind,
            relay_for=relay_for,
        )
    )
    return new.value


def revoke_token(store: Store, key_id: str) -> None:
    """Revoke the active token with this key id."""
    if not store.revoke_token(key_id, now_micros()):
        raise NotFound(f"no active token with key id {key_id!r}")


def join_community(node: Node, name: str, nation: str, day: date, description: str | None = None) -> None:
    """Make `nation` a member of community `name` from `day`, creating the community if new."""
    name, nation = check_community_name(name), check_nation(nation)
    current = {c.name: c for c in node.store.communities()}.get(name, Community(name, description or ""))
    if current.has_member(nation, day):
        raise InvalidRequest(f"{nation} is already a member of {name} on {day}")
    spells = (*current.members, Membership(nation, day))
    node.put_community(Community(name, description or current.description, spells))


def leave_community(node: Node, name: str, nation: str, day: date) -> None:
    """End `nation`'s open membership of community `name` on `day` (its history is kept)."""
    name, nation = check_community_name(name), check_nation(nation)
    found = {c.name: c for c in node.store.communities()}.get(name)
    if found is None or not any(m.nation == nation and m.until is None for m in found.members):
        raise NotFound(f"{nation} has no open membership of {name}")
    spells = tuple(
        Membership(m.nation, m.since, day) if m.nation == nation and m.until is None else m for m in found.members
    )
    node.put_community(Community(found.name, found.description, spells))


def parse_day(text: str) -> date:
    """A YYYY-MM-DD date given by the operator."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidValue(f"{text!r} is not a date: use YYYY-MM-DD") from None
