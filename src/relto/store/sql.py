"""SQLStore: the storage interface on SQLAlchemy Core, shared by the SQLite and PostgreSQL back-ends."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date
from typing import Any

import orjson
from sqlalchemy import (
    Connection,
    delete,
    func,
    insert,
    select,
    update,
)

from relto.domain.audit import Decision, PendingDecision
from relto.domain.checkpoints import Checkpoint
from relto.domain.communities import Community, Membership
from relto.domain.errors import ConfigurationError
from relto.domain.markings import MarkingSet
from relto.store import audit
from relto.store import schema as t
from relto.store.base import (
    CollectionRecord,
    Definition,
    NodeInfo,
    TokenRecord,
)
from relto.store.federating import Federating
from relto.store.migrate import current_revision
from relto.store.reading import _VERSION_COLUMNS as _VERSION_COLUMNS  # bench/scale.py
from relto.store.reading import Reading
from relto.store.reading import _build_select as _build_select  # bench/scale.py


class SQLStore(Federating, Reading):
    """The Store interface over an SQLAlchemy engine. Back-ends subclass it for their write transaction."""

    # node ---------------------------------------------------------------------------------------------
    def initialised(self) -> bool:
        """Whether `relto init` has run on this database."""
        with self._reading() as conn:
            return conn.execute(select(t.meta.c.value).where(t.meta.c.key == "nation")).first() is not None

    def schema_revision(self) -> str | None:
        """The schema migration the database is at (None: not migrated)."""
        with self._reading() as conn:
            return current_revision(conn)

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
        # Not durable on its own: a set matters once a version uses it, and that version's durable commit
        # comes after, with this one before it in the log; a set lost alone was used by nothing.
        with self._writing(durable=False) as conn:
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
        token_id: int | None = None,
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
                token_id=token_id,
            )

    def decision_head(self) -> tuple[int, str]:
        """(seq, hash) of the last decision record, stored or archived; (0, 64 zeros) when there is none."""
        with self._reading() as conn:
            return audit.decision_head(conn)

    def checkpoints(self) -> list[Checkpoint]:
        """The decision log's signed checkpoints, oldest first."""
        with self._reading() as conn:
            return audit.read_checkpoints(conn)

    def last_decision_before(self, at: int) -> int:
        """The last seq of the longest run of stored records, from the first, all decided before `at`."""
        with self._reading() as conn:
            return audit.last_seq_before(conn, at)

    def close_archived(self, checkpoint: Checkpoint, after_seq: int) -> int:
        """Store the checkpoint and delete the records it closes, in one write transaction; return how many."""
        with self._writing() as conn:
            return audit.close_archived(conn, checkpoint, after_seq)


def _marking_set(row: Any) -> MarkingSet:
    rel_to = None if row.rel_to is None else tuple(tuple(g) for g in orjson.loads(row.rel_to))
    return MarkingSet(row.id, row.originator, row.rank, rel_to, row.tlp, bool(row.public))
