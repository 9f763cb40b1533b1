"""The decision log's records and their hash chain: pure, so that an auditor can re-implement the check.

Every release of object versions to a party, and every write, becomes one `Decision`. Records are chained:
each holds the hash of the one before, so editing, deleting or reordering a stored record breaks the chain
at that record (see docs/audit.md).

Canonical encoding (version 1). A record's hash is the SHA-256, written as 64 lowercase hex digits, of the
UTF-8 bytes of this JSON array, with no whitespace anywhere (separators "," and ":"):

    ["relto.decision.1", seq, at, token_id, nation, path, collection, [[stix_id, version], ...], prev_hash]

- seq, at, token_id: JSON integers in plain decimal (at is microseconds since 1970-01-01T00:00:00Z);
- nation, path, collection, stix_id, prev_hash: JSON strings; version: a JSON string, or null for an object
  without one; items keep the order in which they were released;
- strings are escaped as RFC 8259 requires and no more: `"` and `\\` by a backslash, U+0000..U+001F as \\b,
  \\t, \\n, \\f, \\r or \\u00xx (lowercase hex), everything else (non-ASCII included) as raw UTF-8. Python's
  `json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()` gives the same bytes;
- prev_hash of the first record (seq 1) is 64 zeros (`GENESIS`); seqs are 1, 2, 3, ... with no gaps.

`verify` walks records in seq order in constant memory and names the first that breaks the chain.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

import orjson

GENESIS = "0" * 64
FORMAT = "relto.decision.1"
EDITED = "edited"
DELETED_OR_REORDERED = "deleted or reordered"

Item = tuple[str, str | None]


@dataclass(frozen=True, slots=True, kw_only=True)
class PendingDecision:
    """A decision as recorded, before it takes its place (seq, prev_hash) in the chain."""

    at: int
    token_id: int
    nation: str
    path: str
    collection: str
    items: tuple[Item, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """One stored record of the decision log: who was released or wrote what, when, and how; chained."""

    seq: int
    at: int
    token_id: int
    nation: str
    path: str
    collection: str
    items: tuple[Item, ...]
    prev_hash: str
    hash: str

    @property
    def fields(self) -> PendingDecision:
        """The recorded fields, without the chain's."""
        return PendingDecision(
            at=self.at,
            token_id=self.token_id,
            nation=self.nation,
            path=self.path,
            collection=self.collection,
            items=self.items,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyResult:
    """The outcome of a walk: intact (count, head) or the first broken record (seq, reason, detail)."""

    ok: bool
    count: int
    head: str
    broken_at: int | None = None
    reason: str | None = None
    detail: str | None = None


def encode(seq: int, fields: PendingDecision, prev_hash: str) -> bytes:
    """The canonical bytes of a record (module docstring), the input of its hash."""
    # orjson writes tuples as arrays: no copy of the (often 1,000) items into lists.
    f = fields
    return orjson.dumps([FORMAT, seq, f.at, f.token_id, f.nation, f.path, f.collection, f.items, prev_hash])


def chain(prev_hash: str, seq: int, fields: PendingDecision) -> str:
    """The hash of the record `fields` at position `seq`, following the record whose hash is `prev_hash`."""
    return hashlib.sha256(encode(seq, fields, prev_hash)).hexdigest()


def seal(prev_hash: str, seq: int, fields: PendingDecision) -> Decision:
    """The record `fields` chained at `seq` after `prev_hash`."""
    return Decision(
        seq=seq,
        at=fields.at,
        token_id=fields.token_id,
        nation=fields.nation,
        path=fields.path,
        collection=fields.collection,
        items=fields.items,
        prev_hash=prev_hash,
        hash=chain(prev_hash, seq, fields),
    )


def verify(records: Iterable[Decision], *, after_seq: int = 0, prev_hash: str = GENESIS) -> VerifyResult:
    """Walk `records` (in seq order) and return the first that breaks the chain, or the count and head hash.

    By default the walk starts at the first record (seq 1, chained from GENESIS); `after_seq` and
    `prev_hash` start it after a record already trusted (a checkpoint).
    """
    expected_seq, head, count = after_seq + 1, prev_hash, 0
    for record in records:
        if record.seq != expected_seq:
            what = "a record before it is missing" if record.seq > expected_seq else "it is out of order"
            return _broken(
                record, count, head, DELETED_OR_REORDERED, f"seq {record.seq} where {expected_seq} was due: {what}"
            )
        if record.prev_hash != head:
            return _broken(
                record, count, head, DELETED_OR_REORDERED, "its prev_hash is not the hash of the record before it"
            )
        if chain(record.prev_hash, record.seq, record.fields) != record.hash:
            return _broken(record, count, head, EDITED, "its hash does not match its contents")
        head = record.hash
        expected_seq += 1
        count += 1
    return VerifyResult(ok=True, count=count, head=head)


def _broken(record: Decision, count: int, head: str, reason: str, detail: str) -> VerifyResult:
    return VerifyResult(ok=False, count=count, head=head, broken_at=record.seq, reason=reason, detail=detail)
