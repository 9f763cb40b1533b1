"""Bring a database to the newest schema with Alembic, on the connection we already hold."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

_HERE = Path(__file__).parent / "migrations"


def upgrade(connection: Connection) -> None:
    """Run every migration not yet applied."""
    cfg = _config()
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, "head")


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_HERE))
    return cfg


def head_revision() -> str:
    """The newest schema revision this relto knows."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def known_revisions() -> set[str]:
    """Every schema revision this relto knows."""
    return {r.revision for r in ScriptDirectory.from_config(_config()).walk_revisions()}


def current_revision(connection: Connection) -> str | None:
    """The revision a database is at, or None when Alembic never ran there."""
    revision: str | None = MigrationContext.configure(connection).get_current_revision()
    return revision
