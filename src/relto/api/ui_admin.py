"""The UI's operator endpoints under /ui/api/ (admin tokens only): tokens, communities, collections, peers and
the decision log, each through the same function the `relto` command uses."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from relto import operations as admin
from relto.archive import signing_key
from relto.archive import verify_log as check_log
from relto.decisions import as_json
from relto.domain.checkpoints import public_key
from relto.domain.errors import Forbidden, InvalidRequest
from relto.domain.parties import Party, check_nation
from relto.domain.timestamps import format_timestamp, parse_instant
from relto.domain.tokens import split_token
from relto.federation.peers import add_peer, peer_view, remove_peer
from relto.node import Node

Get = Callable[[str, Callable[[Party, dict[str, str]], Any]], None]
Post = Callable[[str, Callable[[Party, Any], Any]], None]


def add_ui_admin_routes(node: Node, get: Get, post: Post) -> None:
    """Register the operator endpoints (their handlers refuse non-admins with 403)."""

    def admin_only(handler: Callable[[Party, Any], Any]) -> Callable[[Party, Any], Any]:
        def guarded(party: Party, doc: Any) -> Any:
            if not party.admin:
                raise Forbidden("operator pages are for admin tokens")
            return handler(party, doc)

        return guarded

    def tokens(_: Party, __: Any) -> Any:
        rows = node.store.tokens()
        return {
            "tokens": [
                {
                    "key_id": t.key_id,
                    "nation": t.nation,
                    "organisation": t.organisation,
                    "name": t.name,
                    "clearance": t.clearance,
                    "admin": t.admin,
                    "can_write": t.can_write,
                    "kind": t.kind,
                    "created": format_timestamp(t.created),
                    "revoked": format_timestamp(t.revoked) if t.revoked else None,
                }
                for t in sorted(rows, key=lambda t: t.created, reverse=True)
            ]
        }

    def issue(_: Party, doc: Any) -> Any:
        doc = _obj(doc)
        token = admin.issue_token(
            node.store,
            nation=check_nation(_str(doc, "nation")),
            clearance=node.ladder.name(node.ladder.rank(_str(doc, "clearance"))),
            organisation=_str(doc, "organisation", ""),
            name=_str(doc, "name", "ui"),
            admin=bool(doc.get("admin", False)),
            can_write=bool(doc.get("can_write", True)),
        )
        # Shown once, in the answer to the operator who asked; never stored or logged in the clear.
        split = split_token(token)
        return {"token": token, "key_id": split[0] if split else ""}

    def revoke(_: Party, doc: Any) -> Any:
        admin.revoke_token(node.store, _str(_obj(doc), "key_id"))
        return {"revoked": True}

    def communities(_: Party, __: Any) -> Any:
        return {
            "communities": [
                {
                    "name": c.name,
                    "description": c.description,
                    "members": [
                        {
                            "nation": m.nation,
                            "since": m.since.isoformat(),
                            "until": m.until.isoformat() if m.until else None,
                        }
                        for m in c.members
                    ],
                }
                for c in node.communities()
            ]
        }

    def membership(join: bool) -> Callable[[Party, Any], Any]:
        def change(_: Party, doc: Any) -> Any:
            doc = _obj(doc)
            day = admin.parse_day(_str(doc, "day", "") or datetime.now(UTC).date().isoformat())
            if join:
                admin.join_community(node, _str(doc, "name"), _str(doc, "nation"), day)
            else:
                admin.leave_community(node, _str(doc, "name"), _str(doc, "nation"), day)
            return communities(_, None)

        return change

    def add_collection(_: Party, doc: Any) -> Any:
        doc = _obj(doc)
        record = node.add_collection(_str(doc, "title"), _str(doc, "description", ""))
        return {"id": record.id, "title": record.title}

    def peers(_: Party, __: Any) -> Any:
        return {"peers": [peer_view(p) for p in node.store.peers()]}

    def new_peer(_: Party, doc: Any) -> Any:
        doc = _obj(doc)
        added = add_peer(
            node,
            _str(doc, "name"),
            _str(doc, "url"),
            _str(doc, "token"),
            fingerprint=_str(doc, "fingerprint", ""),
            speaks_for=_str(doc, "speaks_for", ""),
        )
        return {"peer": peer_view(added.peer), "warning": added.warning}

    def drop_peer(_: Party, doc: Any) -> Any:
        remove_peer(node, _str(_obj(doc), "name"))
        return {"removed": True}

    def decisions(_: Party, params: dict[str, str]) -> Any:
        try:
            limit = min(max(int(params.get("limit") or 100), 1), 1000)
        except ValueError:
            raise InvalidRequest("limit must be a whole number") from None
        node.decisions.flush()  # what this process recorded so far is shown too
        records = node.store.decisions(
            0,
            limit,
            nation=check_nation(params["nation"]) if params.get("nation") else None,
            path=params.get("path") or None,
            object_id=params.get("object") or None,
            since=_optional_instant(params.get("since"), "since"),
            until=_optional_instant(params.get("until"), "until"),
            newest=True,
        )
        key_ids = {t.id: t.key_id for t in node.store.tokens()}
        return {"records": [as_json(r, key_ids) for r in reversed(records)]}

    def verify_log(_: Party, __: Any) -> Any:
        node.decisions.flush()  # what this process has recorded so far is part of the chain checked
        result = check_log(
            node.store, node_id=node.info.node_id, trusted_key=lambda: public_key(signing_key(node.store))
        )
        doc = {"ok": result.ok, "count": result.count, "head": result.head, "line": result.line}
        return {**doc, "broken_at": result.broken_at, "reason": result.reason}

    get("admin/tokens", admin_only(tokens))
    post("admin/tokens", admin_only(issue))
    post("admin/tokens/revoke", admin_only(revoke))
    get("admin/communities", admin_only(communities))
    post("admin/communities/join", admin_only(membership(True)))
    post("admin/communities/leave", admin_only(membership(False)))
    post("admin/collections", admin_only(add_collection))
    get("admin/peers", admin_only(peers))
    post("admin/peers", admin_only(new_peer))
    post("admin/peers/remove", admin_only(drop_peer))
    get("admin/decisions", admin_only(decisions))
    get("admin/decisions/verify", admin_only(verify_log))


def _obj(doc: Any) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise InvalidRequest("the body must be a JSON object")
    return doc


def _str(doc: dict[str, Any], key: str, default: str | None = None) -> str:
    value = doc.get(key, default)
    if value is None or (value == "" and default is None):
        raise InvalidRequest(f'"{key}" is required')
    if not isinstance(value, str):
        raise InvalidRequest(f'"{key}" must be text')
    return value.strip()


def _optional_instant(text: str | None, what: str) -> int | None:
    return parse_instant(text, what) if text else None
