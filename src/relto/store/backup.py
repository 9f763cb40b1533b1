"""Back up a node and restore it: SQLite through its online backup API, PostgreSQL through pg_dump/pg_restore.

A backup holds every object and the decision log, so it is created 0600 like the node's own files. Restore
writes only into an empty target unless forced, and leaves the schema where the backup had it: the caller
opens the store afterwards, which migrates it to head.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, MetaData, create_engine, inspect, make_url, text

from relto.domain.errors import ConfigurationError, ReltoError
from relto.store.migrate import current_revision
from relto.store.open import COMPANIONS, DB_FILE, FILE_MODE, FOLDER_MODE, sqlite_path
from relto.store.postgres import engine_url

EPOCH_SECRET = "epoch"  # the node's epoch (relto.node.federation.EPOCH_SECRET), new after a restore

SQLITE_MAGIC = b"SQLite format 3\x00"
PGDUMP_MAGIC = b"PGDMP"


@dataclass(frozen=True)
class Target:
    """Where a node lives: a SQLite file, or a PostgreSQL URL."""

    sqlite: Path | None = None
    url: str | None = None

    def __str__(self) -> str:
        if self.sqlite is not None:
            return str(self.sqlite)
        return make_url(engine_url(self.url or "")).set(drivername="postgresql").render_as_string(hide_password=True)

    @contextmanager
    def engine(self) -> Iterator[Engine]:
        """A plain engine (no migrations) on the target."""
        url = f"sqlite:///{self.sqlite}" if self.sqlite is not None else engine_url(self.url or "")
        engine = create_engine(url)
        try:
            yield engine
        finally:
            engine.dispose()


@dataclass(frozen=True)
class Inventory:
    """What a node database holds: its schema revision and how many rows of what matters."""

    revision: str | None
    node: bool  # a node was initialised here (a schema alone, as a fresh migrated database has, is not one)
    objects: int
    deletions: int
    decisions: int
    tokens: int

    def describe(self) -> str:
        """`1,234 object versions, 2 deletions, 56 decision records, 3 tokens`."""
        return (
            f"{self.objects:,} object versions, {self.deletions:,} deletions, {self.decisions:,} decision records, "
            f"{self.tokens:,} tokens"
        )


def locate(data: Path | None, url: str | None) -> Target:
    """The node named by --data or --database (the URL wins), without opening or creating anything."""
    if url:
        if url.startswith("sqlite:///"):
            path = sqlite_path(url)
            if path is None:
                raise ConfigurationError("an in-memory database has nothing to back up or restore")
            return Target(sqlite=path)
        if url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
            return Target(url=url)
        raise ConfigurationError("unsupported database URL: use sqlite:///PATH or postgresql://USER@HOST/DB")
    if data is None:
        raise ConfigurationError("say where the node lives: --data DIR (or RELTO_DATA), or --database URL")
    return Target(sqlite=data / DB_FILE)


def inventory(target: Target) -> Inventory | None:
    """What the target holds, or None when it holds no relto tables (missing or empty)."""
    if target.sqlite is not None and (not target.sqlite.exists() or target.sqlite.stat().st_size == 0):
        return None
    with target.engine() as engine, engine.connect() as conn:
        tables = set(inspect(conn).get_table_names())
        if not tables & {"alembic_version", "meta", "objects"}:
            return None

        def count(table: str) -> int:
            return int(conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one()) if table in tables else 0

        revision = current_revision(conn) if "alembic_version" in tables else None
        counts = (count(t) for t in ("objects", "deletions", "decisions", "tokens"))
        return Inventory(revision, count("meta") > 0, *counts)


def _create_private(path: Path, force: bool) -> None:
    """Create `path` 0600 (empty), refusing an existing file unless forced."""
    if path.is_dir():
        raise ReltoError(f"{path} is a folder: give the backup's file name, e.g. {path / 'relto-backup.db'}")
    if path.exists() and not force:
        raise ReltoError(f"{path} exists: choose another name, or add --force to overwrite it")
    path.unlink(missing_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    except OSError as exc:
        raise ReltoError(f"cannot create {path}: {exc.strerror}") from None


def backup(target: Target, dest: Path, *, force: bool = False) -> Inventory:
    """Write a consistent copy of the node into `dest` (0600) while it may be serving; return what it holds."""
    found = inventory(target)
    if found is None or not found.node:
        raise ReltoError(f"{target} holds no relto node: nothing to back up")
    pg_dump = _tool("pg_dump") if target.url is not None else ""
    _create_private(dest, force)
    try:
        if target.sqlite is not None:
            _sqlite_backup(target.sqlite, dest)
            copied = inventory(Target(sqlite=dest))
            assert copied is not None
            return copied
        _run(pg_dump, ["--format=custom", "--no-owner", "--file", str(dest)], target)
        return found
    except BaseException:
        dest.unlink(missing_ok=True)
        raise


def _sqlite_backup(source: Path, dest: Path) -> None:
    """SQLite's online backup: one consistent snapshot even while the node writes; `dest` made one plain file."""
    src = sqlite3.connect(source, timeout=30)
    try:
        out = sqlite3.connect(dest)
        try:
            src.backup(out)
            # The copy inherits WAL mode: make it a self-contained file (no -wal beside it when opened).
            out.execute("PRAGMA journal_mode=DELETE")
        finally:
            out.close()
    finally:
        src.close()


def restore(source: Path, target: Target, *, force: bool = False) -> Inventory | None:
    """Put the backup at `source` in place at `target`; return what the target held before (None if empty).

    Refuses a target holding a node unless forced. The schema stays at the backup's revision.
    """
    kind = _kind(source)
    wanted = "sqlite" if target.sqlite is not None else "postgres"
    if kind != wanted:
        raise ReltoError(
            f"{source} is a {'SQLite' if kind == 'sqlite' else 'pg_dump'} backup and the target is "
            f"{'SQLite' if wanted == 'sqlite' else 'PostgreSQL'}: restore it to the same back-end it came from"
        )
    held = inventory(target)
    if held is not None and held.node and not force:
        raise ReltoError(
            f"{target} already holds a node ({held.describe()}); restoring would replace it and lose them all. "
            "Restore into an empty data directory or database, or add --force"
        )
    if target.sqlite is not None:
        _sqlite_restore(source, target.sqlite)
    else:
        if held is not None:
            _drop_tables(target)
        _run(_tool("pg_restore"), ["--no-owner", "--exit-on-error", "--single-transaction", str(source)], target)
    _new_epoch(target)
    return held if held is not None and held.node else None


def _new_epoch(target: Target) -> None:
    """A restored node starts a new epoch: cursors its followers hold may point past what the backup holds (they
    were issued after it was taken), so the federation feed reads theirs again from the start (docs/operations.md;
    repeated versions are no-ops for them)."""
    with target.engine() as engine, engine.begin() as conn:
        conn.execute(text("DELETE FROM meta WHERE key = :key"), {"key": f"secret:{EPOCH_SECRET}"})


def _kind(source: Path) -> str:
    """'sqlite' or 'postgres' by the file's first bytes."""
    try:
        with open(source, "rb") as f:
            head = f.read(16)
    except OSError as exc:
        raise ReltoError(f"cannot read the backup {source}: {exc.strerror}") from None
    if head.startswith(SQLITE_MAGIC):
        return "sqlite"
    if head.startswith(PGDUMP_MAGIC):
        return "postgres"
    raise ReltoError(f"{source} is neither a SQLite backup nor a pg_dump -Fc archive (made by relto backup)")


def _sqlite_restore(source: Path, database: Path) -> None:
    """Copy the backup into place, 0600; the old database's journal files go first (they would corrupt it)."""
    folder = database.parent
    folder.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
    for suffix in ("", *COMPANIONS):
        database.with_name(database.name + suffix).unlink(missing_ok=True)
    partial = database.with_name(database.name + ".restoring")
    partial.unlink(missing_ok=True)
    _create_private(partial, force=False)
    with open(source, "rb") as src, open(partial, "wb") as out:
        shutil.copyfileobj(src, out)
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial, database)


def _drop_tables(target: Target) -> None:
    """Drop every table of the target (a forced restore over a node)."""
    with target.engine() as engine:
        found = MetaData()
        found.reflect(engine)
        found.drop_all(engine)


def _tool(name: str) -> str:
    """The path of a PostgreSQL client program, or a sentence saying how to get it."""
    found = shutil.which(name)
    if found is None:
        raise ReltoError(
            f"{name} is not installed (or not on PATH): install PostgreSQL's client programs, the same major "
            "version as the server (Debian/Ubuntu: apt install postgresql-client)"
        )
    return found


def _run(program: str, args: list[str], target: Target) -> None:
    """Run pg_dump or pg_restore against the target; the password travels in the environment, not argv."""
    url = make_url(engine_url(target.url or ""))
    env = dict(os.environ)
    if url.password is not None:
        env["PGPASSWORD"] = str(url.password)
    plain = url.set(drivername="postgresql", password=None).render_as_string(hide_password=False)
    connection = ["--dbname", plain]
    done = subprocess.run([program, *connection, *args], capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise ReltoError(f"{Path(program).name} failed: {done.stderr.strip() or f'exit status {done.returncode}'}")
