"""The storage interface: what the node needs from a database, and nothing about SQL.

One implementation (SQLStore) serves SQLite and PostgreSQL through SQLAlchemy Core; the policy filter is
passed in as the set of marking-set ids a party may see, so that it is part of every query.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from relto.domain.audit import Decision, PendingDecision
from relto.domain.checkpoints import Checkpoint
from relto.domain.communities import Community
from relto.domain.markings import MarkingSet


@dataclass(frozen=True, kw_only=True)
class NodeInfo:
    """What `relto init` decided about the node."""

    node_id: str
    nation: str
    levels: tuple[str, ...]
    title: str


@dataclass(frozen=True, kw_only=True)
class TokenRecord:
    """A stored token: the secret only as a hash."""

    id: int
    key_id: str
    secret_hash: str
    nation: str
    organisation: str
    name: str
    clearance: str
    admin: bool
    can_write: bool
    created: int
    revoked: int | None
    kind: str = ""  # "": a person's; "peer": a peer node of `nation`; "relay": a hub relaying for `relay_for`
    relay_for: str = ""  # comma-separated nations and communities (relay tokens)


@dataclass(frozen=True, kw_only=True)
class CollectionRecord:
    """A TAXII collection."""

    id: str
    title: str
    description: str
    created: int


class NewVersion(NamedTuple):
    """One object version to append."""

    stix_id: str
    type: str
    spec_version: str
    version: int
    version_text: str | None
    marking_set: int
    body: bytes
    shape: bytes | None = None  # relto.domain.redact.Shape, encoded; None when nothing can be trimmed
    revoked: bool = False  # the version says "revoked": true
    originator: str = ""  # the nation publishing it: the version joins that nation's copy of the id
    path: str | None = None  # received from a peer: the JSON list of nodes it travelled (None: published here)


class StoredVersion(NamedTuple):
    """One stored object version, as read back."""

    seq: int
    stix_id: str
    type: str
    version: int
    version_text: str | None
    spec_version: str
    date_added: int
    marking_set: int
    body: bytes
    shape: bytes | None = None
    originator: str = ""
    copy_rank: int = 0
    shared: bool = False  # another nation has a copy of this id in the collection


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of a collection's history: a stored version, or (body None) the deletion of one.

    A deletion carries the deleted version's shape and `skeleton` (its required properties, values dropped),
    so that the stream tells of it exactly the parties the version was released to.
    """

    seq: int
    stix_id: str
    type: str
    version_text: str | None
    date_added: int
    marking_set: int
    body: bytes | None
    shape: bytes | None = None
    originator: str = ""
    copy_rank: int = 0
    shared: bool = False
    skeleton: bytes | None = None
    collection: str = ""
    path: str | None = None  # the nodes a received version travelled (JSON list), None if published here
    by_owner: bool = False  # a deletion by the version's own nation (only those travel to peers)


@dataclass(frozen=True, slots=True)
class Holding:
    """One stored version of an id, as the reference check needs it (any collection)."""

    stix_id: str
    type: str
    version: int
    marking_set: int
    shape: bytes | None
    collection: str
    originator: str = ""
    copy_rank: int = 0


@dataclass(frozen=True, slots=True)
class Definition:
    """One nation's stored copy of a marking definition."""

    id: str
    originator: str
    marking_set: int
    body: bytes


@dataclass(frozen=True, kw_only=True)
class VersionQuery:
    """Which versions to read: always limited to `visible` marking sets (the policy's answer).

    `versions` holds 'first', 'last', 'all' and/or timestamps in microseconds (any-of); 'last' and
    'first' are judged among the versions the party may see, so each party sees its own newest.
    """

    collection: str
    visible: frozenset[int]
    after_seq: int = 0
    added_after: int | None = None
    ids: Sequence[str] = ()
    types: Sequence[str] = ()
    spec_versions: Sequence[str] = ()
    versions: Sequence[str | int] = ("last",)
    limit: int = 1000
    # The highest marking set id the caller's compiled policy knows; rows with a newer set are returned
    # too (None: do not), so a reader refreshes its policy instead of paging past them.
    known_max_set: int | None = None
    originator: str | None = None  # only this nation's copy


@dataclass(frozen=True, kw_only=True)
class Appended:
    """The outcome of an append: which inputs were stored now, which already existed, and which were refused
    (and why: the gate said so, their copy is revoked, or the same version is stored differently)."""

    stored: Sequence[bool]
    refused: Mapping[int, str] = field(default_factory=dict)  # input index -> why it was not stored
    # Per input, the date_added of the version stored now or already stored (None when refused): the
    # version TAXII shows for an object without modified or created (an SCO).
    date_added: Sequence[int | None] = ()
    # Per input, the sequence of that version (0 when refused): what decision records refer to it by.
    seqs: Sequence[int] = ()


# Asked, inside the write transaction, about each new version whose id other nations hold (in any
# collection), with every stored version of the id (the publisher's own included): a refusal message, or None
# to store it in the publisher's own copy.
Gate = Callable[[NewVersion, Sequence[Holding]], str | None]


@dataclass(frozen=True, slots=True)
class Doorbell:
    """Where other processes' committed writes ring: a PostgreSQL URL to LISTEN on, and the channel."""

    url: str
    channel: str


@dataclass(frozen=True, slots=True)
class StatusRow:
    """A status resource to keep, written in the same transaction as the versions it reports."""

    id: str
    token_id: int
    created: int
    body: bytes


class NodeStore(Protocol):
    """The node's identity and its secrets."""

    def initialised(self) -> bool:
        """Whether `relto init` has run on this database."""

    def schema_revision(self) -> str | None:
        """The schema migration the database is at (None: not migrated)."""

    def initialise(self, info: NodeInfo, communities: Sequence[Community]) -> None:
        """Create the node: its identity and the starting communities."""

    def node_info(self) -> NodeInfo:
        """The node's identity and ladder."""

    def secret(self, name: str, make: Callable[[], bytes]) -> bytes:
        """A node secret kept in the database (made by `make` the first time it is asked for)."""


class TokenStore(Protocol):
    """Tokens (the secret only as a hash)."""

    def add_token(self, record: TokenRecord) -> int:
        """Store a token (its hash) and return its id."""

    def token(self, key_id: str) -> TokenRecord | None:
        """The token with this public key id, revoked or not."""

    def tokens(self) -> list[TokenRecord]:
        """All tokens."""

    def revoke_token(self, key_id: str, when: int) -> bool:
        """Mark a token revoked; False if there is none with that key id."""


class PolicyStore(Protocol):
    """The policy's data: communities, marking sets and marking definitions."""

    def communities(self) -> list[Community]:
        """All communities with their membership history."""

    def put_community(self, community: Community) -> None:
        """Create or replace a community and its memberships."""

    def policy_generation(self) -> tuple[int, int]:
        """(number of marking sets, communities generation): changes when compiled policy must be rebuilt."""

    def marking_sets(self, after_id: int = 0) -> list[MarkingSet]:
        """Marking sets with an id above `after_id`, in id order."""

    def marking_set_id(self, key: str, template: MarkingSet, limit: int | None = None) -> int | None:
        """The id of the marking set with this key, creating it from `template` if new; None (nothing made)
        when its originator already has `limit` sets."""

    def definitions(self, ids: Sequence[str]) -> list[Definition]:
        """Every nation's stored copy of the marking definitions among `ids`."""


class CollectionStore(Protocol):
    """TAXII collections."""

    def add_collection(self, record: CollectionRecord) -> None:
        """Create a collection."""

    def collections(self) -> list[CollectionRecord]:
        """All collections, sorted by id."""

    def collection(self, collection_id: str) -> CollectionRecord | None:
        """One collection, or None."""


class VersionStore(Protocol):
    """Object versions: the one write path, the policy-filtered read, deletion, holdings of ids."""

    def append(
        self,
        collection_id: str,
        versions: Sequence[NewVersion],
        status: Callable[[Appended], StatusRow] | None = None,
        gate: Gate | None = None,
    ) -> Appended:
        """Store new versions in one transaction, each in its publisher's copy; existing (id, originator,
        version) triples are left alone (a marking definition stored with another body, or a version stored
        under other markings, is refused instead).

        `status` builds, from the outcome, the status row committed with the versions: it exists exactly when
        they do. `gate` may refuse a version whose id other nations hold. A version that revokes its object
        deletes (leaving tombstones) the older versions of its copy in the collection; nothing more is stored
        in a revoked copy.
        """

    def read(self, query: VersionQuery) -> list[StoredVersion]:
        """Versions matching the query, in sequence order, at most `limit`."""

    def delete(self, query: VersionQuery, owner: str | None = None) -> int:
        """Delete the versions the query matches (limit ignored), leaving tombstones; return how many.
        `owner`: the deleting party's nation (its own versions' tombstones travel to peers)."""

    def holdings(self, ids: Sequence[str]) -> list[Holding]:
        """Every stored version of these ids, in any collection (deleted ones are not stored)."""


class EventLog(Protocol):
    """The collections' history in sequence order, for the live stream, and its doorbell."""

    def head(self) -> int:
        """The last sequence handed out (objects and deletions)."""

    def doorbell(self) -> Doorbell | None:
        """Where to LISTEN for other processes' writes, or None (then subscribers poll)."""

    def events(
        self,
        collection_id: str | None,
        after_seq: int,
        limit: int,
        visible: frozenset[int] | None,
        known_max_set: int | None = None,
    ) -> tuple[list[Event], int]:
        """Object versions and deletions after `after_seq`, in sequence order, of one collection (None: every
        one), only `visible` sets if given (and, with `known_max_set`, sets newer than it, so the caller can
        refresh its policy rather than skip them); and the sequence up to which the answer is complete."""

    def seq_at(self, date_added: int) -> int:
        """The last sequence (object or deletion) added at or before `date_added`."""


@dataclass(frozen=True, kw_only=True)
class PeerRecord:
    """A node this node follows, and how following it goes (docs/federation.md)."""

    name: str
    url: str
    token: str
    fingerprint: str = ""
    certificate: str = ""
    speaks_for: str = ""
    remote_node: str = ""
    remote_nation: str = ""
    cursor: str = ""
    received: int = 0
    refused: int = 0
    last_refusal: str = ""
    last_error: str = ""
    last_error_at: int | None = None
    last_ok_at: int | None = None
    behind_since: int | None = None
    created: int = 0


@dataclass(frozen=True, slots=True)
class Received:
    """One step of a batch received from a peer, applied in order inside one transaction: versions appended to
    a collection (in their originators' copies), or owner deletions of (stix_id, originator, version_text)."""

    collection: str
    versions: Sequence[NewVersion] = ()
    deletions: Sequence[tuple[str, str, str]] = ()


@dataclass(frozen=True, kw_only=True)
class PeerProgress:
    """What a received batch changes in its peer's row (written with the batch): None leaves a field alone."""

    cursor: str
    refused: int = 0  # refused before storing (the store adds its own refusals, and counts what it stored)
    last_refusal: str | None = None
    remote_node: str | None = None
    remote_nation: str | None = None
    behind_since: int | None = None
    at: int = 0


class FederationStore(Protocol):
    """The peers this node follows, and the one transaction that applies what one of them sent."""

    def peers(self) -> list[PeerRecord]:
        """Every peer, by name."""

    def peer(self, name: str) -> PeerRecord | None:
        """One peer, or None."""

    def add_peer(self, record: PeerRecord) -> None:
        """Follow a new peer (DuplicateName-like ConfigurationError if the name is taken)."""

    def remove_peer(self, name: str) -> bool:
        """Stop following a peer; False if there is none by that name."""

    def update_peer(self, name: str, **fields: object) -> None:
        """Change a peer's stored fields (its state: errors, certificate, identity)."""

    def receive(self, peer: str, steps: Sequence[Received], progress: PeerProgress) -> list[Appended]:
        """Apply a peer's batch in one transaction with its new cursor (kill -9 at any moment resumes exactly
        where the last commit ended); each step's versions as `append` would store them (no ownership gate:
        the peer speaks for their originators), each deletion removing that version of the originator's copy."""


class StatusStore(Protocol):
    """TAXII status resources (written with the versions they report, by `append`)."""

    def status(self, status_id: str) -> tuple[int, bytes] | None:
        """(token id, body) of a status resource, or None."""

    def purge_statuses(self, older_than: int) -> int:
        """Forget statuses created before `older_than`; return how many."""


class DecisionStore(Protocol):
    """The tamper-evident decision log."""

    def append_decisions(self, records: Sequence[PendingDecision]) -> list[Decision]:
        """Chain records after the last stored one and store them, in one transaction under the write lock."""

    def decisions(
        self,
        after_seq: int = 0,
        limit: int = 1000,
        *,
        nation: str | None = None,
        path: str | None = None,
        object_id: str | None = None,
        since: int | None = None,
        until: int | None = None,
        newest: bool = False,
        token_id: int | None = None,
    ) -> list[Decision]:
        """Decision records after `after_seq` matching every filter given, in seq order, at most `limit`.

        `since` (inclusive) and `until` (exclusive) bound the time in microseconds; `newest` returns the
        last `limit` matching records instead of the first.
        """

    def decision_head(self) -> tuple[int, str]:
        """(seq, hash) of the last decision record, stored or archived; (0, 64 zeros) when there is none."""

    def checkpoints(self) -> list[Checkpoint]:
        """The decision log's signed checkpoints, oldest first."""

    def last_decision_before(self, at: int) -> int:
        """The last seq of the longest run of stored records, from the first, all decided before `at`."""

    def close_archived(self, checkpoint: Checkpoint, after_seq: int) -> int:
        """Store the checkpoint and delete the records it closes, in one write transaction; return how many.

        ValueError when the log changed under the archive (another archive, records missing)."""


class Store(
    NodeStore,
    TokenStore,
    PolicyStore,
    CollectionStore,
    VersionStore,
    EventLog,
    StatusStore,
    DecisionStore,
    FederationStore,
    Protocol,
):
    """Everything the node asks of its database: each part of the node asks only for the role it needs."""

    def close(self) -> None:
        """Release connections."""
