"""The decision log: who was released or wrote which object versions, when and how, chained by hash.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

big = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "decisions",
        sa.Column("seq", big, primary_key=True, autoincrement=False),
        sa.Column("at", big, nullable=False),
        sa.Column("token_id", sa.Integer, nullable=False),
        sa.Column("nation", sa.String(3), nullable=False),
        sa.Column("path", sa.String(32), nullable=False),
        sa.Column("collection", sa.String(36), nullable=False),
        sa.Column("items", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_decisions_at", "decisions", ["at"])
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        # A TAXII page's items are ~80 KB of JSON: lz4 compresses them as well as the default (pglz) for a
        # fraction of the server's CPU, which readers share (bench/audit.py). Where the server has it: 14+,
        # built with lz4.
        has_lz4 = bind.exec_driver_sql(
            "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"
        ).scalar()
        if has_lz4:
            op.execute("ALTER TABLE decisions ALTER COLUMN items SET COMPRESSION lz4")


def downgrade() -> None:
    op.drop_table("decisions")
