"""Versions remember what a release may trim (field marking sets and references, docs/tearlines.md) and
whether they revoke their object.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("objects", sa.Column("shape", sa.LargeBinary, nullable=True))
    op.add_column("objects", sa.Column("revoked", sa.Boolean, nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("objects") as batch:
        batch.drop_column("revoked")
        batch.drop_column("shape")
