"""Bring a database to the newest schema with Alembic, on the connection we already hold."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection

_HERE = Path(__file__).parent / "migrations"


def upgrade(connection: Connection) -> None:
    """Run every migration not yet applied."""
    cfg = Config()
    cfg.set_main_option("script_location", str(_HERE))
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, "head")
