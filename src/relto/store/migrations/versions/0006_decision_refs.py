"""The decision log stores references, not copies (docs/audit.md): format-2 records keep the packed sequences
of the versions they released and the digest of what those meant; a deletion keeps the sequence its version
had, so references to deleted versions still resolve; signed checkpoints close archived records.

Records already stored stay as they are (format 1) and keep verifying.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

big = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("decisions") as batch:
        batch.add_column(sa.Column("format", sa.Integer, nullable=False, server_default="1"))
        batch.add_column(sa.Column("refs", sa.LargeBinary, nullable=True))
        batch.add_column(sa.Column("digest", sa.String(64), nullable=True))
    with op.batch_alter_table("deletions") as batch:
        batch.add_column(sa.Column("version_seq", big, nullable=True))
    op.create_index("ix_deletions_version_seq", "deletions", ["version_seq"])
    op.create_table(
        "checkpoints",
        sa.Column("seq", big, primary_key=True, autoincrement=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("at", big, nullable=False),
        sa.Column("count", big, nullable=False),
        sa.Column("node", sa.String(36), nullable=False),
        sa.Column("public_key", sa.String(64), nullable=False),
        sa.Column("signature", sa.String(128), nullable=False),
    )


def downgrade() -> None:
    raise NotImplementedError("relto migrations only go forward; restore a backup to go back")
