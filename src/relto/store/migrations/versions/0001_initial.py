"""The first schema: node meta, tokens, communities, collections, markings, object versions, statuses.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

big = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "meta", sa.Column("key", sa.String(64), primary_key=True), sa.Column("value", sa.Text, nullable=False)
    )
    op.create_table(
        "clock",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("last_seq", big, nullable=False),
        sa.Column("last_date_added", big, nullable=False),
    )
    op.create_table(
        "tokens",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("key_id", sa.String(32), nullable=False, unique=True),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("nation", sa.String(3), nullable=False),
        sa.Column("organisation", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("clearance", sa.Text, nullable=False),
        sa.Column("admin", sa.Boolean, nullable=False),
        sa.Column("can_write", sa.Boolean, nullable=False),
        sa.Column("created", big, nullable=False),
        sa.Column("revoked", big, nullable=True),
    )
    op.create_table(
        "communities",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("description", sa.Text, nullable=False),
    )
    op.create_table(
        "community_members",
        sa.Column("community", sa.String(32), sa.ForeignKey("communities.name", ondelete="CASCADE"), nullable=False),
        sa.Column("nation", sa.String(3), nullable=False),
        sa.Column("since", sa.String(10), nullable=False),
        sa.Column("until", sa.String(10), nullable=True),
        sa.UniqueConstraint("community", "nation", "since"),
    )
    op.create_table(
        "collections",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("created", big, nullable=False),
    )
    op.create_table(
        "marking_definitions",
        sa.Column("id", sa.String(100), primary_key=True),
        sa.Column("body", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "marking_sets",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("key", sa.Text, nullable=False, unique=True),
        sa.Column("originator", sa.String(3), nullable=False),
        sa.Column("rank", sa.Integer, nullable=False),
        sa.Column("rel_to", sa.Text, nullable=True),
        sa.Column("tlp", sa.String(16), nullable=True),
        sa.Column("public", sa.Boolean, nullable=False),
    )
    op.create_table(
        "objects",
        sa.Column("seq", big, primary_key=True, autoincrement=False),
        sa.Column("collection", sa.String(36), nullable=False),
        sa.Column("stix_id", sa.String(300), nullable=False),
        sa.Column("type", sa.String(250), nullable=False),
        sa.Column("version", big, nullable=False),
        sa.Column("version_text", sa.String(40), nullable=True),
        sa.Column("spec_version", sa.String(8), nullable=False),
        sa.Column("date_added", big, nullable=False),
        sa.Column("marking_set", sa.Integer, nullable=False),
        sa.Column("has_newer", sa.Boolean, nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.UniqueConstraint("collection", "stix_id", "version", name="uq_objects_version"),
    )
    op.create_index("ix_objects_collection_seq", "objects", ["collection", "seq", "marking_set"])
    op.create_index("ix_objects_date_added", "objects", ["date_added"], unique=True)
    op.create_table(
        "deletions",
        sa.Column("seq", big, primary_key=True, autoincrement=False),
        sa.Column("collection", sa.String(36), nullable=False),
        sa.Column("stix_id", sa.String(300), nullable=False),
        sa.Column("type", sa.String(250), nullable=False),
        sa.Column("version_text", sa.String(40), nullable=False),
        sa.Column("marking_set", sa.Integer, nullable=False),
        sa.Column("date_added", big, nullable=False),
    )
    op.create_index("ix_deletions_collection_seq", "deletions", ["collection", "seq"])
    op.create_table(
        "statuses",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("token_id", sa.Integer, nullable=False),
        sa.Column("created", big, nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_statuses_created", "statuses", ["created"])


def downgrade() -> None:
    for table in (
        "statuses",
        "deletions",
        "objects",
        "marking_sets",
        "marking_definitions",
        "collections",
        "community_members",
        "communities",
        "tokens",
        "clock",
        "meta",
    ):
        op.drop_table(table)
