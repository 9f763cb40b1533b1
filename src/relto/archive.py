"""The decision log's archives: move the oldest records to a file closed by a signed checkpoint, and verify
the whole log across the boundary (archive files, then the database).

An archive is a gzip file of JSON lines (docs/audit.md):

    {"relto": "decision-archive.1", "node": ID, "public_key": HEX, "first_seq": A, "last_seq": B, "prev_hash": H}
    {"seq": A, "at": ..., "format": 2, "refs": [...], "items": [[stix_id, version], ...], "digest": ..., ...}
    ...  one line per record, A..B, references resolved into "items"
    {"checkpoint": {"node": ID, "seq": B, "hash": ..., "at": ..., "count": B - A + 1, "public_key": ...,
                    "signature": ...}}

A record's `items` are what its references meant when archived; its `digest` (covered by its hash) lets
anyone check them without the database. The file is written and made durable first; the checkpoint is then
stored and the records deleted in one transaction, so a failure leaves the records in the database.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from relto.decisions import all_decisions
from relto.domain.audit import GENESIS, Decision, verify
from relto.domain.checkpoints import Checkpoint, fingerprint, from_json, new_signing_key, problem, public_key, sign
from relto.domain.errors import ReltoError
from relto.domain.timestamps import now_micros
from relto.store.base import DecisionStore, NodeStore

ARCHIVE_FORMAT = "decision-archive.1"
SIGNING_SECRET = "decision-signing"  # the node's Ed25519 key, kept with its other secrets (made on first need)

Progress = Callable[[int], None]


class ArchiveError(ReltoError):
    """An archive could not be written, or the log is not fit to archive."""


def signing_key(store: NodeStore) -> bytes:
    """The node's checkpoint signing key (raw Ed25519 private bytes), made the first time it is needed."""
    return store.secret(SIGNING_SECRET, new_signing_key)


def record_json(record: Decision) -> dict[str, Any]:
    """One archived record: every field, references resolved into `items`."""
    return {
        "seq": record.seq,
        "at": record.at,
        "token_id": record.token_id,
        "nation": record.nation,
        "path": record.path,
        "collection": record.collection,
        "format": record.format,
        "refs": list(record.refs) if record.refs else None,
        "items": record.items,
        "digest": record.digest or None,
        "prev_hash": record.prev_hash,
        "hash": record.hash,
    }


def record_from_json(doc: Any) -> Decision:
    """A record read back from an archive line; ValueError if it is not one."""
    try:
        return Decision(
            seq=int(doc["seq"]),
            at=int(doc["at"]),
            token_id=int(doc["token_id"]),
            nation=str(doc["nation"]),
            path=str(doc["path"]),
            collection=str(doc["collection"]),
            items=tuple((str(i), None if v is None else str(v)) for i, v in doc["items"]),
            prev_hash=str(doc["prev_hash"]),
            hash=str(doc["hash"]),
            format=int(doc["format"]),
            refs=tuple(int(r) for r in doc["refs"] or ()),
            digest=str(doc["digest"] or ""),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a decision record: {exc!r}") from exc


# writing -------------------------------------------------------------------------------------------------
def archive(
    store: DecisionStore,
    *,
    node_id: str,
    key: bytes,
    upto: int,
    to: Path,
    progress: Progress | None = None,
) -> Checkpoint:
    """Move the records after the last checkpoint up to `upto` into the file `to`, closed by a new signed
    checkpoint; return it. ArchiveError (nothing changed) when there is nothing to move, the file exists,
    or the records to move do not verify."""
    checkpoints = store.checkpoints()
    start, start_hash = (checkpoints[-1].seq, checkpoints[-1].hash) if checkpoints else (0, GENESIS)
    last = store.decision_head()[0]
    if upto <= start:
        raise ArchiveError(f"nothing to archive: records up to {start} are archived already")
    if upto > last:
        raise ArchiveError(f"there is no record {upto}: the log ends at record {last}")
    if to.exists():
        raise ArchiveError(f"{to} exists: an archive is never overwritten (choose another file)")
    partial = to.with_name(to.name + ".partial")
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # the log names who saw what
    except FileExistsError as exc:
        raise ArchiveError(f"{partial} exists: an archive was interrupted there; remove it and try again") from exc
    except OSError as exc:
        raise ArchiveError(f"cannot write {partial}: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "wb") as raw:
            # Level 6: random UUIDs make most of an archive; level 9 took three times as long for <1% less.
            with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as out:
                checkpoint = _write(store, out, node_id, key, start, start_hash, upto, progress)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(partial, to)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    try:
        store.close_archived(checkpoint, start)
    except Exception as exc:
        to.unlink(missing_ok=True)  # the records stay in the database: the file would only duplicate them
        raise ArchiveError(f"nothing archived: {exc}") from exc
    return checkpoint


def _write(
    store: DecisionStore,
    out: gzip.GzipFile,
    node_id: str,
    key: bytes,
    start: int,
    start_hash: str,
    upto: int,
    progress: Progress | None,
) -> Checkpoint:
    header = {
        "relto": ARCHIVE_FORMAT,
        "node": node_id,
        "public_key": public_key(key),
        "first_seq": start + 1,
        "last_seq": upto,
        "prev_hash": start_hash,
    }
    out.write(orjson.dumps(header) + b"\n")

    def written() -> Iterator[Decision]:
        for number, record in enumerate(all_decisions(store, start, upto=upto), 1):
            out.write(orjson.dumps(record_json(record)) + b"\n")
            if progress is not None:
                progress(number)
            yield record

    result = verify(written(), after_seq=start, prev_hash=start_hash)
    if not result.ok:
        raise ArchiveError(
            f"nothing archived: the log is broken at record {result.broken_at}: {result.reason} ({result.detail})"
        )
    if result.count != upto - start:
        raise ArchiveError(f"nothing archived: records {start + result.count + 1} to {upto} are missing")
    checkpoint = sign(key, node=node_id, seq=upto, hash=result.head, at=now_micros(), count=upto - start)
    out.write(orjson.dumps({"checkpoint": checkpoint.to_json()}) + b"\n")
    return checkpoint


# verifying -----------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Verdict:
    """What `relto audit verify` found: ok, the line to print, the records walked and the head."""

    ok: bool
    line: str
    count: int = 0
    head: str = GENESIS
    seen: bool = False  # some record or checkpoint had the expected hash
    broken_at: int | None = None  # the record (or checkpoint) where it broke
    reason: str | None = None


class _Broken(Exception):
    def __init__(self, line: str, at: int | None = None, reason: str | None = None) -> None:
        super().__init__(line)
        self.line, self.at, self.reason = line, at, reason


def verify_log(
    store: DecisionStore,
    *,
    node_id: str,
    trusted_key: Callable[[], str],
    archives: Sequence[Path] = (),
    expected: str | None = None,
    progress: Progress | None = None,
) -> Verdict:
    """Check the signed checkpoints, the archive files given (they must cover every archived record, in one
    chain), then the records in the database from the last checkpoint on."""
    counted = 0
    seen = False

    def counting(records: Iterable[Decision]) -> Iterator[Decision]:
        nonlocal counted, seen
        for record in records:
            counted += 1
            if progress is not None and counted % 100_000 == 0:
                progress(counted)
            seen = seen or record.hash == expected
            yield record

    try:
        checkpoints = store.checkpoints()
        key = trusted_key() if checkpoints or archives else ""
        _check_checkpoints(checkpoints, node_id, key)
        seen = any(c.hash == expected for c in checkpoints)
        start, head = (checkpoints[-1].seq, checkpoints[-1].hash) if checkpoints else (0, GENESIS)
        if archives:
            seq, head_after = 0, GENESIS
            for path, header in sorted(((p, _header(p)) for p in archives), key=lambda ph: int(ph[1]["first_seq"])):
                seq, head_after = _walk_archive(path, header, seq, head_after, node_id, key, checkpoints, counting)
            if (seq, head_after) != (start, head):
                raise _Broken(
                    f"BROKEN after record {seq}: the database's log continues from checkpoint {start}, "
                    f"so records {seq + 1} to {start} are in no archive given (a file missing?)"
                )
        result = verify(counting(all_decisions(store, start)), after_seq=start, prev_hash=head)
        if not result.ok:
            line = f"BROKEN at record {result.broken_at}: {result.reason} ({result.detail})"
            raise _Broken(line, result.broken_at, result.reason)
    except _Broken as broken:
        return Verdict(False, broken.line, counted, seen=seen, broken_at=broken.at, reason=broken.reason)
    total = counted if archives else result.count
    line = f"OK: {total} records, head {result.head}"
    if checkpoints:
        files = f"{len(archives)} archive file{'' if len(archives) == 1 else 's'}"
        where = f"records 1 to {start} from {files}" if archives else f"checkpoint {start}"
        line += f" ({where}, signed by {fingerprint(key)})"
    return Verdict(True, line, total, result.head, seen)


def _check_checkpoints(checkpoints: Sequence[Checkpoint], node_id: str, key: str) -> None:
    before = 0
    for cp in checkpoints:
        why = problem(cp, node=node_id, trusted_key=key)
        if why is None and cp.count != cp.seq - before:
            why = f"it closes {cp.count} records where {cp.seq - before} follow checkpoint {before}"
        if why is not None:
            raise _Broken(f"BROKEN at checkpoint {cp.seq}: {why}", cp.seq, "checkpoint")
        before = cp.seq


def _header(path: Path) -> dict[str, Any]:
    try:
        with gzip.open(path, "rb") as f:
            header = orjson.loads(f.readline())
        if not isinstance(header, dict) or header.get("relto") != ARCHIVE_FORMAT:
            raise ValueError("its first line is not a relto decision archive header")
        int(header["first_seq"]), int(header["last_seq"])
    except (OSError, EOFError, ValueError, KeyError, TypeError) as exc:
        raise _Broken(f"BROKEN: {path} is not a readable decision archive ({exc})") from exc
    return header


def _walk_archive(
    path: Path,
    header: dict[str, Any],
    seq: int,
    head: str,
    node_id: str,
    key: str,
    checkpoints: Sequence[Checkpoint],
    counting: Callable[[Iterable[Decision]], Iterator[Decision]],
) -> tuple[int, str]:
    """Check one archive continues the chain at (seq, head); return where it leaves it."""
    first, last = int(header["first_seq"]), int(header["last_seq"])
    if first != seq + 1:
        what = f"records {seq + 1} to {first - 1} are in no archive given" if first > seq + 1 else "it overlaps another"
        raise _Broken(f"BROKEN at record {first} ({path.name}): {what}")
    closing: list[Any] = []
    try:
        with gzip.open(path, "rb") as f:
            f.readline()

            def records() -> Iterator[Decision]:
                for line in f:
                    doc = orjson.loads(line)
                    if isinstance(doc, dict) and "checkpoint" in doc:
                        closing.append(doc["checkpoint"])
                        return
                    yield record_from_json(doc)

            result = verify(counting(records()), after_seq=seq, prev_hash=head)
            trailing = f.readline()
    except (OSError, EOFError, ValueError) as exc:
        raise _Broken(f"BROKEN in {path.name}: unreadable ({exc})") from exc
    if not result.ok:
        line = f"BROKEN at record {result.broken_at} ({path.name}): {result.reason} ({result.detail})"
        raise _Broken(line, result.broken_at, result.reason)
    if not closing or trailing:
        raise _Broken(f"BROKEN in {path.name}: it does not end with its checkpoint (cut short or added to)")
    try:
        cp = from_json(closing[0])
    except ValueError as exc:
        raise _Broken(f"BROKEN in {path.name}: its checkpoint is unreadable ({exc})") from exc
    why = problem(cp, node=node_id, trusted_key=key)
    if why is None and (cp.seq, cp.hash, cp.count) != (seq + result.count, result.head, result.count):
        why = "it does not close the records of the file"
    if why is None and last != cp.seq:
        why = "the file's header does not match its records"
    if why is None and cp not in checkpoints:
        why = "the database holds no such checkpoint"
    if why is not None:
        raise _Broken(f"BROKEN at checkpoint {cp.seq} ({path.name}): {why}")
    return cp.seq, cp.hash
