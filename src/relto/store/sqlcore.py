"""What every part of SQLStore shares: the engine and its transactions, the clock, and deletion's tombstones.

SQLStore (relto.store.sql) is assembled from parts by role: appending (relto.store.appending), reading
and the event log (relto.store.reading), and the small tables (relto.store.sql itself).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import orjson
from sqlalchemy import (
    Connection,
    Engine,
    delete,
    exists,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.sql import Select

from relto.domain import redact
from relto.domain.timestamps import now_micros
from relto.store import schema as t
from relto.store.base import Doorbell
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
    "path",
)
# What a deletion needs of each version it removes (see _tombstone).
TOMBSTONE_COLUMNS = (
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


class SQLBase:
    """The engine, its read and write transactions, and the hooks back-ends override."""

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
    def _writing(self, durable: bool = True) -> Iterator[Connection]:
        """A write transaction; back-ends override to take their database-wide write lock.

        `durable=False`: the commit need not wait for the disk (no fsync of its own). Only for writes that
        later durable writes depend on and that are harmless to lose alone (a new marking set: the durable
        commit of the versions that use it writes the log up to and past it, since the log is sequential).
        """
        with self._write_lock, self._write_engine.begin() as conn:
            yield conn

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    def _ring(self, conn: Connection, collection_id: str) -> None:
        """Called inside a write transaction that added events; PostgreSQL rings other processes' doorbells."""

    def doorbell(self) -> Doorbell | None:
        """Where to LISTEN for other processes' writes (None: this back-end has no doorbell; poll)."""
        return None

    def _insert_versions(self, conn: Connection, rows: list[tuple[Any, ...]]) -> None:
        """Insert version rows (in INSERT_COLUMNS order); back-ends override with their fastest way."""
        conn.execute(insert(t.objects), [dict(zip(INSERT_COLUMNS, row, strict=True)) for row in rows])

    def _tombstone(self, conn: Connection, collection_id: str, found: Sequence[Any], owner: str | None = None) -> None:
        """Delete these versions (rows of TOMBSTONE_COLUMNS), each leaving a tombstone in the same sequence,
        which the live stream reports; fix the has_newer flags left behind.

        A tombstone keeps the version's shape and the skeleton of its required properties (no values), so the
        stream can tell whether a party was released the version; the deleted contents themselves are gone.
        """
        o = t.objects
        for chunk in chunks([row.seq for row in found], 500):
            conn.execute(delete(o).where(o.c.seq.in_(chunk)))
        clock = Clock.read(conn)
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
                    "by_owner": owner is not None and row.originator == owner,
                    "version_seq": row.seq,  # what decision records that released it refer to
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
        for chunk in chunks(sorted({row.stix_id for row in found}), 500):
            same_object = (o.c.collection == collection_id, o.c.stix_id.in_(chunk))
            conn.execute(update(o).where(*same_object).values(has_newer=newer))


def last_seq_at(conn: Connection, table: Any, date_added: int) -> int:
    """The last sequence in `table` added at or before `date_added`: date_added grows with seq, so a time
    becomes a sequence bound with one index seek."""
    found = conn.execute(select(func.max(table.c.seq)).where(table.c.date_added <= date_added)).scalar()
    return int(found or 0)


class Clock:
    """The next sequences and date_added values, read and written inside a write transaction."""

    def __init__(self, last_seq: int, last_date_added: int) -> None:
        self.seq = last_seq
        self.date_added = max(now_micros(), last_date_added + 1) - 1

    @classmethod
    def read(cls, conn: Connection) -> Clock:
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


def chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
