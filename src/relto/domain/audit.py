"""The decision log's records and their hash chain: pure, so that an auditor can re-implement the check.

Every release of object versions to a party, and every write, becomes one `Decision`. Records are chained:
each holds the hash of the one before, so editing, deleting or reordering a stored record breaks the chain
at that record (see docs/audit.md). A log holds records of two formats: those written before relto stored
references (format 1, copies of every item) keep verifying as they were written.

Format 2 (written now). A record's hash is the SHA-256, as 64 lowercase hex digits, of the UTF-8 bytes of

    ["relto.decision.2", seq, at, token_id, nation, path, collection, [ref, ...], [[stix_id, version], ...],
     items_sha256, prev_hash]

(one line, no whitespace anywhere: separators "," and ":"), where

- `[ref, ...]` has one JSON integer per released item, in release order: the node-local sequence of the stored
  object version released (the `seq` of its row in `objects`, or, once the version is deleted, the
  `version_seq` of its row in `deletions`), or 0 for an item that was never a stored version (a draft
  previewed, a refused write, a deletion received);
- `[[stix_id, version], ...]` are the items whose ref is 0, in order: copies, as in format 1;
- `items_sha256` is the SHA-256 (64 lowercase hex digits) of the format-1 encoding of *every* item,
  `[[stix_id, version], ...]` in release order, each ref resolved to its version's (stix_id, version).
  It binds the references to what they meant when they were recorded: a version row renumbered, edited, or
  deleted without leaving its tombstone makes the resolved items hash differently (`MEANING_CHANGED`).

Format 1 (records written before). The hash is the SHA-256 of

    ["relto.decision.1", seq, at, token_id, nation, path, collection, [[stix_id, version], ...], prev_hash]

Both formats: seq, at, token_id, ref are JSON integers in plain decimal (at is microseconds since
1970-01-01T00:00:00Z); nation, path, collection, stix_id, prev_hash, items_sha256 are JSON strings; version
is a JSON string, or null for an object without one; strings are escaped as RFC 8259 requires and no more:
`"` and `\\` by a backslash, U+0000..U+001F as \\b, \\t, \\n, \\f, \\r or \\u00xx (lowercase hex),
everything else (non-ASCII included) as raw UTF-8. Python's
`json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()` gives the same bytes. prev_hash of the
first record (seq 1) is 64 zeros (`GENESIS`); seqs are 1, 2, 3, ... with no gaps.

How references are stored (`pack_refs`): the refs as differences from the one before (the first from 0), each
a signed 64-bit little-endian integer, the whole compressed with zlib (RFC 1950; relto writes level 1, any
level decompresses alike). A 1,000-item page of consecutive versions packs into under 100 bytes; a sparse one
(a restricted reader's) into about 2 bytes per item.

`verify` walks records in seq order in constant memory and names the first that breaks the chain.
Checkpoints, which let the oldest records leave the database, are in relto.domain.checkpoints.
"""

from __future__ import annotations

import hashlib
import itertools
import operator
import sys
import zlib
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import orjson

GENESIS = "0" * 64
FORMAT_1 = "relto.decision.1"
FORMAT_2 = "relto.decision.2"
FORMAT = FORMAT_2  # what is written now
EDITED = "edited"
DELETED_OR_REORDERED = "deleted or reordered"
MEANING_CHANGED = "references changed"

Item = tuple[str, str | None]


@dataclass(frozen=True, slots=True, kw_only=True)
class PendingDecision:
    """A decision as recorded, before it takes its place (seq, prev_hash) in the chain.

    `refs`: per item, the sequence of the stored version released (0: a copy, not a stored version); empty
    when no item is a stored version.
    """

    at: int
    token_id: int
    nation: str
    path: str
    collection: str
    items: tuple[Item, ...]
    refs: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """One stored record of the decision log: who was released or wrote what, when, and how; chained.

    `items` are what was released, references resolved; `refs` and `digest` are format 2's (empty for
    format 1).
    """

    seq: int
    at: int
    token_id: int
    nation: str
    path: str
    collection: str
    items: tuple[Item, ...]
    prev_hash: str
    hash: str
    format: int = 2
    refs: tuple[int, ...] = ()
    digest: str = ""

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
            refs=self.refs,
        )

    @property
    def copies(self) -> tuple[Item, ...]:
        """The items that are not references (format 2: those whose ref is 0; format 1: every item)."""
        if self.format == 1:
            return self.items
        return tuple(item for item, ref in zip(self.items, self.full_refs, strict=True) if ref == 0)

    @property
    def full_refs(self) -> tuple[int, ...]:
        """One ref per item (0 where the item is a copy)."""
        return self.refs or (0,) * len(self.items)


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyResult:
    """The outcome of a walk: intact (count, head) or the first broken record (seq, reason, detail)."""

    ok: bool
    count: int
    head: str
    broken_at: int | None = None
    reason: str | None = None
    detail: str | None = None


def items_digest(items: Sequence[Item]) -> str:
    """SHA-256 (hex) of the format-1 encoding of these items: what a format-2 record's references mean."""
    # orjson writes tuples as arrays: no copy of the (often 1,000) items into lists.
    return hashlib.sha256(orjson.dumps(items)).hexdigest()


def encode_v1(seq: int, fields: PendingDecision, prev_hash: str) -> bytes:
    """The canonical bytes of a format-1 record (module docstring)."""
    f = fields
    return orjson.dumps([FORMAT_1, seq, f.at, f.token_id, f.nation, f.path, f.collection, f.items, prev_hash])


def encode(seq: int, fields: PendingDecision, prev_hash: str, digest: str | None = None) -> bytes:
    """The canonical bytes of a format-2 record (module docstring), the input of its hash.

    `digest` is the record's stored items_sha256; by default it is computed from `fields.items`.
    """
    f = fields
    refs = f.refs or (0,) * len(f.items)
    copies = tuple(item for item, ref in zip(f.items, refs, strict=True) if ref == 0) if 0 in refs else ()
    if digest is None:
        digest = items_digest(f.items)
    return orjson.dumps(
        [FORMAT_2, seq, f.at, f.token_id, f.nation, f.path, f.collection, refs, copies, digest, prev_hash]
    )


def chain(prev_hash: str, seq: int, fields: PendingDecision) -> str:
    """The hash of the format-2 record `fields` at position `seq`, following the record hashed `prev_hash`."""
    return hashlib.sha256(encode(seq, fields, prev_hash)).hexdigest()


def seal(prev_hash: str, seq: int, fields: PendingDecision) -> Decision:
    """The record `fields` chained at `seq` after `prev_hash` (format 2)."""
    if fields.refs and len(fields.refs) != len(fields.items):
        raise ValueError("refs must have one entry per item")
    digest = items_digest(fields.items)
    return Decision(
        seq=seq,
        at=fields.at,
        token_id=fields.token_id,
        nation=fields.nation,
        path=fields.path,
        collection=fields.collection,
        items=fields.items,
        prev_hash=prev_hash,
        hash=hashlib.sha256(encode(seq, fields, prev_hash, digest)).hexdigest(),
        format=2,
        refs=fields.refs if any(fields.refs) else (),
        digest=digest,
    )


def record_hash(record: Decision) -> str:
    """The hash a stored record's contents give, in its own format (format 2: with its stored digest)."""
    if record.format == 1:
        return hashlib.sha256(encode_v1(record.seq, record.fields, record.prev_hash)).hexdigest()
    if record.format == 2:
        return hashlib.sha256(encode(record.seq, record.fields, record.prev_hash, record.digest)).hexdigest()
    return f"<no format {record.format}>"  # matches no stored hash


def pack_refs(refs: Sequence[int]) -> bytes:
    """The stored form of a record's refs (module docstring): zlib of little-endian int64 differences."""
    deltas = array("q", map(operator.sub, refs, itertools.chain((0,), refs)))  # map: no Python-level loop
    if sys.byteorder == "big":
        deltas.byteswap()
    # Level 1: a sparse page (a restricted reader's) packs to ~2 bytes per item either way, for a third of the
    # time of the default level on the flush thread.
    return zlib.compress(deltas.tobytes(), 1)


def unpack_refs(blob: bytes) -> tuple[int, ...]:
    """The refs `pack_refs` stored; ValueError if the bytes are not such a packing."""
    try:
        raw = zlib.decompress(blob)
        deltas = array("q")
        deltas.frombytes(raw)
    except (zlib.error, ValueError) as exc:
        raise ValueError(f"not packed references: {exc}") from exc
    if sys.byteorder == "big":
        deltas.byteswap()
    return tuple(itertools.accumulate(deltas))


def verify(records: Iterable[Decision], *, after_seq: int = 0, prev_hash: str = GENESIS) -> VerifyResult:
    """Walk `records` (in seq order) and return the first that breaks the chain, or the count and head hash.

    By default the walk starts at the first record (seq 1, chained from GENESIS); `after_seq` and
    `prev_hash` start it after a record already trusted (a checkpoint). A format-2 record's items (its
    references as resolved now) must also hash to its stored items_sha256.
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
        if record_hash(record) != record.hash:
            return _broken(record, count, head, EDITED, "its hash does not match its contents")
        if record.format != 1 and items_digest(record.items) != record.digest:
            return _broken(
                record,
                count,
                head,
                MEANING_CHANGED,
                "its references no longer resolve to the versions it released: a version row renumbered, "
                "edited, or deleted without its tombstone",
            )
        head = record.hash
        expected_seq += 1
        count += 1
    return VerifyResult(ok=True, count=count, head=head)


def _broken(record: Decision, count: int, head: str, reason: str, detail: str) -> VerifyResult:
    return VerifyResult(ok=False, count=count, head=head, broken_at=record.seq, reason=reason, detail=detail)
