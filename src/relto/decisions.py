"""The decision log's writer: cheap to call on every read, written in the background in batches.

`DecisionLog.record` is called on every release (TAXII pages, single objects, versions, manifests, stream
batches, previews) and every write (publish, delete). It does no I/O: it appends the record, stamped with the
time of the call, to an in-memory buffer under a lock. A daemon thread, started by the first record and
ending when the buffer stays empty, writes the buffer every `flush_seconds` in one write transaction, where
the records are chained (relto.domain.audit) after the last stored one, in the order this process recorded
them; records of several processes interleave by flush.

Durability window: records of the last flush interval (default 200 ms), and any a failing database has not
yet taken, are in memory only; a crash or a kill loses them. The writes they describe are durable on their own
(a publish is committed before its status says "success"), so a crash can lose a record of a write, never
the write. `close()` (on shutdown) and `flush()` write what is buffered now. A failed flush is logged and the
records are kept, in order, for the next try.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from relto.domain.audit import Decision, Item, PendingDecision
from relto.domain.parties import Party
from relto.domain.timestamps import format_timestamp, now_micros
from relto.store.base import DecisionStore

log = logging.getLogger("relto.decisions")

_REPEAT_FAILURE_LOG_SECONDS = 60.0  # a database that stays down is reported once a minute, not every flush


class DecisionLog:
    """Buffers decision records and writes them in the background, chained, in one transaction per flush."""

    def __init__(self, store: DecisionStore, *, enabled: bool, flush_seconds: float) -> None:
        if flush_seconds <= 0:
            raise ValueError("flush_seconds must be positive")
        self.store = store
        self.enabled = enabled
        self.flush_seconds = flush_seconds
        self._buffer: list[PendingDecision] = []
        self._lock = threading.Lock()  # guards _buffer and _worker
        self._flushing = threading.Lock()  # one flush at a time, so records are chained in the order recorded
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._failing_since: float | None = None
        self._failure_logged = 0.0

    def __repr__(self) -> str:
        return f"DecisionLog(enabled={self.enabled}, flush_seconds={self.flush_seconds}, pending={self.pending})"

    @property
    def pending(self) -> int:
        """How many records wait for the next flush."""
        return len(self._buffer)

    def record(
        self, party: Party, path: str, collection_id: str, items: Iterable[Item], refs: Sequence[int] = ()
    ) -> None:
        """Note that `party` was released (or wrote) these (stix id, version text or None) pairs; no I/O.

        `refs`: per item, the sequence of the stored version it is (0: not a stored version), so the record
        keeps a reference instead of a copy; empty: every item is kept as a copy.
        """
        if not self.enabled:
            return
        pending = PendingDecision(
            at=now_micros(),
            token_id=party.token_id,
            nation=party.nation,
            path=path,
            collection=collection_id,
            items=tuple(items),
            refs=tuple(refs),
        )
        with self._lock:
            self._buffer.append(pending)
            if self._worker is None:
                self._stop.clear()
                self._worker = threading.Thread(target=self._run, name="relto-decision-log", daemon=True)
                self._worker.start()

    def flush(self) -> int:
        """Write every buffered record now, in one transaction; return how many (0 if the write failed)."""
        with self._flushing:
            with self._lock:
                batch, self._buffer = self._buffer, []
            if not batch:
                return 0
            try:
                self.store.append_decisions(batch)
            except Exception as exc:  # the database may be down: keep the records, say so, try again later
                with self._lock:
                    self._buffer[:0] = batch
                self._failed(exc, len(batch))
                return 0
            if self._failing_since is not None:
                log.warning(
                    "decision log: the database takes records again (%.0f s after the first failure)",
                    time.monotonic() - self._failing_since,
                )
                self._failing_since = None
            return len(batch)

    def close(self) -> None:
        """Stop the background thread and write what is buffered (call on shutdown)."""
        with self._lock:
            worker = self._worker
            self._stop.set()
        if worker is not None:
            worker.join()
        self.flush()

    def _run(self) -> None:
        while True:
            stopping = self._stop.wait(self.flush_seconds)
            if not stopping:
                self.flush()
            with self._lock:
                if stopping or not self._buffer:
                    self._worker = None  # record() starts a new thread when the next record comes
                    return

    def _failed(self, exc: Exception, count: int) -> None:
        # The message names the error's type and its first line only: SQLAlchemy appends the statement's
        # parameters (whole item lists) to its messages. No token secret is ever in a record.
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
        elif now - self._failure_logged < _REPEAT_FAILURE_LOG_SECONDS:
            return
        self._failure_logged = now
        text = str(getattr(exc, "orig", None) or exc).strip()
        summary = text.splitlines()[0][:300] if text else ""
        log.error(
            "decision log: could not write %d records (%s: %s); they are kept and retried every %g s",
            count,
            type(exc).__name__,
            summary,
            self.flush_seconds,
        )


def all_decisions(
    store: DecisionStore, after_seq: int = 0, batch: int = 100, upto: int | None = None
) -> Iterator[Decision]:
    """Every decision record after `after_seq` (up to `upto`), in seq order, read `batch` at a time (constant
    memory)."""
    while True:
        page = store.decisions(after_seq, batch)
        for record in page:
            if upto is not None and record.seq > upto:
                return
            yield record
        if len(page) < batch:
            return
        after_seq = page[-1].seq


def describe(record: Decision, key_ids: Mapping[int, str], shown: int = 3) -> str:
    """One tab-separated line for people: seq, time, nation, token key id, path, collection, items."""
    ids = ", ".join(item[0] for item in record.items[:shown])
    more = ", …" if len(record.items) > shown else ""
    token = key_ids.get(record.token_id, f"#{record.token_id}")
    collection = record.collection or "-"
    return (
        f"{record.seq}\t{format_timestamp(record.at)}\t{record.nation}\t{token}\t{record.path}\t{collection}"
        f"\t{len(record.items)} items: {ids}{more}"
    )


def as_json(record: Decision, key_ids: Mapping[int, str]) -> dict[str, Any]:
    """Everything in a record, for `relto audit show --json` (the token's key id added when known)."""
    return {
        "seq": record.seq,
        "at": format_timestamp(record.at),
        "at_micros": record.at,
        "token_id": record.token_id,
        "token_key_id": key_ids.get(record.token_id),
        "nation": record.nation,
        "path": record.path,
        "collection": record.collection,
        "items": [list(item) for item in record.items],
        "format": record.format,
        "refs": list(record.full_refs) if record.format != 1 else None,
        "digest": record.digest or None,
        "prev_hash": record.prev_hash,
        "hash": record.hash,
    }
