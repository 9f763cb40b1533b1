"""The decision log's table: append chained records inside a write transaction, read them back by seq."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import Connection, insert, select

from relto.domain.audit import GENESIS, Decision, Item, PendingDecision, seal
from relto.store import schema as t

_d = t.decisions


def decision_head(conn: Connection) -> tuple[int, str]:
    """(seq, hash) of the last stored record; (0, GENESIS) when the log is empty."""
    row = conn.execute(select(_d.c.seq, _d.c.hash).order_by(_d.c.seq.desc()).limit(1)).first()
    return (0, GENESIS) if row is None else (int(row[0]), str(row[1]))


def append_decisions(conn: Connection, pending: Sequence[PendingDecision]) -> list[Decision]:
    """Chain `pending` after the last stored record and insert them; return the stored records.

    Call inside a write transaction that holds the database-wide write lock, so that no other writer reads
    the same last record: the chain stays linear across processes.
    """
    if not pending:
        return []
    seq, prev_hash = decision_head(conn)
    records: list[Decision] = []
    for fields in pending:
        seq += 1
        record = seal(prev_hash, seq, fields)
        records.append(record)
        prev_hash = record.hash
    conn.execute(
        insert(_d),
        [
            {
                "seq": r.seq,
                "at": r.at,
                "token_id": r.token_id,
                "nation": r.nation,
                "path": r.path,
                "collection": r.collection,
                "items": orjson.dumps(r.items).decode(),
                "prev_hash": r.prev_hash,
                "hash": r.hash,
            }
            for r in records
        ],
    )
    return records


def read_decisions(
    conn: Connection,
    *,
    after_seq: int = 0,
    limit: int = 1000,
    nation: str | None = None,
    path: str | None = None,
    object_id: str | None = None,
    since: int | None = None,
    until: int | None = None,
    newest: bool = False,
    token_id: int | None = None,
) -> list[Decision]:
    """Records after `after_seq` matching every filter given, in seq order, at most `limit`.

    `since` (inclusive) and `until` (exclusive) bound `at`, in microseconds. `object_id` matches records
    whose items name that object (a scan of the items text: meant for audits, not for the request path).
    `newest`: the last `limit` matching records instead of the first (still returned in seq order).
    """
    stmt = select(_d).where(_d.c.seq > after_seq)
    if nation is not None:
        stmt = stmt.where(_d.c.nation == nation)
    if token_id is not None:
        stmt = stmt.where(_d.c.token_id == token_id)
    if path is not None:
        stmt = stmt.where(_d.c.path == path)
    if since is not None:
        stmt = stmt.where(_d.c.at >= since)
    if until is not None:
        stmt = stmt.where(_d.c.at < until)
    if object_id is not None:
        # Items are stored with orjson, so the id appears exactly as orjson writes it, quotes included.
        needle = _like_escape(orjson.dumps(object_id).decode())
        stmt = stmt.where(_d.c["items"].like(f"%{needle}%", escape="\\"))
    stmt = stmt.order_by(_d.c.seq.desc() if newest else _d.c.seq).limit(limit)
    records = [_decision(row) for row in conn.execute(stmt)]
    if newest:
        records.reverse()
    return records


def _decision(row: Any) -> Decision:
    return Decision(
        seq=row.seq,
        at=row.at,
        token_id=row.token_id,
        nation=row.nation,
        path=row.path,
        collection=row.collection,
        items=_items(row.items),
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


def _items(text: str) -> tuple[Item, ...]:
    """The stored items; text that is not a list of pairs (a tampered row) becomes one item no node writes
    (an id with '<' in it), so the record's hash no longer matches and verification reports it as edited."""
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, list) and all(isinstance(p, list) and len(p) == 2 for p in parsed):
        return tuple((p[0], p[1]) for p in parsed)
    return ((f"<unreadable items: {text[:60]!r}>", None),)


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
