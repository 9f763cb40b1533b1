"""Choose and open a back-end from a data directory or a database URL; SQLite files are kept private.

A SQLite node's folder and files hold every object and the decision log, so they are created 0700 and 0600
and a node whose folder or database files other local users may read or write is refused (PostgreSQL keeps
its own files: nothing to check).
"""

from __future__ import annotations

import os
import shlex
import stat
from pathlib import Path

from relto.domain.errors import ConfigurationError
from relto.store.base import Store

DB_FILE = "relto.db"
# SQLite's companions of a database file: the write-ahead log and its index, and a rollback journal.
COMPANIONS = ("-wal", "-shm", "-journal")
FOLDER_MODE = 0o700
FILE_MODE = 0o600
# Read or write permission for group or others.
_OPEN_BITS = 0o066


def open_store(*, data: Path | None = None, url: str | None = None) -> Store:
    """Open the node's store: `url` (sqlite:///… or postgresql://…) wins over the data directory."""
    if url:
        if url.startswith("sqlite:///"):
            from relto.store.sqlite import SQLiteStore

            path = sqlite_path(url)
            if path is not None:
                check_private(path)
                _create_private(path)
            return SQLiteStore(url.removeprefix("sqlite:///"))
        if url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
            from relto.store.postgres import PostgresStore

            return PostgresStore(url)
        raise ConfigurationError(
            f"unsupported database URL {url.split(':', 1)[0]}://…; use sqlite:///PATH or postgresql://USER@HOST/DB"
        )
    if data is None:
        raise ConfigurationError("say where the node lives: --data DIR (or RELTO_DATA), or --database URL")
    try:
        # mode applies to the last folder only: parents the operator asked for keep the usual permissions.
        data.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(f"cannot create the data directory {data}: {exc.strerror}") from None
    check_private(data / DB_FILE, folder=data)
    _create_private(data / DB_FILE)
    from relto.store.sqlite import SQLiteStore

    return SQLiteStore(data / DB_FILE)


def sqlite_path(url: str) -> Path | None:
    """The file of a sqlite:/// URL, or None for an in-memory database."""
    text = url.removeprefix("sqlite:///").split("?", 1)[0]
    return None if text in ("", ":memory:") else Path(text)


def node_files(database: Path, folder: Path | None = None) -> list[Path]:
    """The folder (if any), the database file and SQLite's companion files that exist now."""
    paths = [folder] if folder is not None else []
    paths += [database, *(database.with_name(database.name + suffix) for suffix in COMPANIONS)]
    return [p for p in paths if p.exists()]


def check_private(database: Path, *, folder: Path | None = None) -> None:
    """Refuse a node whose folder or database files group or others may read or write, saying how to fix it."""
    problems = [(p, p.stat().st_mode) for p in node_files(database, folder) if p.stat().st_mode & _OPEN_BITS]
    if not problems:
        return
    lines = [f"  {p} is {stat.filemode(mode)}: {_who(mode)}" for p, mode in problems]
    folders = [shlex.quote(str(p)) for p, mode in problems if stat.S_ISDIR(mode)]
    files = [shlex.quote(str(p)) for p, mode in problems if not stat.S_ISDIR(mode)]
    fixes = [f"chmod {m} {' '.join(ps)}" for m, ps in (("700", folders), ("600", files)) if ps]
    raise ConfigurationError(
        "the node's files are open to other users of this machine, and they hold every object and the "
        "decision log:\n"
        + "\n".join(lines)
        + "\nrelto opens the node only when its owner alone may use them; run: "
        + " && ".join(fixes)
    )


def tighten(database: Path, *, folder: Path | None = None) -> list[Path]:
    """Make the folder 0700 and the database files 0600 where they are more open; return what changed."""
    changed = []
    for p in node_files(database, folder):
        mode = p.stat().st_mode
        if mode & _OPEN_BITS:
            wanted = FOLDER_MODE if stat.S_ISDIR(mode) else FILE_MODE
            try:
                os.chmod(p, wanted)
            except OSError as exc:
                raise ConfigurationError(
                    f"{p} is {stat.filemode(mode)} and cannot be made private ({exc.strerror}): its owner must run "
                    f"chmod {wanted:o} {shlex.quote(str(p))}"
                ) from None
            changed.append(p)
    return changed


def _create_private(path: Path) -> None:
    """Create the database file 0600 before SQLite does (it would use 0644); its -wal and -shm copy that mode."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    except FileExistsError:
        pass
    except OSError as exc:
        raise ConfigurationError(f"cannot create the database file {path}: {exc.strerror}") from None


def _who(mode: int) -> str:
    """Who besides the owner may read or write: "group and others may read it; others may write it"."""
    said = []
    for verb, bits in (("read", (stat.S_IRGRP, stat.S_IROTH)), ("write", (stat.S_IWGRP, stat.S_IWOTH))):
        whom = [name for name, bit in zip(("group", "others"), bits, strict=True) if mode & bit]
        if whom:
            said.append(f"{' and '.join(whom)} may {verb} it")
    return "; ".join(said)
