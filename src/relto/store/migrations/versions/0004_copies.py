"""Each nation's publication of an id is its own copy (docs/security.md): versions and tombstones name their
originator; a copy has a rank (the sequence of its first version) so that readers who may see several copies
are shown the same one; marking definitions are kept per publisher.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

big = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("objects", recreate="always") as batch:
        batch.add_column(sa.Column("originator", sa.String(3), nullable=False, server_default=""))
        batch.add_column(sa.Column("copy_rank", big, nullable=False, server_default="0"))
        batch.add_column(sa.Column("shared", sa.Boolean, nullable=False, server_default=sa.false()))
        batch.drop_constraint("uq_objects_version", type_="unique")
        batch.create_unique_constraint("uq_objects_version", ["collection", "stix_id", "originator", "version"])
    op.execute(
        "UPDATE objects SET originator = "
        "COALESCE((SELECT originator FROM marking_sets WHERE marking_sets.id = objects.marking_set), '')"
    )
    op.execute(
        "UPDATE objects SET copy_rank = (SELECT MIN(o2.seq) FROM objects o2 WHERE o2.collection = objects.collection"
        " AND o2.stix_id = objects.stix_id AND o2.originator = objects.originator)"
    )
    op.execute(
        "UPDATE objects SET shared = EXISTS (SELECT 1 FROM objects o2 WHERE o2.collection = objects.collection"
        " AND o2.stix_id = objects.stix_id AND o2.originator <> objects.originator)"
    )
    op.execute(
        "UPDATE objects SET has_newer = EXISTS (SELECT 1 FROM objects o2 WHERE o2.collection = objects.collection"
        " AND o2.stix_id = objects.stix_id AND o2.originator = objects.originator AND o2.version > objects.version)"
    )
    with op.batch_alter_table("deletions") as batch:
        batch.add_column(sa.Column("originator", sa.String(3), nullable=False, server_default=""))
        batch.add_column(sa.Column("copy_rank", big, nullable=False, server_default="0"))
        batch.add_column(sa.Column("shared", sa.Boolean, nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("shape", sa.LargeBinary, nullable=True))
        batch.add_column(sa.Column("skeleton", sa.LargeBinary, nullable=True))
    op.execute(
        "UPDATE deletions SET originator = "
        "COALESCE((SELECT originator FROM marking_sets WHERE marking_sets.id = deletions.marking_set), '')"
    )
    op.create_table(
        "definitions",
        sa.Column("id", sa.String(100), nullable=False),
        sa.Column("originator", sa.String(3), nullable=False),
        sa.Column("marking_set", sa.Integer, nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("id", "originator"),
    )
    # Each stored definition becomes the copy of the nation that published it first (its object row says who).
    op.execute(
        "INSERT INTO definitions (id, originator, marking_set, body) "
        "SELECT d.id, o.originator, o.marking_set, d.body FROM marking_definitions d JOIN objects o "
        "ON o.seq = (SELECT MIN(o2.seq) FROM objects o2 WHERE o2.stix_id = d.id)"
    )
    op.drop_table("marking_definitions")


def downgrade() -> None:
    raise NotImplementedError("relto migrations only go forward; restore a backup to go back")
