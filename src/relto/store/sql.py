"""SQLStore: the storage interface on SQLAlchemy Core, shared by the SQLite and PostgreSQL back-ends."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from typing import Any

import orjson
from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.sql import Select

from relto.domain import redact
from relto.domain.audit import Decision, PendingDecision
from relto.domain.communities import Community, Membership
from relto.domain.errors import ConfigurationError
from relto.domain.markings import MarkingSet
from relto.domain.timestamps import now_micros
from relto.store import audit
from relto.store import schema as t
from relto.store.base import (
    Appended,
    CollectionRecord,
    Definition,
    Event,
    Gate,
    Holding,
    NewVersion,
    NodeInfo,
    StatusRow,
    StoredVersion,
    TokenRecord,
    VersionQuery,
)
from relto.store.migrate import upgrade

INSERT_COLUMNS = (
    "seq",
    "collection",
    "stix_id",
    "type",
    "version",
    "version_text",
    "spec_version",
    "date_added",
    "marking_set",
    "has_newer",
    "body",
    "shape",
    "revoked",
    "originator",
    "copy_rank",
    "shared",
)
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
_TOMBSTONE_COLUMNS = (
    t.objects.c.seq,
    t.objects.c.stix_id,
    t.objects.c.type,
    t.objects.c.version_text,
    t.objects.c.marking_set,
    t.objects.c.originator,
    t.objects.c.copy_rank,
    t.objects.c.shared,
    t.objects.c.shape,
    t.objects.c.body,
)


@dataclass(frozen=True, slots=True)
class _Held:
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


class SQLStore:
    """The Store interface over an SQLAlchemy engine. Back-ends subclass it for their write transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # Back-ends read this option to open write transactions with their write lock.
        self._write_engine = engine.execution_options(relto_write=True)
        # One writer at a time inside this process; the back-end's write lock orders processes.
        self._write_lock = threading.Lock()
        self._statements: dict[tuple[Any, ...], Select[Any]] = {}
        with self._writing() as conn:
            upgrade(conn)

    def close(self) -> None:
        """Release connections."""
        self.engine.dispose()

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        """A write transaction; back-ends override to take their database-wide write lock."""
        with self._write_lock, self._write_engine.begin() as conn:
            yield conn

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    # node ---------------------------------------------------------------------------------------------
    def initialised(self) -> bool:
        """Whether `relto init` has run on this database."""
        with self._reading() as conn:
            return conn.execute(select(t.meta.c.value).where(t.meta.c.key == "nation")).first() is not None

    def initialise(self, info: NodeInfo, communities: Sequence[Community]) -> None:
        """Create the node: its identity and the starting communities."""
        with self._writing() as conn:
            if conn.execute(select(t.meta.c.value).where(t.meta.c.key == "nation")).first() is not None:
                raise ConfigurationError("this node is already initialised")
            conn.execute(
                insert(t.meta),
                [
                    {"key": "node_id", "value": info.node_id},
                    {"key": "nation", "value": info.nation},
                    {"key": "levels", "value": orjson.dumps(list(info.levels)).decode()},
                    {"key": "title", "value": info.title},
                    {"key": "communities_generation", "value": "1"},
                ],
            )
            conn.execute(insert(t.clock).values(id=1, last_seq=0, last_date_added=0))
            for community in communities:
                self._put_community(conn, community)

    def node_info(self) -> NodeInfo:
        """The node's identity and ladder."""
        with self._reading() as conn:
            values = dict(conn.execute(select(t.meta.c.key, t.meta.c.value)).all())
        if "nation" not in values:
            raise ConfigurationError("this database holds no relto node: run `relto init` first")
        return NodeInfo(
            node_id=values["node_id"],
            nation=values["nation"],
            levels=tuple(orjson.loads(values["levels"])),
            title=values["title"],
        )

    def secret(self, name: str, make: Callable[[], bytes]) -> bytes:
        """A node secret kept in the database (made by `make` the first time it is asked for)."""
        key = f"secret:{name}"
        query = select(t.meta.c.value).where(t.meta.c.key == key)
        with self._reading() as conn:
            found = conn.execute(query).scalar()
        if found is None:
            with self._writing() as conn:
                found = conn.execute(query).scalar()
                if found is None:
                    found = make().hex()
                    conn.execute(insert(t.meta).values(key=key, value=found))
        return bytes.fromhex(found)

    # tokens -------------------------------------------------------------------------------------------
    def add_token(self, record: TokenRecord) -> int:
        """Store a token (its hash) and return its id."""
        row = {k: v for k, v in record.__dict__.items() if k != "id"}
        with self._writing() as conn:
            result = conn.execute(insert(t.tokens).values(**row))
            return int(result.inserted_primary_key[0])  # type: ignore[index]

    def token(self, key_id: str) -> TokenRecord | None:
        """The token with this public key id, revoked or not."""
        with self._reading() as conn:
            row = conn.execute(select(t.tokens).where(t.tokens.c.key_id == key_id)).mappings().first()
        return TokenRecord(**row) if row else None

    def tokens(self) -> list[TokenRecord]:
        """All tokens."""
        with self._reading() as conn:
            return [TokenRecord(**r) for r in conn.execute(select(t.tokens).order_by(t.tokens.c.id)).mappings()]

    def revoke_token(self, key_id: str, when: int) -> bool:
        """Mark a token revoked; False if there is none with that key id."""
        with self._writing() as conn:
            result = conn.execute(
                update(t.tokens).where(t.tokens.c.key_id == key_id, t.tokens.c.revoked.is_(None)).values(revoked=when)
            )
            return result.rowcount > 0

    # communities --------------------------------------------------------------------------------------
    def communities(self) -> list[Community]:
        """All communities with their membership history."""
        with self._reading() as conn:
            heads = conn.execute(select(t.communities).order_by(t.communities.c.name)).all()
            members = conn.execute(
                select(t.community_members).order_by(t.community_members.c.nation, t.community_members.c.since)
            ).all()
        spells: dict[str, list[Membership]] = {}
        for m in members:
            until = date.fromisoformat(m.until) if m.until else None
            spells.setdefault(m.community, []).append(Membership(m.nation, date.fromisoformat(m.since), until))
        return [Community(h.name, h.description, tuple(spells.get(h.name, ()))) for h in heads]

    def put_community(self, community: Community) -> None:
        """Create or replace a community and its memberships."""
        with self._writing() as conn:
            self._put_community(conn, community)
            gen = conn.execute(select(t.meta.c.value).where(t.meta.c.key == "communities_generation")).scalar_one()
            conn.execute(update(t.meta).where(t.meta.c.key == "communities_generation").values(value=str(int(gen) + 1)))

    def _put_community(self, conn: Connection, community: Community) -> None:
        conn.execute(delete(t.community_members).where(t.community_members.c.community == community.name))
        conn.execute(delete(t.communities).where(t.communities.c.name == community.name))
        conn.execute(insert(t.communities).values(name=community.name, description=community.description))
        if community.members:
            conn.execute(
                insert(t.community_members),
                [
                    {
                        "community": community.name,
                        "nation": m.nation,
                        "since": m.since.isoformat(),
                        "until": m.until.isoformat() if m.until else None,
                    }
                    for m in community.members
                ],
            )

    def policy_generation(self) -> tuple[int, int]:
        """(highest marking set id, communities generation)."""
        with self._reading() as conn:
            row = conn.execute(
                select(
                    select(func.coalesce(func.max(t.marking_sets.c.id), 0)).scalar_subquery(),
                    select(t.meta.c.value).where(t.meta.c.key == "communities_generation").scalar_subquery(),
                )
            ).one()
        return int(row[0]), int(row[1] or 0)

    # collections --------------------------------------------------------------------------------------
    def add_collection(self, record: CollectionRecord) -> None:
        """Create a collection."""
        with self._writing() as conn:
            conn.execute(insert(t.collections).values(**record.__dict__))

    def collections(self) -> list[CollectionRecord]:
        """All collections, sorted by id."""
        with self._reading() as conn:
            rows = conn.execute(select(t.collections).order_by(t.collections.c.id)).mappings()
            return [CollectionRecord(**r) for r in rows]

    def collection(self, collection_id: str) -> CollectionRecord | None:
        """One collection, or None."""
        with self._reading() as conn:
            row = conn.execute(select(t.collections).where(t.collections.c.id == collection_id)).mappings().first()
        return CollectionRecord(**row) if row else None

    # markings -----------------------------------------------------------------------------------------
    def marking_sets(self, after_id: int = 0) -> list[MarkingSet]:
        """Marking sets with an id above `after_id`, in id order."""
        with self._reading() as conn:
            rows = conn.execute(
                select(t.marking_sets).where(t.marking_sets.c.id > after_id).order_by(t.marking_sets.c.id)
            ).all()
        return [_marking_set(r) for r in rows]

    def marking_set_id(self, key: str, template: MarkingSet, limit: int | None = None) -> int | None:
        """The id of the marking set with this key, creating it from `template` if new; None (nothing made)
        when its originator already has `limit` sets."""
        ms = t.marking_sets
        query = select(ms.c.id).where(ms.c.key == key)
        with self._reading() as conn:
            found = conn.execute(query).scalar()
        if found is not None:
            return int(found)
        with self._writing() as conn:
            found = conn.execute(query).scalar()
            if found is not None:
                return int(found)
            if limit is not None:
                count = conn.execute(
                    select(func.count()).select_from(ms).where(ms.c.originator == template.originator)
                ).scalar_one()
                if count >= limit:
                    return None
            result = conn.execute(
                insert(ms).values(
                    key=key,
                    originator=template.originator,
                    rank=template.rank,
                    rel_to=None if template.rel_to is None else orjson.dumps(template.rel_to).decode(),
                    tlp=template.tlp,
                    public=template.public,
                )
            )
            return int(result.inserted_primary_key[0])  # type: ignore[index]

    def definitions(self, ids: Sequence[str]) -> list[Definition]:
        """Every nation's stored copy of the marking definitions among `ids`."""
        if not ids:
            return []
        d = t.definitions
        with self._reading() as conn:
            rows = conn.execute(
                select(d.c.id, d.c.originator, d.c.marking_set, d.c.body).where(d.c.id.in_(sorted(set(ids))))
            ).all()
        return [Definition(r.id, r.originator, r.marking_set, bytes(r.body)) for r in rows]

    # object versions ----------------------------------------------------------------------------------
    def append(
        self,
        collection_id: str,
        versions: Sequence[NewVersion],
        status: Callable[[Appended], StatusRow] | None = None,
        gate: Gate | None = None,
    ) -> Appended:
        """Store new versions (each in its publisher's copy) and their status in one transaction."""
        ids = list({v.stix_id for v in versions})
        o = t.objects
        with self._writing() as conn:
            held: dict[str, list[_Held]] = {}  # id -> its stored versions, in every collection
            # Every collection named, so the (collection, stix_id, ...) index serves the lookup.
            collections = list(conn.execute(select(t.collections.c.id)).scalars())
            for chunk in _chunks(ids, 500):
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
                ).where(o.c.collection.in_(collections), o.c.stix_id.in_(chunk))
                for row in conn.execute(query):
                    held.setdefault(row.stix_id, []).append(_Held(*tuple(row)))
            here = {
                (h.stix_id, h.originator, h.version): h
                for hs in held.values()
                for h in hs
                if h.collection == collection_id
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
            clock = _Clock.read(conn)
            stored: list[bool] = []
            rows: list[tuple[Any, ...]] = []
            superseded: list[tuple[str, str, int]] = []
            newly_shared: set[tuple[str, str]] = set()
            revocations: list[NewVersion] = []
            new_definitions: dict[tuple[str, str], bytes] = {}  # stored by this append, not yet readable
            for i, v in enumerate(versions):
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
                    why = gate(v, [h.holding() for h in others])
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
                )
                here[(v.stix_id, v.originator, v.version)] = new
                held.setdefault(v.stix_id, []).append(new)
                rows.append(
                    (
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
                        rank[copy],
                        shared,
                    )
                )
                if v.type == "marking-definition" and not defined:
                    new_definitions[copy] = v.body
                    conn.execute(
                        insert(t.definitions).values(
                            id=v.stix_id, originator=v.originator, marking_set=v.marking_set, body=v.body
                        )
                    )
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
                for chunk in _chunks(sorted({stix_id for stix_id, _ in newly_shared}), 500):
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
            added = [
                None if i in refused else getattr(here.get((v.stix_id, v.originator, v.version)), "date_added", None)
                for i, v in enumerate(versions)
            ]
            outcome = Appended(stored=stored, refused=refused, date_added=added)
            if status is not None:
                kept = status(outcome)
                conn.execute(
                    insert(t.statuses).values(id=kept.id, token_id=kept.token_id, created=kept.created, body=kept.body)
                )
        return outcome

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
        query = select(*_TOMBSTONE_COLUMNS).where(
            o.c.collection == collection_id,
            o.c.stix_id == v.stix_id,
            o.c.originator == v.originator,
            o.c.version < v.version,
        )
        found = conn.execute(query).all()
        if found:
            self._tombstone(conn, collection_id, found)

    def _ring(self, conn: Connection, collection_id: str) -> None:
        """Called inside a write transaction that added events; PostgreSQL rings other processes' doorbells."""

    def doorbell_url(self) -> str | None:
        """Where to LISTEN for other processes' writes (None: this back-end has no doorbell; poll)."""
        return None

    def head(self) -> int:
        """The last sequence handed out (objects and deletions)."""
        with self._reading() as conn:
            return int(conn.execute(select(t.clock.c.last_seq).where(t.clock.c.id == 1)).scalar_one())

    def events(
        self, collection_id: str, after_seq: int, limit: int, visible: frozenset[int] | None
    ) -> tuple[list[Event], int]:
        """Object versions and deletions after `after_seq` in sequence order (only `visible` sets if given),
        and the sequence up to which the answer is complete."""
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
        )
        with self._reading() as conn:
            # The head first: writers commit in sequence order, so everything up to it is visible below.
            head = int(conn.execute(select(t.clock.c.last_seq).where(t.clock.c.id == 1)).scalar_one())
            versions = versions.where(o.c.collection == collection_id, o.c.seq > after_seq, o.c.seq <= head)
            tombs = tombs.where(d.c.collection == collection_id, d.c.seq > after_seq, d.c.seq <= head)
            if visible is not None:
                versions = versions.where(o.c.marking_set.in_(sorted(visible)))
                tombs = tombs.where(d.c.marking_set.in_(sorted(visible)))
            rows = [Event(*r) for r in conn.execute(versions.order_by(o.c.seq).limit(limit))]
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
            for chunk in _chunks(sorted(set(ids)), 500):
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
            return max(_last_seq_at(conn, t.objects, date_added), _last_seq_at(conn, t.deletions, date_added))

    def _insert_versions(self, conn: Connection, rows: list[tuple[Any, ...]]) -> None:
        """Insert version rows (in INSERT_COLUMNS order); back-ends override with their fastest way."""
        conn.execute(insert(t.objects), [dict(zip(INSERT_COLUMNS, row, strict=True)) for row in rows])

    def read(self, query: VersionQuery) -> list[StoredVersion]:
        """Versions matching the query, in sequence order, at most `limit`."""
        if not query.visible and query.known_max_set is None:
            return []
        with self._reading() as conn:
            stmt, params = self._select(conn, query, _VERSION_COLUMNS)
            rows = conn.execute(stmt.order_by(t.objects.c.seq).limit(query.limit), params).all()
        return [StoredVersion(*r) for r in rows]

    def delete(self, query: VersionQuery) -> int:
        """Delete the versions the query matches (limit ignored); return how many."""
        if not query.visible:
            return 0
        with self._writing() as conn:
            stmt, params = self._select(conn, query, _TOMBSTONE_COLUMNS)
            found = conn.execute(stmt, params).all()
            if not found:
                return 0
            self._tombstone(conn, query.collection, found)
            self._ring(conn, query.collection)
        return len(found)

    def _tombstone(self, conn: Connection, collection_id: str, found: Sequence[Any]) -> None:
        """Delete these versions (rows of _TOMBSTONE_COLUMNS), each leaving a tombstone in the same sequence,
        which the live stream reports; fix the has_newer flags left behind.

        A tombstone keeps the version's shape and the skeleton of its required properties (no values), so the
        stream can tell whether a party was released the version; the deleted contents themselves are gone.
        """
        o = t.objects
        for chunk in _chunks([row.seq for row in found], 500):
            conn.execute(delete(o).where(o.c.seq.in_(chunk)))
        clock = _Clock.read(conn)
        tombstones = []
        for row in found:
            seq, date_added = clock.tick()
            skeleton = None
            if row.shape is not None:
                skeleton = orjson.dumps(redact.skeleton(orjson.loads(row.body)))
            tombstones.append(
                {
                    "seq": seq,
                    "collection": collection_id,
                    "stix_id": row.stix_id,
                    "type": row.type,
                    "version_text": row.version_text or "",
                    "marking_set": row.marking_set,
                    "date_added": date_added,
                    "originator": row.originator,
                    "copy_rank": row.copy_rank,
                    "shared": row.shared,
                    "shape": row.shape,
                    "skeleton": skeleton,
                }
            )
        conn.execute(insert(t.deletions), tombstones)
        clock.write(conn)
        n = t.objects.alias("n")
        newer = exists().where(
            n.c.collection == o.c.collection,
            n.c.stix_id == o.c.stix_id,
            n.c.originator == o.c.originator,
            n.c.version > o.c.version,
        )
        for chunk in _chunks(sorted({row.stix_id for row in found}), 500):
            same_object = (o.c.collection == collection_id, o.c.stix_id.in_(chunk))
            conn.execute(update(o).where(*same_object).values(has_newer=newer))

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
            after = max(after, _last_seq_at(conn, t.objects, query.added_after))
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

    # statuses -----------------------------------------------------------------------------------------
    def put_status(self, status_id: str, token_id: int, created: int, body: bytes) -> None:
        """Keep a status resource."""
        with self._writing() as conn:
            conn.execute(insert(t.statuses).values(id=status_id, token_id=token_id, created=created, body=body))

    def status(self, status_id: str) -> tuple[int, bytes] | None:
        """(token id, body) of a status resource, or None."""
        with self._reading() as conn:
            row = conn.execute(
                select(t.statuses.c.token_id, t.statuses.c.body).where(t.statuses.c.id == status_id)
            ).first()
        return (int(row[0]), bytes(row[1])) if row else None

    def purge_statuses(self, older_than: int) -> int:
        """Forget statuses created before `older_than`; return how many."""
        with self._writing() as conn:
            return conn.execute(delete(t.statuses).where(t.statuses.c.created < older_than)).rowcount

    # decision log -------------------------------------------------------------------------------------
    def append_decisions(self, records: Sequence[PendingDecision]) -> list[Decision]:
        """Chain and store decision records in one write transaction (the write lock keeps the chain linear)."""
        if not records:
            return []
        with self._writing() as conn:
            return audit.append_decisions(conn, records)

    def decisions(
        self,
        after_seq: int = 0,
        limit: int = 1000,
        *,
        nation: str | None = None,
        path: str | None = None,
        object_id: str | None = None,
        since: int | None = None,
        until: int | None = None,
        newest: bool = False,
    ) -> list[Decision]:
        """Decision records after `after_seq` matching the filters, in seq order (the last `limit` if `newest`)."""
        with self._reading() as conn:
            return audit.read_decisions(
                conn,
                after_seq=after_seq,
                limit=limit,
                nation=nation,
                path=path,
                object_id=object_id,
                since=since,
                until=until,
                newest=newest,
            )

    def decision_head(self) -> tuple[int, str]:
        """(seq, hash) of the last decision record; (0, 64 zeros) when there is none."""
        with self._reading() as conn:
            return audit.decision_head(conn)


def _last_seq_at(conn: Connection, table: Any, date_added: int) -> int:
    """The last sequence in `table` added at or before `date_added`: date_added grows with seq, so a time
    becomes a sequence bound with one index seek."""
    found = conn.execute(select(func.max(table.c.seq)).where(table.c.date_added <= date_added)).scalar()
    return int(found or 0)


class _Clock:
    """The next sequences and date_added values, read and written inside a write transaction."""

    def __init__(self, last_seq: int, last_date_added: int) -> None:
        self.seq = last_seq
        self.date_added = max(now_micros(), last_date_added + 1) - 1

    @classmethod
    def read(cls, conn: Connection) -> _Clock:
        row = conn.execute(select(t.clock.c.last_seq, t.clock.c.last_date_added).where(t.clock.c.id == 1)).one()
        return cls(int(row[0]), int(row[1]))

    def tick(self) -> tuple[int, int]:
        """The next (sequence, date_added): both unique and strictly increasing."""
        self.seq += 1
        self.date_added += 1
        return self.seq, self.date_added

    def write(self, conn: Connection) -> None:
        conn.execute(
            update(t.clock).where(t.clock.c.id == 1).values(last_seq=self.seq, last_date_added=self.date_added)
        )


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


def _marking_set(row: Any) -> MarkingSet:
    rel_to = None if row.rel_to is None else tuple(tuple(g) for g in orjson.loads(row.rel_to))
    return MarkingSet(row.id, row.originator, row.rank, rel_to, row.tlp, bool(row.public))


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
