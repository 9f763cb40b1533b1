"""SQLStore: the storage interface on SQLAlchemy Core, shared by the SQLite and PostgreSQL back-ends."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
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
    Event,
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

    def marking_set_id(self, key: str, template: MarkingSet) -> int:
        """The id of the marking set with this key, creating it from `template` if new."""
        query = select(t.marking_sets.c.id).where(t.marking_sets.c.key == key)
        with self._reading() as conn:
            found = conn.execute(query).scalar()
        if found is not None:
            return int(found)
        with self._writing() as conn:
            found = conn.execute(query).scalar()
            if found is not None:
                return int(found)
            result = conn.execute(
                insert(t.marking_sets).values(
                    key=key,
                    originator=template.originator,
                    rank=template.rank,
                    rel_to=None if template.rel_to is None else orjson.dumps(template.rel_to).decode(),
                    tlp=template.tlp,
                    public=template.public,
                )
            )
            return int(result.inserted_primary_key[0])  # type: ignore[index]

    def marking_definitions(self, ids: Sequence[str]) -> dict[str, bytes]:
        """The known marking-definition objects among `ids`."""
        if not ids:
            return {}
        with self._reading() as conn:
            rows = conn.execute(
                select(t.marking_definitions.c.id, t.marking_definitions.c.body).where(
                    t.marking_definitions.c.id.in_(list(ids))
                )
            ).all()
        return {r.id: bytes(r.body) for r in rows}

    # object versions ----------------------------------------------------------------------------------
    def append(
        self,
        collection_id: str,
        versions: Sequence[NewVersion],
        status: Callable[[Appended], StatusRow] | None = None,
        revoker: str | None = None,
    ) -> Appended:
        """Store new versions and their status in one transaction; existing (id, version) pairs are kept."""
        ids = list({v.stix_id for v in versions})
        o, ms = t.objects, t.marking_sets
        with self._writing() as conn:
            existing: set[tuple[str, int]] = set()
            versions_of: dict[str, list[int]] = {}
            revoked_at: dict[str, int] = {}  # id -> its oldest revoking version
            authors: dict[str, set[str]] = {}  # id -> the nations that published its stored versions
            added_at: dict[tuple[str, int], int] = {}  # (id, version) -> its date_added, stored or storing
            for chunk in _chunks(ids, 500):
                for stix_id, version, revoked, originator, date_added in conn.execute(
                    select(o.c.stix_id, o.c.version, o.c.revoked, ms.c.originator, o.c.date_added)
                    .join(ms, ms.c.id == o.c.marking_set, isouter=True)
                    .where(o.c.collection == collection_id, o.c.stix_id.in_(chunk))
                ):
                    existing.add((stix_id, version))
                    added_at[(stix_id, version)] = date_added
                    authors.setdefault(stix_id, set()).add(originator or "")
                    if revoked:
                        revoked_at[stix_id] = min(version, revoked_at.get(stix_id, version))
            for stix_id, version in existing:
                versions_of.setdefault(stix_id, []).append(version)
            superseded: list[tuple[str, int]] = []
            revocations: list[NewVersion] = []
            refused: dict[int, str] = {}
            clock = _Clock.read(conn)
            stored: list[bool] = []
            rows: list[tuple[Any, ...]] = []
            for i, v in enumerate(versions):
                key = (v.stix_id, v.version)
                if key in existing:
                    stored.append(False)
                    continue
                if v.stix_id in revoked_at:
                    # The object is revoked: older versions are gone for good, and nothing follows a revocation.
                    stored.append(False)
                    refused[i] = "not stored: this object is revoked (a stored version says so), and stays so"
                    continue
                if v.revoked and revoker is not None and authors.get(v.stix_id, {revoker}) != {revoker}:
                    stored.append(False)
                    refused[i] = "not stored: only an admin or the nation that published the object may revoke it"
                    continue
                if v.revoked:
                    revocations.append(v)
                    revoked_at[v.stix_id] = min(v.version, revoked_at.get(v.stix_id, v.version))
                existing.add(key)
                stored.append(True)
                seq, date_added = clock.tick()
                added_at[key] = date_added
                others = versions_of.setdefault(v.stix_id, [])
                if others and min(others) < v.version:
                    superseded.append((v.stix_id, v.version))
                has_newer = bool(others) and max(others) > v.version
                others.append(v.version)
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
                    )
                )
                if v.type == "marking-definition":
                    self._register_marking_definition(conn, v)
            if rows:
                self._insert_versions(conn, rows)
                for stix_id, version in superseded:
                    conn.execute(
                        update(t.objects)
                        .where(
                            t.objects.c.collection == collection_id,
                            t.objects.c.stix_id == stix_id,
                            t.objects.c.version < version,
                        )
                        .values(has_newer=True)
                    )
                clock.write(conn)
                for v in revocations:
                    self._revoke_older(conn, collection_id, v, revoker)
                self._ring(conn, collection_id)
            added = [added_at.get((v.stix_id, v.version)) for v in versions]
            outcome = Appended(stored=stored, refused=refused, date_added=added)
            if status is not None:
                row = status(outcome)
                conn.execute(
                    insert(t.statuses).values(id=row.id, token_id=row.token_id, created=row.created, body=row.body)
                )
        return outcome

    def _revoke_older(self, conn: Connection, collection_id: str, v: NewVersion, revoker: str | None) -> None:
        """Delete, leaving tombstones, the versions older than a revocation that `revoker` may delete."""
        o, ms = t.objects, t.marking_sets
        query = select(o.c.seq, o.c.stix_id, o.c.type, o.c.version_text, o.c.marking_set).where(
            o.c.collection == collection_id, o.c.stix_id == v.stix_id, o.c.version < v.version
        )
        if revoker is not None:
            query = query.where(o.c.marking_set.in_(select(ms.c.id).where(ms.c.originator == revoker)))
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
            o.c.seq, o.c.stix_id, o.c.type, o.c.version_text, o.c.date_added, o.c.marking_set, o.c.body, o.c.shape
        )
        tombs = select(d.c.seq, d.c.stix_id, d.c.type, d.c.version_text, d.c.date_added, d.c.marking_set)
        with self._reading() as conn:
            # The head first: writers commit in sequence order, so everything up to it is visible below.
            head = int(conn.execute(select(t.clock.c.last_seq).where(t.clock.c.id == 1)).scalar_one())
            versions = versions.where(o.c.collection == collection_id, o.c.seq > after_seq, o.c.seq <= head)
            tombs = tombs.where(d.c.collection == collection_id, d.c.seq > after_seq, d.c.seq <= head)
            if visible is not None:
                versions = versions.where(o.c.marking_set.in_(sorted(visible)))
                tombs = tombs.where(d.c.marking_set.in_(sorted(visible)))
            rows = [Event(*r) for r in conn.execute(versions.order_by(o.c.seq).limit(limit))]
            rows += [Event(*r, None, None) for r in conn.execute(tombs.order_by(d.c.seq).limit(limit))]
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
                stmt = select(o.c.stix_id, o.c.type, o.c.version, o.c.marking_set, o.c.shape, o.c.collection).where(
                    o.c.collection.in_(collections), o.c.stix_id.in_(chunk)
                )
                out.extend(Holding(*r) for r in conn.execute(stmt))
        return out

    def seq_at(self, date_added: int) -> int:
        """The last sequence (object or deletion) added at or before `date_added`."""
        with self._reading() as conn:
            return max(_last_seq_at(conn, t.objects, date_added), _last_seq_at(conn, t.deletions, date_added))

    def _insert_versions(self, conn: Connection, rows: list[tuple[Any, ...]]) -> None:
        """Insert version rows (in INSERT_COLUMNS order); back-ends override with their fastest way."""
        conn.execute(insert(t.objects), [dict(zip(INSERT_COLUMNS, row, strict=True)) for row in rows])

    def _register_marking_definition(self, conn: Connection, v: NewVersion) -> None:
        known = conn.execute(select(t.marking_definitions.c.id).where(t.marking_definitions.c.id == v.stix_id)).first()
        if known is None:
            conn.execute(insert(t.marking_definitions).values(id=v.stix_id, body=v.body))

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
        o = t.objects
        columns = (o.c.seq, o.c.stix_id, o.c.type, o.c.version, o.c.version_text, o.c.marking_set)
        with self._writing() as conn:
            stmt, params = self._select(conn, query, columns)
            found = conn.execute(stmt, params).all()
            if not found:
                return 0
            self._tombstone(conn, query.collection, found)
            self._ring(conn, query.collection)
        return len(found)

    def _tombstone(self, conn: Connection, collection_id: str, found: Sequence[Any]) -> None:
        """Delete these versions (rows with seq, stix_id, type, version_text, marking_set), each leaving a
        tombstone in the same sequence, which the live stream reports; fix the has_newer flags left behind."""
        o = t.objects
        for chunk in _chunks([row.seq for row in found], 500):
            conn.execute(delete(o).where(o.c.seq.in_(chunk)))
        clock = _Clock.read(conn)
        tombstones = []
        for row in found:
            seq, date_added = clock.tick()
            tombstones.append(
                {
                    "seq": seq,
                    "collection": collection_id,
                    "stix_id": row.stix_id,
                    "type": row.type,
                    "version_text": row.version_text or "",
                    "marking_set": row.marking_set,
                    "date_added": date_added,
                }
            )
        conn.execute(insert(t.deletions), tombstones)
        clock.write(conn)
        n = t.objects.alias("n")
        newer = exists().where(n.c.collection == o.c.collection, n.c.stix_id == o.c.stix_id, n.c.version > o.c.version)
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
        cond = [n.c.collection == o.c.collection, n.c.stix_id == o.c.stix_id, other, visible_in(n, False)]
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
