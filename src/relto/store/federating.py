"""The peers a node follows, and the one transaction that applies what a peer sent (docs/federation.md)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, insert, select, update

from relto.domain.errors import ConfigurationError
from relto.store import schema as t
from relto.store.appending import Appending
from relto.store.base import Appended, PeerProgress, PeerRecord, Received
from relto.store.sqlcore import TOMBSTONE_COLUMNS


class Federating(Appending):
    """SQLStore's peers and receive path."""

    def peers(self) -> list[PeerRecord]:
        """Every peer, by name."""
        with self._reading() as conn:
            rows = conn.execute(select(t.peers).order_by(t.peers.c.name)).mappings().all()
        return [PeerRecord(**r) for r in rows]

    def peer(self, name: str) -> PeerRecord | None:
        """One peer, or None."""
        with self._reading() as conn:
            row = conn.execute(select(t.peers).where(t.peers.c.name == name)).mappings().first()
        return PeerRecord(**row) if row else None

    def add_peer(self, record: PeerRecord) -> None:
        """Follow a new peer; ConfigurationError if the name is taken."""
        with self._writing() as conn:
            if conn.execute(select(t.peers.c.name).where(t.peers.c.name == record.name)).first() is not None:
                raise ConfigurationError(f"there is already a peer named {record.name!r}: remove it first")
            conn.execute(insert(t.peers).values(**record.__dict__))

    def remove_peer(self, name: str) -> bool:
        """Stop following a peer; False if there is none by that name."""
        with self._writing() as conn:
            return conn.execute(delete(t.peers).where(t.peers.c.name == name)).rowcount > 0

    def update_peer(self, name: str, **fields: object) -> None:
        """Change a peer's stored fields."""
        with self._writing() as conn:
            conn.execute(update(t.peers).where(t.peers.c.name == name).values(**fields))

    def receive(self, peer: str, steps: Sequence[Received], progress: PeerProgress) -> list[Appended]:
        """Apply a peer's batch and its cursor in one transaction (see FederationStore.receive)."""
        outcomes: list[Appended] = []
        o = t.objects
        with self._writing() as conn:
            row = conn.execute(select(t.peers.c.received, t.peers.c.refused).where(t.peers.c.name == peer)).first()
            if row is None:
                raise ConfigurationError(f"no peer named {peer!r}: it was removed")
            for step in steps:
                if step.versions:
                    outcomes.append(self._append_in(conn, step.collection, step.versions, None))
                for stix_id, originator, version_text in step.deletions:
                    version = o.c.version_text.is_(None) if not version_text else o.c.version_text == version_text
                    query = select(*TOMBSTONE_COLUMNS).where(
                        o.c.collection == step.collection,
                        o.c.stix_id == stix_id,
                        o.c.originator == originator,
                        version,
                    )
                    found = conn.execute(query).all()
                    if found:
                        self._tombstone(conn, step.collection, found, originator)
                        self._ring(conn, step.collection)
            stored = sum(sum(1 for new in a.stored if new) for a in outcomes)
            refused = progress.refused + sum(len(a.refused) for a in outcomes)
            last_refusal = next((why for a in outcomes for why in a.refused.values()), progress.last_refusal)
            values: dict[str, object] = {
                "cursor": progress.cursor,
                "received": int(row.received) + stored,
                "refused": int(row.refused) + refused,
                "last_ok_at": progress.at,
                "last_error": "",
                "behind_since": progress.behind_since,
            }
            if last_refusal is not None:
                values["last_refusal"] = last_refusal
            if progress.remote_node is not None:
                values["remote_node"] = progress.remote_node
            if progress.remote_nation is not None:
                values["remote_nation"] = progress.remote_nation
            conn.execute(update(t.peers).where(t.peers.c.name == peer).values(**values))
        return outcomes
