"""The node: every publish and read goes through here, and every read asks the one policy engine.

The API layer turns HTTP into calls on Node; the CLI builds a Node on a Store. Node holds the caches that
make the policy cheap (marking sets, communities, compiled visibility per party), each refreshed when the
store says it changed, so several processes on one database stay consistent.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from relto.domain import policy
from relto.domain.communities import Community, membership_index
from relto.domain.errors import Forbidden, InvalidObject, NotFound, Unauthenticated
from relto.domain.levels import Ladder
from relto.domain.markings import (
    TLP_BY_ID,
    MarkingMeaning,
    MarkingSet,
    combine,
    interpret_marking_definition,
)
from relto.domain.parties import Party
from relto.domain.stix import check_object
from relto.domain.timestamps import now_micros
from relto.domain.tokens import secret_matches, split_token
from relto.settings import Settings
from relto.store.base import (
    Appended,
    CollectionRecord,
    NewVersion,
    StatusRow,
    Store,
    StoredVersion,
    VersionQuery,
)
from relto.taxii import envelopes
from relto.taxii.filters import Filters, encode_cursor

_TOKEN_TTL = 1.0  # seconds a verified token is trusted before the store is asked again
_POLICY_CHECK = 0.25  # seconds between checks for marking-set and community changes


@dataclass(frozen=True)
class Page:
    """One page of a read: the versions, whether more follow, and the cursor to get them."""

    rows: list[StoredVersion]
    more: bool
    next: str | None


class Node:
    """One relto node on one store."""

    def __init__(self, store: Store, settings: Settings | None = None) -> None:
        self.store = store
        self.settings = settings or Settings()
        self.info = store.node_info()
        self.ladder = Ladder.of(self.info.levels)
        self._lock = threading.Lock()
        self._sets: dict[int, MarkingSet] = {}
        # marking set key (or (nation, refs as written)) -> marking set id
        self._set_keys: dict[str | tuple[str, tuple[str, ...]], int] = {}
        self._communities: list[Community] = []
        self._generation = (-1, -1)
        self._checked = 0.0
        self._max_set = 0
        # Called with a collection id after each committed write: the live stream's in-process doorbell.
        self.on_write: list[Callable[[str], None]] = []
        self._compiled: dict[tuple[str, int, str], frozenset[int]] = {}
        self._meanings: dict[str, MarkingMeaning] = {}
        self._tokens: dict[str, tuple[float, Party | None, str]] = {}
        self._collections: dict[str, CollectionRecord] = {}

    # parties ------------------------------------------------------------------------------------------
    def authenticate(self, token: str | None) -> Party:
        """The party holding this token; Unauthenticated if it is missing, unknown or revoked."""
        if not token:
            raise Unauthenticated("send a token: 'Authorization: Bearer TOKEN' or HTTP Basic with it as password")
        parts = split_token(token)
        if parts is None:
            raise Unauthenticated("the token is not valid")
        key_id, secret = parts
        now = time.monotonic()
        cached = self._tokens.get(key_id)
        if cached is None or now - cached[0] > _TOKEN_TTL:
            record = self.store.token(key_id)
            party = None
            stored_hash = "0" * 64
            if record is not None and record.revoked is None:
                stored_hash = record.secret_hash
                party = Party(
                    token_id=record.id,
                    nation=record.nation,
                    clearance=self.ladder.rank(record.clearance),
                    organisation=record.organisation,
                    name=record.name,
                    admin=record.admin,
                    can_write=record.can_write,
                )
            cached = (now, party, stored_hash)
            self._tokens[key_id] = cached
        _, party, stored_hash = cached
        # Compare even when the key id is unknown, so timing does not tell which key ids exist.
        if not secret_matches(secret, stored_hash) or party is None:
            raise Unauthenticated("the token is not valid (unknown, mistyped or revoked)")
        return party

    # policy -------------------------------------------------------------------------------------------
    def _refresh(self, force: bool = False) -> None:
        """Pick up marking sets and community changes made by this or another process.

        Asked at most every _POLICY_CHECK seconds unless forced: a reader that meets a marking set newer than
        its compiled policy forces it, so only community changes can be that late.
        """
        now = time.monotonic()
        if not force and now - self._checked < _POLICY_CHECK:
            return
        self._checked = now
        generation = self.store.policy_generation()
        if generation == self._generation:
            return
        with self._lock:
            if generation[0] != self._generation[0]:
                for ms in self.store.marking_sets(after_id=self._max_set):
                    self._sets[ms.id] = ms
                self._max_set = max(self._sets, default=0)
            if generation[1] != self._generation[1]:
                self._communities = self.store.communities()
            self._compiled.clear()
            self._generation = generation

    @property
    def known_max_set(self) -> int:
        """The newest marking set the compiled policy knows."""
        return self._max_set

    def visible_sets(self, party: Party, refresh: bool = False) -> frozenset[int]:
        """The marking sets this party may read today: the one policy engine, compiled and cached."""
        self._refresh(force=refresh)
        today = datetime.now(UTC).date()
        key = (party.nation, party.clearance, today.isoformat())
        compiled = self._compiled.get(key)
        if compiled is None:
            members = membership_index(self._communities, today)
            compiled = policy.visible_sets(party.nation, party.clearance, self._sets.values(), members)
            self._compiled[key] = compiled
        return compiled

    def marking_set(self, set_id: int) -> MarkingSet:
        """A marking set by id."""
        if set_id not in self._sets:
            self._refresh(force=True)
        return self._sets[set_id]

    def put_community(self, community: Community) -> None:
        """Create or replace a community; this process's policy follows at once, others' within a second."""
        self.store.put_community(community)
        self._refresh(force=True)

    def _rang(self, collection_id: str) -> None:
        for ring in self.on_write:
            ring(collection_id)

    # collections --------------------------------------------------------------------------------------
    def collections(self) -> list[CollectionRecord]:
        """All collections, sorted by id (every party may read and write every collection)."""
        return self.store.collections()

    def collection(self, collection_id: str) -> CollectionRecord:
        """One collection, or NotFound (collections are never deleted, so found ones are cached)."""
        record = self._collections.get(collection_id)
        if record is None:
            record = self.store.collection(collection_id)
            if record is None:
                raise NotFound(f"no collection {collection_id!r} on this node; list them at collections/")
            self._collections[collection_id] = record
        return record

    def add_collection(self, title: str, description: str = "") -> CollectionRecord:
        """Create a collection with a new random id."""
        record = CollectionRecord(id=str(uuid.uuid4()), title=title, description=description, created=now_micros())
        self.store.add_collection(record)
        return record

    # publish ------------------------------------------------------------------------------------------
    def publish(self, party: Party, collection_id: str, objects: Sequence[Any]) -> dict[str, Any]:
        """Check, mark and store a posted envelope's objects; return the TAXII status (already stored)."""
        if not party.can_write:
            raise Forbidden("this token may read but not publish")
        self.collection(collection_id)
        request_time = now_micros()
        # Marking definitions first, so objects in the same envelope may reference them.
        order = sorted(range(len(objects)), key=lambda i: _type_of(objects[i]) != "marking-definition")
        failures: list[dict[str, str]] = []
        accepted: list[NewVersion] = []
        pending_meanings: dict[str, MarkingMeaning] = {}
        for i in order:
            obj = objects[i]
            try:
                checked = check_object(obj)
                if checked.type == "marking-definition":
                    meaning = interpret_marking_definition(obj, self.ladder)
                    set_id = self._set_for_definition(party, checked.marking_refs, meaning, pending_meanings)
                    pending_meanings[checked.id] = meaning
                else:
                    set_id = self._set_for(party, checked.marking_refs, pending_meanings)
                body = orjson.dumps(obj)
            except InvalidObject as exc:
                failures.append(_failure(obj, exc.message))
                continue
            accepted.append(
                NewVersion(
                    checked.id, checked.type, checked.spec_version, checked.version, checked.version_text, set_id, body
                )
            )
        status_id = str(uuid.uuid4())
        result: dict[str, Any] = {}

        def status_row(appended: Appended) -> StatusRow:
            successes = []
            for v, new in zip(accepted, appended.stored, strict=True):
                message = "stored" if new else "already stored: a no-op"
                successes.append({"id": v.stix_id, "version": v.version_text or "", "message": message})
            result.update(envelopes.status(status_id, request_time, successes, failures))
            return StatusRow(status_id, party.token_id, request_time, orjson.dumps(result))

        appended = self.store.append(collection_id, accepted, status_row)
        if any(appended.stored):
            self._rang(collection_id)
        for v, new in zip(accepted, appended.stored, strict=True):
            if new and v.type == "marking-definition":
                self._meanings.setdefault(v.stix_id, pending_meanings[v.stix_id])
        return result

    def _meaning(self, ref: str, pending: dict[str, MarkingMeaning]) -> MarkingMeaning:
        if ref in pending:
            return pending[ref]
        meaning = self._meanings.get(ref)
        if meaning is not None:
            return meaning
        if ref in TLP_BY_ID:
            meaning = MarkingMeaning("tlp", tlp=TLP_BY_ID[ref])
        else:
            body = self.store.marking_definitions([ref]).get(ref)
            if body is None:
                raise InvalidObject(
                    f"unknown marking-definition {ref}: publish its definition first or in the same envelope"
                )
            meaning = interpret_marking_definition(orjson.loads(body), self.ladder)
        self._meanings[ref] = meaning
        return meaning

    def _set_for(self, party: Party, refs: tuple[str, ...], pending: dict[str, MarkingMeaning]) -> int:
        fast = self._set_keys.get((party.nation, refs))
        if fast is not None and not any(r in pending for r in refs):
            return fast
        ordered = sorted(set(refs))
        meanings = [self._meaning(r, pending) for r in ordered]
        rank, rel_to, tlp = combine(meanings, self.ladder)
        key = f"{party.nation}|{','.join(ordered)}"
        found = self._set_id(key, MarkingSet(0, party.nation, rank, rel_to, tlp))
        self._set_keys[(party.nation, refs)] = found
        return found

    def _set_for_definition(
        self, party: Party, refs: tuple[str, ...], meaning: MarkingMeaning, pending: dict[str, MarkingMeaning]
    ) -> int:
        """A marking definition is readable by whoever its own marking admits (TLP ones by everyone)."""
        if meaning.kind == "tlp":
            return self._set_id("public", MarkingSet(0, party.nation, 0, None, None, public=True))
        if meaning.kind == "releasability":
            rank, rel_to, _ = combine([meaning], self.ladder)
            assert meaning.releasability is not None
            groups = ",".join("+".join(g) for g in rel_to or ())
            key = f"{party.nation}|self:{meaning.releasability.classification}:{groups}"
            return self._set_id(key, MarkingSet(0, party.nation, rank, rel_to, None))
        return self._set_for(party, refs, pending)

    def _set_id(self, key: str, template: MarkingSet) -> int:
        found = self._set_keys.get(key)
        if found is None:
            found = self.store.marking_set_id(key, template)
            self._set_keys[key] = found
            if found > self._max_set:
                self._checked = 0.0  # our next read recompiles the policy with this set
        return found

    # read ---------------------------------------------------------------------------------------------
    def _query(self, party: Party, collection_id: str, filters: Filters, **overrides: Any) -> VersionQuery:
        self.collection(collection_id)
        fields: dict[str, Any] = {
            "collection": collection_id,
            "visible": self.visible_sets(party),
            "after_seq": filters.after_seq,
            "added_after": filters.added_after,
            "ids": filters.ids,
            "types": filters.types,
            "spec_versions": filters.spec_versions,
            "versions": filters.versions,
            "limit": filters.limit + 1,
            "known_max_set": max(self._sets, default=0),
        }
        fields.update(overrides)
        return VersionQuery(**fields)

    def read(self, party: Party, collection_id: str, filters: Filters, **overrides: Any) -> Page:
        """One page of versions this party may see, newest visible version per object unless asked."""
        while True:
            query = self._query(party, collection_id, filters, **overrides)
            rows = self.store.read(query)
            if query.known_max_set is None or all(r.marking_set <= query.known_max_set for r in rows):
                break
            # A marking set created since our policy was compiled (maybe by another process): recompile
            # and ask again, rather than page past versions the party may be allowed to see.
            self._refresh(force=True)
        more = len(rows) > filters.limit
        rows = rows[: filters.limit]
        return Page(rows, more, encode_cursor(rows[-1].seq) if more else None)

    def read_object(self, party: Party, collection_id: str, object_id: str, filters: Filters) -> Page:
        """Versions of one object; NotFound when it does not exist or none of it is visible."""
        page = self.read(party, collection_id, filters, ids=(object_id,))
        if not page.rows and filters.after_seq == 0:
            self._exists_visible(party, collection_id, object_id)
        return page

    def object_versions(self, party: Party, collection_id: str, object_id: str, filters: Filters) -> Page:
        """The versions of one object visible to this party."""
        page = self.read(party, collection_id, filters, ids=(object_id,), versions=("all",))
        if not page.rows and filters.after_seq == 0:
            self._exists_visible(party, collection_id, object_id)
        return page

    def _exists_visible(self, party: Party, collection_id: str, object_id: str) -> None:
        probe = VersionQuery(
            collection=collection_id, visible=self.visible_sets(party), ids=(object_id,), versions=("all",), limit=1
        )
        if not self.store.read(probe):
            raise NotFound(f"no object {object_id} in this collection")

    def delete_object(self, party: Party, collection_id: str, object_id: str, filters: Filters) -> int:
        """Delete versions of one object: admins, or the originating nation for its own versions."""
        if not party.admin and not party.can_write:
            raise Forbidden("this token may not delete objects")
        query = self._query(party, collection_id, filters, ids=(object_id,), after_seq=0)
        rows = self.store.read(query)
        if not rows:
            raise NotFound(f"no object {object_id} in this collection")
        if not party.admin:
            foreign = [r for r in rows if self.marking_set(r.marking_set).originator != party.nation]
            if foreign:
                raise Forbidden("only an admin or the originating nation may delete these versions")
        deleted = self.store.delete(query)
        self._rang(collection_id)
        return deleted

    # statuses -----------------------------------------------------------------------------------------
    def status(self, party: Party, status_id: str) -> bytes:
        """A status resource: to the token that posted, or an admin."""
        found = self.store.status(status_id)
        if found is None or (found[0] != party.token_id and not party.admin):
            raise NotFound(f"no status {status_id} for this token")
        return found[1]

    def purge_statuses(self) -> int:
        """Forget statuses past the retention period."""
        keep = self.settings.status_retention_hours * 3600 * 1_000_000
        return self.store.purge_statuses(now_micros() - keep)


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
