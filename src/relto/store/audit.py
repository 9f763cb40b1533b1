"""The decision log's tables: append chained records inside a write transaction, read them back by seq with
their references resolved, and close archived records with a signed checkpoint."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from sqlalchemy import Connection, delete, func, insert, or_, select

from relto.domain.audit import GENESIS, Decision, Item, PendingDecision, pack_refs, seal, unpack_refs
from relto.domain.checkpoints import Checkpoint
from relto.store import schema as t

_d = t.decisions
_c = t.checkpoints
_RESOLVE_CHUNK = 1000


def decision_head(conn: Connection) -> tuple[int, str]:
    """(seq, hash) of the last record, stored or archived; (0, GENESIS) when the log is empty."""
    row = conn.execute(select(_d.c.seq, _d.c.hash).order_by(_d.c.seq.desc()).limit(1)).first()
    if row is None:
        row = conn.execute(select(_c.c.seq, _c.c.hash).order_by(_c.c.seq.desc()).limit(1)).first()
    return (0, GENESIS) if row is None else (int(row[0]), str(row[1]))


def append_decisions(conn: Connection, pending: Sequence[PendingDecision]) -> list[Decision]:
    """Chain `pending` after the last record and insert them (format 2); return the stored records.

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
                "items": orjson.dumps(r.copies).decode(),
                "prev_hash": r.prev_hash,
                "hash": r.hash,
                "format": 2,
                "refs": pack_refs(r.refs) if r.refs else None,
                "digest": r.digest,
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
    """Records after `after_seq` matching every filter given, in seq order, at most `limit`; references
    resolved to the versions' (stix id, version).

    `since` (inclusive) and `until` (exclusive) bound `at`, in microseconds. `object_id` matches records
    whose items name that object (a scan: meant for audits, not for the request path). `newest`: the last
    `limit` matching records instead of the first (still returned in seq order).
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
    order = _d.c.seq.desc() if newest else _d.c.seq
    if object_id is None:
        records = _decisions(conn, conn.execute(stmt.order_by(order).limit(limit)).all())
    else:
        records = _naming(conn, stmt, order, newest, object_id, limit)
    if newest:
        records.reverse()
    return records


def _naming(conn: Connection, stmt: Any, order: Any, newest: bool, object_id: str, limit: int) -> list[Decision]:
    """The records of `stmt` whose items name `object_id`, `limit` at most, scanned in batches."""
    # Copies are stored with orjson, so the id appears exactly as orjson writes it, quotes included; a record
    # with references may name it through one of the sequences its versions have (or had).
    needle = _like_escape(orjson.dumps(object_id).decode())
    o, dl = t.objects, t.deletions
    seqs = set(conn.scalars(select(o.c.seq).where(o.c.stix_id == object_id)))
    seqs.update(conn.scalars(select(dl.c.version_seq).where(dl.c.stix_id == object_id, dl.c.version_seq.is_not(None))))
    text_match = _d.c["items"].like(f"%{needle}%", escape="\\")
    stmt = stmt.where(or_(text_match, _d.c.refs.is_not(None)) if seqs else text_match)
    found: list[Any] = []
    last: int | None = None
    while len(found) < limit:
        page = stmt if last is None else stmt.where(_d.c.seq < last if newest else _d.c.seq > last)
        rows = conn.execute(page.order_by(order).limit(200)).all()
        for row in rows:
            if (row.refs is not None and not seqs.isdisjoint(_refs(row.refs))) or needle_in(row.items, object_id):
                found.append(row)
        if len(rows) < 200:
            break
        last = rows[-1].seq
    return _decisions(conn, found[:limit])


def needle_in(items_text: str, object_id: str) -> bool:
    """Whether stored copies name `object_id`."""
    try:
        parsed = orjson.loads(items_text)
    except orjson.JSONDecodeError:
        return False
    return isinstance(parsed, list) and any(isinstance(p, list) and p and p[0] == object_id for p in parsed)


def _decisions(conn: Connection, rows: Sequence[Any]) -> list[Decision]:
    """Records of these rows, every reference resolved in a few queries."""
    refs_of = {row.seq: _refs(row.refs) for row in rows if row.refs is not None}
    wanted: set[int] = set()
    for refs in refs_of.values():
        wanted.update(refs)
    wanted.discard(0)
    known = resolve(conn, wanted) if wanted else {}
    return [_decision(row, refs_of.get(row.seq, ()), known) for row in rows]


def resolve(conn: Connection, refs: Iterable[int]) -> dict[int, Item]:
    """(stix id, version) of the versions with these sequences: stored ones, then deleted ones' tombstones."""
    o, dl = t.objects, t.deletions
    found: dict[int, Item] = {}
    ordered = sorted(set(refs))
    for start in range(0, len(ordered), _RESOLVE_CHUNK):
        chunk = ordered[start : start + _RESOLVE_CHUNK]
        lo, hi = chunk[0], chunk[-1]
        # A page of consecutive versions is one range read; a sparse chunk asks for its sequences alone.
        where = o.c.seq.between(lo, hi) if hi - lo < 2 * len(chunk) else o.c.seq.in_(chunk)
        found.update(
            (s, (i, v)) for s, i, v in conn.execute(select(o.c.seq, o.c.stix_id, o.c.version_text).where(where))
        )
    missing = [s for s in ordered if s not in found]
    for start in range(0, len(missing), _RESOLVE_CHUNK):
        chunk = missing[start : start + _RESOLVE_CHUNK]
        query = select(dl.c.version_seq, dl.c.stix_id, dl.c.version_text).where(dl.c.version_seq.in_(chunk))
        found.update((s, (i, v or None)) for s, i, v in conn.execute(query))
    return found


def _decision(row: Any, refs: tuple[int, ...], known: dict[int, Item]) -> Decision:
    copies = _items(row.items)
    fmt = int(row.format)
    if fmt == 1 or not refs:
        items = copies
    else:
        rest = iter(copies)
        # A reference that resolves to nothing (a tampered row) becomes an item no node writes (an id with
        # '<' in it): the items then hash differently from the record's digest, and verification says so.
        items = tuple(
            (next(rest, ("<missing copy>", None)) if ref == 0 else known.get(ref, (f"<no version {ref}>", None)))
            for ref in refs
        )
    return Decision(
        seq=row.seq,
        at=row.at,
        token_id=row.token_id,
        nation=row.nation,
        path=row.path,
        collection=row.collection,
        items=items,
        prev_hash=row.prev_hash,
        hash=row.hash,
        format=fmt,
        refs=refs,
        digest=row.digest or "",
    )


def _refs(blob: bytes) -> tuple[int, ...]:
    try:
        return unpack_refs(bytes(blob))
    except ValueError:
        return (-1,)  # a tampered blob: resolves to nothing, and the record's hash no longer matches


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


# checkpoints and archiving ------------------------------------------------------------------------------
def read_checkpoints(conn: Connection) -> list[Checkpoint]:
    """Every checkpoint, oldest first."""
    return [
        Checkpoint(
            node=r.node,
            seq=r.seq,
            hash=r.hash,
            at=r.at,
            count=r[3],  # `count` is also a method of rows
            public_key=r.public_key,
            signature=r.signature,
        )
        for r in conn.execute(select(_c).order_by(_c.c.seq))
    ]


def last_seq_before(conn: Connection, at: int) -> int:
    """The last seq of the longest run of records, from the first stored, all decided before `at`."""
    first_late = conn.execute(select(func.min(_d.c.seq)).where(_d.c.at >= at)).scalar()
    if first_late is not None:
        return int(first_late) - 1
    return decision_head(conn)[0]


def close_archived(conn: Connection, checkpoint: Checkpoint, after_seq: int) -> int:
    """Store `checkpoint` and delete the records it closes (seq <= checkpoint.seq); return how many.

    Call inside a write transaction holding the write lock. ValueError when another archive closed records
    since the caller read `after_seq` (the last checkpoint's seq), or the records are not all there.
    """
    last = conn.execute(select(func.max(_c.c.seq))).scalar() or 0
    if last != after_seq:
        raise ValueError(f"another archive closed the log at record {last} meanwhile")
    stored = conn.execute(select(_d.c.hash).where(_d.c.seq == checkpoint.seq)).scalar()
    if stored != checkpoint.hash:
        raise ValueError(f"record {checkpoint.seq} is not the one archived")
    conn.execute(insert(_c).values(**checkpoint.to_json()))
    deleted = conn.execute(delete(_d).where(_d.c.seq <= checkpoint.seq)).rowcount
    if deleted != checkpoint.count:
        raise ValueError(f"{deleted} records to delete where the archive holds {checkpoint.count}")
    return int(deleted)
