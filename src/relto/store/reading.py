"""Reading versions and the event log: the policy-filtered query, deletions, holdings, the stream's tail."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    bindparam,
    exists,
    or_,
    select,
)
from sqlalchemy.sql import Select

from relto.store import schema as t
from relto.store.base import (
    Event,
    Holding,
    StoredVersion,
    VersionQuery,
)
from relto.store.sqlcore import TOMBSTONE_COLUMNS, SQLBase, chunks, last_seq_at

_VERSION_COLUMNS = (
    t.objects.c.seq,
    t.objects.c.stix_id,
    t.objects.c.type,
    t.objects.c.version,
    t.objects.c.version_text,
    t.objects.c.spec_version,
    t.objects.c.date_added,
    t.objects.c.marking_set,
    t.objects.c.body,
    t.objects.c.shape,
    t.objects.c.originator,
    t.objects.c.copy_rank,
    t.objects.c.shared,
)


# What a deletion needs of each version it removes (see _tombstone).
class Reading(SQLBase):
    """SQLStore's reads, deletions and event log."""

    def head(self) -> int:
        """The last sequence handed out (objects and deletions)."""
        with self._reading() as conn:
            return int(conn.execute(select(t.clock.c.last_seq).where(t.clock.c.id == 1)).scalar_one())

    def events(
        self,
        collection_id: str | None,
        after_seq: int,
        limit: int,
        visible: frozenset[int] | None,
        known_max_set: int | None = None,
    ) -> tuple[list[Event], int]:
        """Object versions and deletions after `after_seq` in sequence order (one collection, or every one;
        only `visible` sets if given, plus sets newer than `known_max_set`), and the sequence up to which the
        answer is complete."""
        o, d = t.objects, t.deletions
        versions = select(
            o.c.seq,
            o.c.stix_id,
            o.c.type,
            o.c.version_text,
            o.c.date_added,
            o.c.marking_set,
            o.c.body,
            o.c.shape,
            o.c.originator,
            o.c.copy_rank,
            o.c.shared,
            o.c.collection,
            o.c.path,
        )
        tombs = select(
            d.c.seq,
            d.c.stix_id,
            d.c.type,
            d.c.version_text,
            d.c.date_added,
            d.c.marking_set,
            d.c.shape,
            d.c.originator,
            d.c.copy_rank,
            d.c.shared,
            d.c.skeleton,
            d.c.collection,
            d.c.by_owner,
        )
        with self._reading() as conn:
            # The head first: writers commit in sequence order, so everything up to it is visible below.
            head = int(conn.execute(select(t.clock.c.last_seq).where(t.clock.c.id == 1)).scalar_one())
            versions = versions.where(o.c.seq > after_seq, o.c.seq <= head)
            tombs = tombs.where(d.c.seq > after_seq, d.c.seq <= head)
            if collection_id is not None:
                versions = versions.where(o.c.collection == collection_id)
                tombs = tombs.where(d.c.collection == collection_id)
            if visible is not None:
                seen_o: ColumnElement[bool] = o.c.marking_set.in_(sorted(visible))
                seen_d: ColumnElement[bool] = d.c.marking_set.in_(sorted(visible))
                if known_max_set is not None:
                    seen_o = or_(seen_o, o.c.marking_set > known_max_set)
                    seen_d = or_(seen_d, d.c.marking_set > known_max_set)
                versions = versions.where(seen_o)
                tombs = tombs.where(seen_d)
            rows = [
                Event(
                    r.seq,
                    r.stix_id,
                    r.type,
                    r.version_text,
                    r.date_added,
                    r.marking_set,
                    r.body,
                    r.shape,
                    r.originator,
                    r.copy_rank,
                    r.shared,
                    None,
                    r.collection,
                    r.path,
                )
                for r in conn.execute(versions.order_by(o.c.seq).limit(limit))
            ]
            rows += [
                Event(
                    r.seq,
                    r.stix_id,
                    r.type,
                    r.version_text,
                    r.date_added,
                    r.marking_set,
                    None,
                    r.shape,
                    r.originator,
                    r.copy_rank,
                    r.shared,
                    r.skeleton,
                    r.collection,
                    None,
                    r.by_owner,
                )
                for r in conn.execute(tombs.order_by(d.c.seq).limit(limit))
            ]
        rows.sort(key=lambda e: e.seq)
        if len(rows) >= limit:
            return rows[:limit], rows[limit - 1].seq
        return rows, max(head, after_seq)

    def holdings(self, ids: Sequence[str]) -> list[Holding]:
        """Every stored version of these ids, in any collection."""
        o = t.objects
        out: list[Holding] = []
        with self._reading() as conn:
            # Every collection named, so the (collection, stix_id, version) index serves the lookup.
            collections = list(conn.execute(select(t.collections.c.id)).scalars())
            for chunk in chunks(sorted(set(ids)), 500):
                stmt = select(
                    o.c.stix_id,
                    o.c.type,
                    o.c.version,
                    o.c.marking_set,
                    o.c.shape,
                    o.c.collection,
                    o.c.originator,
                    o.c.copy_rank,
                ).where(o.c.collection.in_(collections), o.c.stix_id.in_(chunk))
                out.extend(Holding(*r) for r in conn.execute(stmt))
        return out

    def seq_at(self, date_added: int) -> int:
        """The last sequence (object or deletion) added at or before `date_added`."""
        with self._reading() as conn:
            return max(last_seq_at(conn, t.objects, date_added), last_seq_at(conn, t.deletions, date_added))

    def read(self, query: VersionQuery) -> list[StoredVersion]:
        """Versions matching the query, in sequence order, at most `limit`."""
        if not query.visible and query.known_max_set is None:
            return []
        with self._reading() as conn:
            stmt, params = self._select(conn, query, _VERSION_COLUMNS)
            rows = conn.execute(stmt.order_by(t.objects.c.seq).limit(query.limit), params).all()
        return [StoredVersion(*r) for r in rows]

    def delete(self, query: VersionQuery, owner: str | None = None) -> int:
        """Delete the versions the query matches (limit ignored); return how many. `owner`: the deleting
        party's nation (tombstones of its own versions travel to peers)."""
        if not query.visible:
            return 0
        with self._writing() as conn:
            stmt, params = self._select(conn, query, TOMBSTONE_COLUMNS)
            found = conn.execute(stmt, params).all()
            if not found:
                return 0
            self._tombstone(conn, query.collection, found, owner)
            self._ring(conn, query.collection)
        return len(found)

    def _select(
        self, conn: Connection, query: VersionQuery, columns: Sequence[Any]
    ) -> tuple[Select[Any], dict[str, Any]]:
        """The statement (cached by shape, so SQLAlchemy's compiled cache hits) and its parameters."""
        stamps = [v for v in query.versions if isinstance(v, int)]
        modes = () if "all" in query.versions else tuple(m for m in ("last", "first") if m in query.versions)
        shape = (
            tuple(columns),
            bool(query.ids),
            bool(query.types),
            bool(query.spec_versions),
            modes,
            bool(stamps) and "all" not in query.versions,
            query.known_max_set is not None,
            query.originator is not None,
        )
        stmt = self._statements.get(shape)
        if stmt is None:
            stmt = _build_select(*shape)
            self._statements[shape] = stmt
        after = query.after_seq
        if query.added_after is not None:
            after = max(after, last_seq_at(conn, t.objects, query.added_after))
        params = {
            "collection": query.collection,
            "after": after,
            "visible": sorted(query.visible),
            "ids": list(query.ids),
            "types": list(query.types),
            "spec_versions": list(query.spec_versions),
            "stamps": stamps,
            "known_max": query.known_max_set,
            "originator": query.originator,
        }
        return stmt, params


def _build_select(
    columns: tuple[Any, ...],
    by_ids: bool,
    by_types: bool,
    by_spec: bool,
    modes: tuple[str, ...],
    by_stamps: bool,
    unknown_sets: bool,
    one_copy: bool = False,
) -> Select[Any]:
    """The read query: the policy (marking sets the party may see) is part of the WHERE clause.

    With `unknown_sets`, rows whose marking set is newer than the caller's compiled policy come back too,
    so the caller can refresh its policy instead of silently paging past them.
    """
    o = t.objects
    n = o.alias("n")

    def visible_in(table: Any, with_unknown: bool) -> ColumnElement[bool]:
        cond = table.c.marking_set.in_(bindparam("visible", expanding=True))
        return or_(cond, table.c.marking_set > bindparam("known_max")) if with_unknown else cond

    where: list[ColumnElement[bool]] = [
        o.c.collection == bindparam("collection"),
        o.c.seq > bindparam("after"),
        visible_in(o, unknown_sets),
    ]
    if one_copy:
        where.append(o.c.originator == bindparam("originator"))
    if by_ids:
        where.append(o.c.stix_id.in_(bindparam("ids", expanding=True)))
    if by_types:
        where.append(o.c.type.in_(bindparam("types", expanding=True)))
    if by_spec:
        where.append(o.c.spec_version.in_(bindparam("spec_versions", expanding=True)))
    choices: list[ColumnElement[bool]] = []
    for mode in modes:
        other = n.c.version > o.c.version if mode == "last" else n.c.version < o.c.version
        # A version under a marking set the caller does not know yet must not hide an older one: that newer
        # version may lie beyond this page, where the caller would only then learn of its set, too late.
        # Versions are ordered within a copy: another nation's copy never supersedes this one.
        cond = [
            n.c.collection == o.c.collection,
            n.c.stix_id == o.c.stix_id,
            n.c.originator == o.c.originator,
            other,
            visible_in(n, False),
        ]
        if by_spec:
            cond.append(n.c.spec_version.in_(bindparam("spec_versions", expanding=True)))
        hidden_by_other = exists().where(and_(*cond))
        # has_newer is false for most rows: only versions with a newer one need the correlated probe.
        choices.append(o.c.has_newer.is_(False) | ~hidden_by_other if mode == "last" else ~hidden_by_other)
    if by_stamps:
        # A version without version_text (an SCO) is known by its date_added (docs/interop.md).
        stamped = o.c.version_text.is_not(None) & o.c.version.in_(bindparam("stamps", expanding=True))
        choices.append(stamped | (o.c.version_text.is_(None) & o.c.date_added.in_(bindparam("stamps", expanding=True))))
    if choices:
        where.append(or_(*choices))
    return select(*columns).where(*where)
