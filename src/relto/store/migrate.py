"""Bring a database to the newest schema with Alembic, on the connection we already hold."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

_HERE = Path(__file__).parent / "migrations"


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_HERE))
    return cfg


def upgrade(connection: Connection) -> None:
    """Run every migration not yet applied."""
    cfg = _config()
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, "head")


def head_revision() -> str | None:
    """The newest migration this code ships (what a database at head is stamped with)."""
    head: str | None = ScriptDirectory.from_config(_config()).get_current_head()
    return head


def current_revision(connection: Connection) -> str | None:
    """The migration a database is stamped with (None: none applied)."""
    revision: str | None = MigrationContext.configure(connection).get_current_revision()
    return revision
