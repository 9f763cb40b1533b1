"""Federation (docs/federation.md): node tokens (a peer's nation, or the nations a hub relays for), the path
each received version travelled, whether a deletion was its owner's (only those travel), and the peers this
node follows with their durable cursors.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

big = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("tokens") as batch:
        batch.add_column(sa.Column("kind", sa.String(8), nullable=False, server_default=""))
        batch.add_column(sa.Column("relay_for", sa.Text, nullable=False, server_default=""))
    with op.batch_alter_table("objects") as batch:
        batch.add_column(sa.Column("path", sa.Text, nullable=True))
    with op.batch_alter_table("deletions") as batch:
        batch.add_column(sa.Column("by_owner", sa.Boolean, nullable=False, server_default=sa.false()))
    op.create_table(
        "peers",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("token", sa.Text, nullable=False),
        sa.Column("fingerprint", sa.String(95), nullable=False, server_default=""),
        sa.Column("certificate", sa.Text, nullable=False, server_default=""),
        sa.Column("speaks_for", sa.Text, nullable=False, server_default=""),
        sa.Column("remote_node", sa.String(36), nullable=False, server_default=""),
        sa.Column("remote_nation", sa.String(3), nullable=False, server_default=""),
        sa.Column("cursor", sa.Text, nullable=False, server_default=""),
        sa.Column("received", big, nullable=False, server_default="0"),
        sa.Column("refused", big, nullable=False, server_default="0"),
        sa.Column("last_refusal", sa.Text, nullable=False, server_default=""),
        sa.Column("last_error", sa.Text, nullable=False, server_default=""),
        sa.Column("last_error_at", big, nullable=True),
        sa.Column("last_ok_at", big, nullable=True),
        sa.Column("behind_since", big, nullable=True),
        sa.Column("created", big, nullable=False),
    )


def downgrade() -> None:
    raise NotImplementedError("relto migrations only go forward; restore a backup to go back")
