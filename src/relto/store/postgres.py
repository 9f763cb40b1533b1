"""The PostgreSQL back-end: SQLStore on psycopg 3, for hubs running several server processes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, create_engine, text

from relto.store.base import Doorbell
from relto.store.sql import SQLStore

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


class PostgresStore(SQLStore):
    """SQLStore on PostgreSQL."""

    def __init__(self, url: str, *, pool_size: int = 8) -> None:
        self._url = engine_url(url).replace("postgresql+psycopg://", "postgresql://", 1)
        super().__init__(create_engine(engine_url(url), pool_size=pool_size, max_overflow=8, pool_pre_ping=True))

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        with self._write_lock, self._write_engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": WRITE_LOCK_KEY})
            yield conn

    def _ring(self, conn: Connection, collection_id: str) -> None:
        # Delivered to every listening process when (and only if) this transaction commits.
        conn.execute(text("SELECT pg_notify(:channel, :collection)"), {"channel": CHANNEL, "collection": collection_id})

    def doorbell(self) -> Doorbell | None:
        """LISTEN on CHANNEL, at the URL in psycopg's own form."""
        return Doorbell(self._url, CHANNEL)
