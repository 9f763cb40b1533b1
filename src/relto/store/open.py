"""Choose and open a back-end from a data directory or a database URL."""

from __future__ import annotations

from pathlib import Path

from relto.domain.errors import ConfigurationError
from relto.store.base import Store

DB_FILE = "relto.db"


def open_store(*, data: Path | None = None, url: str | None = None) -> Store:
    """Open the node's store: `url` (sqlite:///… or postgresql://…) wins over the data directory."""
    if url:
        if url.startswith("sqlite:///"):
            from relto.store.sqlite import SQLiteStore

            return SQLiteStore(url.removeprefix("sqlite:///"))
        if url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
            from relto.store.postgres import PostgresStore

            return PostgresStore(url)
        raise ConfigurationError(
            f"unsupported database URL {url.split(':', 1)[0]}://…; use sqlite:///PATH or postgresql://USER@HOST/DB"
        )
    if data is None:
        raise ConfigurationError("say where the node lives: --data DIR (or RELTO_DATA), or --database URL")
    data.mkdir(parents=True, exist_ok=True)
    from relto.store.sqlite import SQLiteStore

    return SQLiteStore(data / DB_FILE)
