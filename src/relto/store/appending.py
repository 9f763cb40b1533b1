"""Appending versions: the one write path for objects, in one transaction with its status (DESIGN invariants 5-7, 9)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import orjson
from sqlalchemy import (
    Connection,
    insert,
    select,
    update,
)

from relto.store import schema as t
from relto.store.base import (
    Appended,
    Gate,
    Holding,
    NewVersion,
    StatusRow,
)
from relto.store.sqlcore import TOMBSTONE_COLUMNS, Clock, SQLBase, chunks


class _Held(NamedTuple):
    """A stored version as the append path sees it."""

    collection: str
    stix_id: str
    originator: str
    version: int
    revoked: bool
    copy_rank: int
    marking_set: int
    type: str
    shape: bytes | None
    date_added: int
    seq: int

    def holding(self) -> Holding:
        return Holding(
            self.stix_id,
            self.type,
            self.version,
            self.marking_set,
            self.shape,
            self.collection,
            self.originator,
            self.copy_rank,
        )


def _row(
    collection_id: str, v: NewVersion, seq: int, date_added: int, has_newer: bool, copy_rank: int, shared: bool
) -> tuple[Any, ...]:
    """A version's row, in INSERT_COLUMNS order."""
    return (
        seq,
        collection_id,
        v.stix_id,
        v.type,
        v.version,
        v.version_text,
        v.spec_version,
        date_added,
        v.marking_set,
        has_newer,
        v.body,
        v.shape,
        v.revoked,
        v.originator,
        copy_rank,
        shared,
        v.path,
    )


def _define(conn: Connection, v: NewVersion, new_definitions: dict[tuple[str, str], bytes]) -> None:
    """Store a marking definition new to its publisher (readable by the rest of this append at once)."""
    new_definitions[(v.stix_id, v.originator)] = v.body
    conn.execute(
        insert(t.definitions).values(id=v.stix_id, originator=v.originator, marking_set=v.marking_set, body=v.body)
    )


class Appending(SQLBase):
    """SQLStore's append path."""

    def append(
        self,
        collection_id: str,
        versions: Sequence[NewVersion],
        status: Callable[[Appended], StatusRow] | None = None,
        gate: Gate | None = None,
    ) -> Appended:
        """Store new versions (each in its publisher's copy) and their status in one transaction."""
        with self._writing() as conn:
            outcome = self._append_in(conn, collection_id, versions, gate)
            if status is not None:
                kept = status(outcome)
                conn.execute(
                    insert(t.statuses).values(id=kept.id, token_id=kept.token_id, created=kept.created, body=kept.body)
                )
        return outcome

    def _append_in(
        self, conn: Connection, collection_id: str, versions: Sequence[NewVersion], gate: Gate | None
    ) -> Appended:
        """The append, inside the caller's write transaction."""
        ids = list({v.stix_id for v in versions})
        o = t.objects
        held: dict[str, list[_Held]] = {}  # id -> its stored versions, in every collection
        # Every collection named, so the (collection, stix_id, ...) index serves the lookup.
        collections = list(conn.execute(select(t.collections.c.id)).scalars())
        for chunk in chunks(ids, 500):
            query = select(
                o.c.collection,
                o.c.stix_id,
                o.c.originator,
                o.c.version,
                o.c.revoked,
                o.c.copy_rank,
                o.c.marking_set,
                o.c.type,
                o.c.shape,
                o.c.date_added,
                o.c.seq,
            ).where(o.c.collection.in_(collections), o.c.stix_id.in_(chunk))
            for row in conn.execute(query):
                held.setdefault(row.stix_id, []).append(_Held(*tuple(row)))
        here = {
            (h.stix_id, h.originator, h.version): h for hs in held.values() for h in hs if h.collection == collection_id
        }
        copies: dict[tuple[str, str], list[int]] = {}  # (id, originator) -> versions in this collection
        rank: dict[tuple[str, str], int] = {}
        revoked: set[tuple[str, str]] = set()
        nations_of: dict[str, set[str]] = {}  # id -> the nations with a copy of it in this collection
        for h in here.values():
            copies.setdefault((h.stix_id, h.originator), []).append(h.version)
            nations_of.setdefault(h.stix_id, set()).add(h.originator)
            rank[(h.stix_id, h.originator)] = h.copy_rank
            if h.revoked:
                revoked.add((h.stix_id, h.originator))
        refused: dict[int, str] = {}
        clock = Clock.read(conn)
        stored: list[bool] = []
        rows: list[tuple[Any, ...]] = []
        superseded: list[tuple[str, str, int]] = []
        newly_shared: set[tuple[str, str]] = set()
        revocations: list[NewVersion] = []
        new_definitions: dict[tuple[str, str], bytes] = {}  # stored by this append, not yet readable
        # Ids met for the first time (held nowhere, not yet in this append): their row is all they need until
        # the same id comes again in this append, when materialise() files them like any held version.
        fresh: dict[str, _Held] = {}

        def materialise(h: _Held) -> None:
            del fresh[h.stix_id]
            copy = (h.stix_id, h.originator)
            here[(h.stix_id, h.originator, h.version)] = h
            held[h.stix_id] = [h]
            copies[copy] = [h.version]
            rank[copy] = h.copy_rank
            nations_of[h.stix_id] = {h.originator}
            if h.revoked:
                revoked.add(copy)

        for i, v in enumerate(versions):
            if v.stix_id not in held:
                first = fresh.get(v.stix_id)
                if first is None:
                    # The common case, a new object: nothing to compare with, no copy to join.
                    seq, date_added = clock.tick()
                    fresh[v.stix_id] = _Held(
                        collection_id,
                        v.stix_id,
                        v.originator,
                        v.version,
                        v.revoked,
                        seq,
                        v.marking_set,
                        v.type,
                        v.shape,
                        date_added,
                        seq,
                    )
                    stored.append(True)
                    rows.append(_row(collection_id, v, seq, date_added, False, seq, False))
                    if v.revoked:
                        revocations.append(v)
                    if v.type == "marking-definition":
                        _define(conn, v, new_definitions)
                    continue
                materialise(first)
            copy = (v.stix_id, v.originator)
            same = here.get((v.stix_id, v.originator, v.version))
            defined = v.type == "marking-definition" and any(
                h.originator == v.originator for h in held.get(v.stix_id, ())
            )
            if defined:
                # Definitions are not versioned: the publisher's stored one (in any collection) is it.
                why = self._differs(conn, v, same, new_definitions)
                if why or copy in copies:
                    stored.append(False)
                    if why:
                        refused[i] = why
                    continue
            elif same is not None:
                stored.append(False)
                why = self._differs(conn, v, same, new_definitions)
                if why:
                    refused[i] = why
                continue
            if copy in revoked:
                # The copy is revoked: older versions are gone for good, and nothing follows a revocation.
                stored.append(False)
                refused[i] = "not stored: this object is revoked (a stored version says so), and stays so"
                continue
            others = [h for h in held.get(v.stix_id, ()) if h.originator != v.originator]
            if gate is not None and others:
                why = gate(v, [h.holding() for h in held[v.stix_id]])  # own versions included
                if why:
                    stored.append(False)
                    refused[i] = why
                    continue
            seq, date_added = clock.tick()
            mine = copies.setdefault(copy, [])
            if mine and min(mine) < v.version:
                superseded.append((v.stix_id, v.originator, v.version))
            has_newer = bool(mine) and max(mine) > v.version
            mine.append(v.version)
            rank.setdefault(copy, seq)
            nations = nations_of.setdefault(v.stix_id, set())
            nations.add(v.originator)
            shared = len(nations) > 1
            if shared:
                newly_shared.add(copy)
            if v.revoked:
                revocations.append(v)
                revoked.add(copy)
            stored.append(True)
            new = _Held(
                collection_id,
                v.stix_id,
                v.originator,
                v.version,
                v.revoked,
                rank[copy],
                v.marking_set,
                v.type,
                v.shape,
                date_added,
                seq,
            )
            here[(v.stix_id, v.originator, v.version)] = new
            held.setdefault(v.stix_id, []).append(new)
            rows.append(_row(collection_id, v, seq, date_added, has_newer, rank[copy], shared))
            if v.type == "marking-definition" and not defined:
                _define(conn, v, new_definitions)
        if rows:
            self._insert_versions(conn, rows)
            for stix_id, originator, version in superseded:
                conn.execute(
                    update(o)
                    .where(
                        o.c.collection == collection_id,
                        o.c.stix_id == stix_id,
                        o.c.originator == originator,
                        o.c.version < version,
                    )
                    .values(has_newer=True)
                )
            # Every copy of an id held by several nations is marked, so reads choose among them.
            for chunk in chunks(sorted({stix_id for stix_id, _ in newly_shared}), 500):
                conn.execute(
                    update(o)
                    .where(o.c.collection == collection_id, o.c.stix_id.in_(chunk), o.c.shared.is_(False))
                    .values(shared=True)
                )
            clock.write(conn)
            for v in revocations:
                self._revoke_older(conn, collection_id, v)
            self._ring(conn, collection_id)
        # The date_added of each input's version, stored now or before (None when refused): the version TAXII
        # shows for an object without modified or created (an SCO).
        # (An id still in `fresh` came once in this append: its entry is that version.)
        found = [
            None if i in refused else fresh.get(v.stix_id) or here.get((v.stix_id, v.originator, v.version))
            for i, v in enumerate(versions)
        ]
        added = [None if h is None else h.date_added for h in found]
        # And its sequence, which the decision log refers to it by.
        return Appended(
            stored=stored, refused=refused, date_added=added, seqs=[0 if h is None else h.seq for h in found]
        )

    @staticmethod
    def _differs(
        conn: Connection, v: NewVersion, same: _Held | None, pending: dict[tuple[str, str], bytes]
    ) -> str | None:
        """Why a version already stored in the publisher's copy is refused rather than a no-op, if it is."""
        if v.type == "marking-definition":
            d = t.definitions
            body = (
                pending.get((v.stix_id, v.originator))
                or conn.execute(select(d.c.body).where(d.c.id == v.stix_id, d.c.originator == v.originator)).scalar()
            )
            if body is not None and orjson.loads(body) != orjson.loads(v.body):
                return (
                    "not stored: marking definitions are immutable (STIX 2.1 does not version them), and this "
                    "id is already stored with other contents; use a new id for new contents"
                )
            return None
        if same is not None and same.marking_set != v.marking_set:
            return (
                "not stored: this version is already stored with other markings; to change the markings, "
                "publish a new version (a later 'modified')"
            )
        return None

    def _revoke_older(self, conn: Connection, collection_id: str, v: NewVersion) -> None:
        """Delete, leaving tombstones, the versions of the revoking nation's copy older than the revocation."""
        o = t.objects
        query = select(*TOMBSTONE_COLUMNS).where(
            o.c.collection == collection_id,
            o.c.stix_id == v.stix_id,
            o.c.originator == v.originator,
            o.c.version < v.version,
        )
        found = conn.execute(query).all()
        if found:
            self._tombstone(conn, collection_id, found, v.originator)
