"""The tables, as SQLAlchemy Core metadata. Alembic migrations create them; queries use these objects."""

from __future__ import annotations

from sqlalchemy import BigInteger as _BigInteger
from sqlalchemy import (
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

# SQLite only aliases INTEGER PRIMARY KEY to the rowid; BIGINT there would lose that.
BigInt = _BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData()

meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

clock = Table(
    "clock",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("last_seq", BigInt, nullable=False),
    Column("last_date_added", BigInt, nullable=False),
)

tokens = Table(
    "tokens",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("key_id", String(32), nullable=False, unique=True),
    Column("secret_hash", String(64), nullable=False),
    Column("nation", String(3), nullable=False),
    Column("organisation", Text, nullable=False, default=""),
    Column("name", Text, nullable=False, default=""),
    Column("clearance", Text, nullable=False),
    Column("admin", Boolean, nullable=False, default=False),
    Column("can_write", Boolean, nullable=False, default=True),
    Column("created", BigInt, nullable=False),
    Column("revoked", BigInt, nullable=True),
    # "" a person's token; "peer" a peer node of `nation`; "relay" a hub relaying for the nations in relay_for.
    Column("kind", String(8), nullable=False, default=""),
    Column("relay_for", Text, nullable=False, default=""),  # comma-separated nations and communities
)

communities = Table(
    "communities",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("description", Text, nullable=False, default=""),
)

community_members = Table(
    "community_members",
    metadata,
    Column("community", String(32), ForeignKey("communities.name", ondelete="CASCADE"), nullable=False),
    Column("nation", String(3), nullable=False),
    Column("since", String(10), nullable=False),
    Column("until", String(10), nullable=True),
    UniqueConstraint("community", "nation", "since"),
)

collections = Table(
    "collections",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("title", Text, nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("created", BigInt, nullable=False),
)

# Marking definitions, one copy per publishing nation (a nation's objects are read under its own copy).
definitions = Table(
    "definitions",
    metadata,
    Column("id", String(100), primary_key=True),
    Column("originator", String(3), primary_key=True),
    Column("marking_set", Integer, nullable=False),  # who may see this copy
    Column("body", LargeBinary, nullable=False),
)

marking_sets = Table(
    "marking_sets",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("key", Text, nullable=False, unique=True),
    Column("originator", String(3), nullable=False),
    Column("rank", Integer, nullable=False),
    Column("rel_to", Text, nullable=True),  # JSON list of any-of groups; NULL: originator only
    Column("tlp", String(16), nullable=True),
    Column("public", Boolean, nullable=False, default=False),
)

objects = Table(
    "objects",
    metadata,
    # Sequences come from the clock row (shared with deletions), never from the database's own counter.
    Column("seq", BigInt, primary_key=True, autoincrement=False),
    Column("collection", String(36), nullable=False),
    Column("stix_id", String(300), nullable=False),
    Column("type", String(250), nullable=False),
    Column("version", BigInt, nullable=False),
    Column("version_text", String(40), nullable=True),
    Column("spec_version", String(8), nullable=False),
    Column("date_added", BigInt, nullable=False),
    Column("marking_set", Integer, nullable=False),
    Column("has_newer", Boolean, nullable=False, default=False),
    Column("body", LargeBinary, nullable=False),
    # What a release may trim (field marking sets, references), as compact JSON; NULL for most versions.
    Column("shape", LargeBinary, nullable=True),
    Column("revoked", Boolean, nullable=False, default=False),  # the object's "revoked": true
    # Each nation's publication of an id is its own copy: the nation that published it, and the sequence of
    # the copy's first version (readers who may see several copies are shown the lowest rank, or their own).
    Column("originator", String(3), nullable=False, default=""),
    Column("copy_rank", BigInt, nullable=False, default=0),
    Column("shared", Boolean, nullable=False, default=False),  # another nation has a copy of this id here
    # A received version: the JSON list of node ids it travelled through, the node it was published on first
    # and the peer it came from last; NULL for versions published on this node.
    Column("path", Text, nullable=True),
    UniqueConstraint("collection", "stix_id", "originator", "version", name="uq_objects_version"),
    # marking_set in the key: a restricted reader's policy filter is checked on index entries, so rows it
    # may not see cost an index step, not a table read.
    Index("ix_objects_collection_seq", "collection", "seq", "marking_set"),
    Index("ix_objects_date_added", "date_added", unique=True),
)

deletions = Table(
    "deletions",
    metadata,
    Column("seq", BigInt, primary_key=True, autoincrement=False),
    Column("collection", String(36), nullable=False),
    Column("stix_id", String(300), nullable=False),
    Column("type", String(250), nullable=False),
    Column("version_text", String(40), nullable=False),
    Column("marking_set", Integer, nullable=False),
    Column("date_added", BigInt, nullable=False),
    Column("originator", String(3), nullable=False, default=""),
    Column("copy_rank", BigInt, nullable=False, default=0),
    Column("shared", Boolean, nullable=False, default=False),
    # What the stream needs to send a `deleted` event only to parties that were released the version: its
    # shape and the skeleton of its required properties (references kept, values dropped).
    Column("shape", LargeBinary, nullable=True),
    Column("skeleton", LargeBinary, nullable=True),
    # Deleted by (a writer of) the nation that owns the version, here or on the node it came from: only
    # such deletions travel to peers (docs/federation.md).
    Column("by_owner", Boolean, nullable=False, default=False),
    # The sequence the deleted version had: decision records refer to versions by it (NULL: deleted before
    # the log stored references).
    Column("version_seq", BigInt, nullable=True),
    Index("ix_deletions_collection_seq", "collection", "seq"),
    Index("ix_deletions_version_seq", "version_seq"),
)

# The nodes this node follows (docs/federation.md). `token` is the secret the peer issued to this node: it must
# be sent, so it is kept as given (the database is private to the node's operator). `cursor` is the peer's
# sealed position, written in the same transaction as the versions it covers.
peers = Table(
    "peers",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("url", Text, nullable=False),
    Column("token", Text, nullable=False),
    Column("fingerprint", String(95), nullable=False, default=""),
    Column("certificate", Text, nullable=False, default=""),  # the pinned certificate (PEM), once fetched
    Column("speaks_for", Text, nullable=False, default=""),  # nations and communities; "": the peer's nation
    Column("remote_node", String(36), nullable=False, default=""),
    Column("remote_nation", String(3), nullable=False, default=""),
    Column("cursor", Text, nullable=False, default=""),
    Column("received", BigInt, nullable=False, default=0),
    Column("refused", BigInt, nullable=False, default=0),
    Column("last_refusal", Text, nullable=False, default=""),
    Column("last_error", Text, nullable=False, default=""),
    Column("last_error_at", BigInt, nullable=True),
    Column("last_ok_at", BigInt, nullable=True),
    Column("behind_since", BigInt, nullable=True),  # the upstream date_added of the oldest event not yet here
    Column("created", BigInt, nullable=False),
)

statuses = Table(
    "statuses",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("token_id", Integer, nullable=False),
    Column("created", BigInt, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Index("ix_statuses_created", "created"),
)

# decision log ---------------------------------------------------------------------------------------------
# One row per release or write, chained by hash (relto.domain.audit); seq comes from the last row (or the last
# checkpoint), read in the same write transaction. Format 1 rows: items is JSON [[stix_id, version or null],
# ...]. Format 2 rows: refs is the packed sequences of the versions released (relto.domain.audit.pack_refs;
# NULL when none), items the JSON copies of the items that are not references, digest their items_sha256.
# Never updated; deleted only by `relto audit archive`, in the transaction that stores their checkpoint.
decisions = Table(
    "decisions",
    metadata,
    Column("seq", BigInt, primary_key=True, autoincrement=False),
    Column("at", BigInt, nullable=False),
    Column("token_id", Integer, nullable=False),
    Column("nation", String(3), nullable=False),
    Column("path", String(32), nullable=False),
    Column("collection", String(36), nullable=False),
    Column("items", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Column("format", Integer, nullable=False, default=1),
    Column("refs", LargeBinary, nullable=True),
    Column("digest", String(64), nullable=True),
    Index("ix_decisions_at", "at"),
)

# Signed checkpoints (relto.domain.checkpoints): each closes the records an archive took out of `decisions`.
checkpoints = Table(
    "checkpoints",
    metadata,
    Column("seq", BigInt, primary_key=True, autoincrement=False),
    Column("hash", String(64), nullable=False),
    Column("at", BigInt, nullable=False),
    Column("count", BigInt, nullable=False),
    Column("node", String(36), nullable=False),
    Column("public_key", String(64), nullable=False),
    Column("signature", String(128), nullable=False),
)
