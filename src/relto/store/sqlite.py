"""The SQLite back-end: one file, WAL, one writer at a time (BEGIN IMMEDIATE orders processes)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event

from relto.store.sql import SQLStore
from relto.store.sqlcore import INSERT_COLUMNS

MMAP_BYTES = 1 << 30  # how much of the database file reads map (1 GiB of address space, not of memory)


def sqlite_engine(path: Path | str, *, synchronous: str = "FULL") -> Engine:
    """An engine on a WAL-mode SQLite file whose write transactions take the write lock at BEGIN."""
    engine = create_engine(f"sqlite:///{path}", pool_size=8, max_overflow=8)

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's own handling is too lazy).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        # Reads map the file instead of copying each page through a read() call: a reader who sees a few
        # marking sets touches one page per version it receives (docs/benchmarks.md, the 10% reader). The
        # mapped pages are the operating system's file cache, shared by every connection and process.
        cursor.execute(f"PRAGMA mmap_size={MMAP_BYTES}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        # IMMEDIATE: a writer holds the database lock from its first statement, so two processes never
        # interleave clock reads and inserts, and sequences commit in order.
        write = conn.get_execution_options().get("relto_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


class SQLiteStore(SQLStore):
    """SQLStore on a SQLite file."""

    def __init__(self, path: Path | str, *, synchronous: str = "FULL") -> None:
        self._synchronous = synchronous
        super().__init__(sqlite_engine(path, synchronous=synchronous))

    @contextmanager
    def _writing(self, durable: bool = True) -> Iterator[Connection]:
        if durable:
            with super()._writing() as conn:
                yield conn
            return
        # In WAL mode, synchronous=NORMAL commits without an fsync; the next FULL commit syncs the WAL file,
        # and with it this transaction's frames, which come before its own. The setting is the connection's
        # and cannot change inside a transaction: set before BEGIN, restored after the end.
        with self._write_lock, self._write_engine.connect() as conn:
            raw = conn.connection.dbapi_connection
            assert raw is not None
            raw.execute("PRAGMA synchronous=NORMAL")
            try:
                with conn.begin():
                    yield conn
            finally:
                raw.execute(f"PRAGMA synchronous={self._synchronous}")

    _insert_sql = f"INSERT INTO objects ({', '.join(INSERT_COLUMNS)}) VALUES ({', '.join('?' * len(INSERT_COLUMNS))})"

    def _insert_versions(self, conn: Connection, rows: list[tuple[Any, ...]]) -> None:
        # The driver's executemany on plain tuples: SQLAlchemy's per-row processing would double the cost.
        conn.exec_driver_sql(self._insert_sql, rows)
