"""The PostgreSQL back-end: SQLStore on psycopg 3, for hubs running several server processes."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, create_engine, text

from relto.store.base import Doorbell
from relto.store.sql import SQLStore
from relto.store.sqlcore import INSERT_COLUMNS

log = logging.getLogger("relto.store")

# Every write transaction takes this transaction-scoped advisory lock first. Writers (in any process) are
# thereby serialised: sequences are handed out and committed in the same order, so a reader that sees
# sequence N has already been able to see every sequence below N. See docs/deployment.md.
WRITE_LOCK_KEY = 0x72656C746F  # "relto"
# The NOTIFY channel on which committed writes ring the live stream's doorbell (payload: collection id).
CHANNEL = "relto_events"


def engine_url(url: str) -> str:
    """Use the psycopg 3 driver for postgresql:// and postgres:// URLs."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


_COPY_OBJECTS = f"COPY objects ({', '.join(INSERT_COLUMNS)}) FROM STDIN"
# ANALYZE the objects table once this many versions were appended since the last (or a tenth of the table, if
# more): the planner's estimates then follow a bulk load at once, not at autovacuum's next round.
ANALYZE_AFTER_ROWS = 20_000


class PostgresStore(SQLStore):
    """SQLStore on PostgreSQL."""

    def __init__(self, url: str, *, pool_size: int = 8) -> None:
        self._url = engine_url(url).replace("postgresql+psycopg://", "postgresql://", 1)
        self._appended = 0  # versions this process appended since it last analysed (or started)
        self._analysed_rows = 0.0  # the table's row estimate after that ANALYZE
        self._analysing: threading.Thread | None = None
        super().__init__(create_engine(engine_url(url), pool_size=pool_size, max_overflow=8, pool_pre_ping=True))

    @contextmanager
    def _writing(self, durable: bool = True) -> Iterator[Connection]:
        with self._write_lock, self._write_engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": WRITE_LOCK_KEY})
            if not durable:
                # A later synchronous commit flushes the WAL up to its own record, and so past this one.
                conn.execute(text("SET LOCAL synchronous_commit TO OFF"))
            yield conn
        if self._appended >= max(ANALYZE_AFTER_ROWS, self._analysed_rows / 10):
            self._analyse_soon()

    def _insert_versions(self, conn: Connection, rows: list[tuple[Any, ...]]) -> None:
        # COPY: one stream of rows, several times faster than INSERTs, even pipelined.
        raw = conn.connection.driver_connection  # psycopg's own Connection, inside SQLAlchemy's transaction
        assert raw is not None
        with raw.cursor() as cursor, cursor.copy(_COPY_OBJECTS) as copy:
            for row in rows:
                copy.write_row(row)
        self._appended += len(rows)

    def _analyse_soon(self) -> None:
        """ANALYZE the objects table in the background (one at a time), so reads after a bulk append are
        planned on the table as it is now."""
        with self._write_lock:  # held only to start at most one
            if self._analysing is not None and self._analysing.is_alive():
                return
            self._appended = 0
            self._analysing = threading.Thread(target=self._analyse, name="relto-analyze", daemon=True)
            self._analysing.start()

    def _analyse(self) -> None:
        try:
            with self.engine.begin() as conn:
                conn.execute(text("ANALYZE objects"))
                estimate = conn.execute(text("SELECT reltuples FROM pg_class WHERE relname = 'objects'")).scalar()
            self._analysed_rows = float(estimate or 0)
        except Exception as exc:  # the planner's estimates are an optimisation: autovacuum catches up anyway
            log.warning("could not ANALYZE the objects table: %s", exc)

    def _ring(self, conn: Connection, collection_id: str) -> None:
        # Delivered to every listening process when (and only if) this transaction commits.
        conn.execute(text("SELECT pg_notify(:channel, :collection)"), {"channel": CHANNEL, "collection": collection_id})

    def doorbell(self) -> Doorbell | None:
        """LISTEN on CHANNEL, at the URL in psycopg's own form."""
        return Doorbell(self._url, CHANNEL)
