"""The publisher: checks, marks and appends a posted envelope's objects, and builds its TAXII status."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson

from relto.domain.audit import Item
from relto.domain.errors import InvalidObject
from relto.domain.markings import MarkingMeaning
from relto.domain.parties import Party
from relto.domain.stix import check_object
from relto.domain.timestamps import now_micros
from relto.node.markings import MarkingResolver
from relto.store.base import Appended, NewVersion, StatusRow, VersionStore
from relto.taxii import envelopes

Record = Callable[[Party, str, str, Iterable[Item], Sequence[int]], None]  # Node.record: items, their refs


class Publisher:
    """The one write path for objects: every version joins the publisher's own copy of its id."""

    def __init__(self, versions: VersionStore, resolver: MarkingResolver, record: Record, ring: Callable[[str], None]):
        self.versions = versions
        self.resolver = resolver
        self.record = record
        self.ring = ring

    def publish(self, party: Party, collection_id: str, objects: Sequence[Any]) -> dict[str, Any]:
        """Check, mark and store the objects (the caller checked the party may write to the collection);
        return the TAXII status, already stored with them."""
        request_time = now_micros()
        failures, accepted = self._mark(party, objects)
        status_id = str(uuid.uuid4())
        result: dict[str, Any] = {}
        refused: list[tuple[str, str | None]] = [(f["id"], f["version"] or None) for f in failures]

        def status_row(appended: Appended) -> StatusRow:
            successes = []
            failed = list(failures)
            for i, (v, new) in enumerate(zip(accepted, appended.stored, strict=True)):
                entry = {"id": v.stix_id, "version": envelopes.taxii_version(v.version_text, appended.date_added[i])}
                if i in appended.refused:
                    failed.append({**entry, "message": appended.refused[i]})
                    refused.append((v.stix_id, v.version_text))
                    continue
                successes.append({**entry, "message": "stored" if new else "already stored: a no-op"})
            result.update(envelopes.status(status_id, request_time, successes, failed))
            return StatusRow(status_id, party.token_id, request_time, orjson.dumps(result))

        appended = self.versions.append(collection_id, accepted, status_row, gate=self.resolver.gate(party))
        written: list[Item] = []
        noop: list[Item] = []
        written_seqs: list[int] = []
        noop_seqs: list[int] = []
        seqs = appended.seqs or [0] * len(accepted)
        for i, (v, new, seq) in enumerate(zip(accepted, appended.stored, seqs, strict=True)):
            if new:
                written.append((v.stix_id, v.version_text))
                written_seqs.append(seq)
            elif i not in appended.refused:
                noop.append((v.stix_id, v.version_text))
                noop_seqs.append(seq)
        if written:
            self.ring(collection_id)
            self.record(party, "publish", collection_id, written, written_seqs)
        if noop:
            self.record(party, "publish.noop", collection_id, noop, noop_seqs)
        if refused:
            self.record(party, "publish.refused", collection_id, refused, ())
        return result

    def _mark(self, party: Party, objects: Sequence[Any]) -> tuple[list[dict[str, str]], list[NewVersion]]:
        """The failures (checks and markings), and the versions to append, marked."""
        # Marking definitions first, so objects in the same envelope may reference them.
        order = sorted(range(len(objects)), key=lambda i: _type_of(objects[i]) != "marking-definition")
        failures: list[dict[str, str]] = []
        accepted: list[NewVersion] = []
        pending: dict[str, MarkingMeaning] = {}
        for i in order:
            try:
                accepted.append(self.mark_one(party, objects[i], pending))
            except InvalidObject as exc:
                failures.append(_failure(objects[i], exc.message))
        return failures, accepted

    def mark_one(
        self, party: Party, obj: Any, pending: dict[str, MarkingMeaning], path: str | None = None
    ) -> NewVersion:
        """One object checked and marked as `party`'s (its nation's copy); InvalidObject says why not.
        `pending`: the meanings of definitions met so far in the envelope; `path`: a received version's."""
        checked = check_object(obj)
        # A copy the size of the object: orjson's own result keeps a larger buffer, which adds up over
        # an envelope of small objects (docs/configuration.md, the memory ceiling).
        body = bytes(memoryview(orjson.dumps(obj)))
        if checked.type == "marking-definition":
            set_id, shape = self.resolver.for_definition(party, obj, checked, pending), None
        else:
            set_id, shape = self.resolver.for_object(party, obj, checked, pending)
        return NewVersion(
            checked.id,
            checked.type,
            checked.spec_version,
            checked.version,
            checked.version_text,
            set_id,
            body,
            shape,
            obj.get("revoked") is True,
            party.nation,
            path,
        )


def _type_of(obj: Any) -> Any:
    return obj.get("type") if isinstance(obj, dict) else None


def _failure(obj: Any, message: str) -> dict[str, str]:
    entry = {"id": "", "version": "", "message": message}
    if isinstance(obj, dict):
        if isinstance(obj.get("id"), str):
            entry["id"] = obj["id"]
        version = obj.get("modified", obj.get("created"))
        if isinstance(version, str):
            entry["version"] = version
    return entry
