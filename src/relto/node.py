"""The node: every publish and read goes through here, and every read asks the one policy engine.

The API layer turns HTTP into calls on Node; the CLI builds a Node on a Store. Node holds the caches that
make the policy cheap (marking sets, communities, compiled visibility per party), each refreshed when the
store says it changed, so several processes on one database stay consistent.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson

from relto.decisions import DecisionLog
from relto.domain import policy, redact
from relto.domain.communities import Community, membership_index
from relto.domain.errors import (
    ConfigurationError,
    Forbidden,
    InvalidObject,
    InvalidRequest,
    NotFound,
    Unauthenticated,
)
from relto.domain.levels import Ladder
from relto.domain.markings import (
    TLP_BY_ID,
    MarkingMeaning,
    MarkingSet,
    combine,
    interpret_marking_definition,
)
from relto.domain.parties import Party, check_nation
from relto.domain.stix import SCO_TYPES, Checked, check_object
from relto.domain.timestamps import now_micros
from relto.domain.tokens import secret_matches, split_token
from relto.settings import Settings
from relto.store.base import (
    Appended,
    CollectionRecord,
    Gate,
    Holding,
    NewVersion,
    StatusRow,
    Store,
    StoredVersion,
    VersionQuery,
)
from relto.taxii import envelopes
from relto.taxii.cursors import Cursors, new_key
from relto.taxii.filters import Filters

_ABOVE_YOU = "this nation would receive a version of the object that is above your own view"
_TOKEN_TTL = 1.0  # seconds a verified token is trusted before the store is asked again
_TOKEN_CACHE = 4096  # token key ids remembered (known or not); the least recently used go first
_POLICY_CHECK = 0.25  # seconds between checks for marking-set and community changes
_PAGE_EXAMINE = 10  # a page reads on past withheld versions, up to this many times its limit


class Candidate(Protocol):
    """A stored version or tombstone as the release step needs it (StoredVersion and Event are ones).

    A tombstone has no body; its `skeleton` stands in for it when judging whether it was released."""

    @property
    def stix_id(self) -> str: ...
    @property
    def body(self) -> bytes | None: ...
    @property
    def shape(self) -> bytes | None: ...
    @property
    def originator(self) -> str: ...
    @property
    def copy_rank(self) -> int: ...
    @property
    def shared(self) -> bool: ...


@dataclass(frozen=True)
class Page:
    """One page of a read: the versions released, their bodies as released, whether more follow, and the
    cursor to get them (a page holds fewer than `limit` versions only when it ends, or when it read on past
    withheld versions as far as one request may). `last_date_added` is how far the read got."""

    rows: list[StoredVersion]
    bodies: list[bytes]
    more: bool
    next: str | None
    last_date_added: int | None = None


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
        # (publishing nation, marking ref) -> what the ref means in that nation's objects
        self._meanings: dict[tuple[str, str], MarkingMeaning] = {}
        self._tokens: OrderedDict[str, tuple[float, Party | None, str]] = OrderedDict()
        self._token_lock = threading.Lock()
        self._collections: dict[str, CollectionRecord] = {}
        # Seals every cursor this node hands out (TAXII `next`, stream ids): nothing in one can be read.
        self.cursors = Cursors(store.secret("cursor", new_key))
        # Every release and write is recorded here (the tamper-evident decision log).
        self.decisions = DecisionLog(
            store,
            enabled=bool(self.settings.decision_log),
            flush_seconds=self.settings.decision_log_flush_ms / 1000,
        )

    def close(self) -> None:
        """Write the decision log's last records and release the store's connections."""
        self.decisions.close()
        self.store.close()

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
        with self._token_lock:
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
            with self._token_lock:
                self._tokens[key_id] = cached
                self._tokens.move_to_end(key_id)
                while len(self._tokens) > _TOKEN_CACHE:  # unknown key ids must not grow memory forever
                    self._tokens.popitem(last=False)
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
        """Check, mark and store a posted envelope's objects; return the TAXII status (already stored).

        Every version joins the publisher's own copy of its id (docs/security.md): a nation may not add
        versions to an object another nation published first, and nothing it is told depends on what is
        hidden from it.
        """
        if not party.can_write:
            self.decisions.record(party, "refused.publish", collection_id, [])
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
                # A copy the size of the object: orjson's own result keeps a larger buffer, which adds up over
                # an envelope of small objects (docs/configuration.md, the memory ceiling).
                body = bytes(memoryview(orjson.dumps(obj)))
                if checked.type == "marking-definition":
                    meaning = interpret_marking_definition(obj, self.ladder)
                    self._check_unchanged(party, checked.id, obj)
                    set_id = self._set_for_definition(party, checked.marking_refs, meaning, pending_meanings)
                    pending_meanings[checked.id] = meaning
                    shape = None
                else:
                    set_id, shape = self._sets_for_object(party, obj, checked, pending_meanings)
            except InvalidObject as exc:
                failures.append(_failure(obj, exc.message))
                continue
            accepted.append(
                NewVersion(
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
                )
            )
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

        appended = self.store.append(collection_id, accepted, status_row, gate=self._gate(party))
        written, noop = [], []
        for i, (v, new) in enumerate(zip(accepted, appended.stored, strict=True)):
            if new:
                written.append((v.stix_id, v.version_text))
            elif i not in appended.refused:
                noop.append((v.stix_id, v.version_text))
        if written:
            self._rang(collection_id)
            self.decisions.record(party, "publish", collection_id, written)
        if noop:
            self.decisions.record(party, "publish.noop", collection_id, noop)
        if refused:
            self.decisions.record(party, "publish.refused", collection_id, refused)
        return result

    def _gate(self, party: Party) -> Gate:
        """The ownership rule, asked by the store inside the write transaction for each new version whose id
        other nations hold: an object belongs to the nation that published it first (DESIGN invariant 9).

        A nation with a copy of its own adds to it. A nation without one is refused only if it may see
        another nation's version of the id: then the refusal tells it nothing it could not read. If every
        other copy is hidden from it, its version starts its own copy, exactly as if the id were new
        (invariant 11); readers who may see several copies are shown one (see `release`). Observables and
        marking definitions (ids derived from their contents) always go to the publisher's own copy.
        """
        visible = self.visible_sets(party)

        def gate(v: NewVersion, holdings: Sequence[Holding]) -> str | None:
            if v.type == "marking-definition" or v.type in SCO_TYPES or v.version_text is None:
                return None
            if any(h.originator == v.originator for h in holdings):
                return None
            owners = sorted({h.originator for h in holdings if h.marking_set in visible})
            if not owners:
                return None
            return (
                f"not stored: {v.stix_id} belongs to {' and '.join(owners)}, the nation that published it first;"
                " only it may add versions or revoke it (STIX 2.1: only an object's creator versions it)."
                " Publish your own object under a new id and relate it to this one"
            )

        return gate

    def _check_unchanged(self, party: Party, definition_id: str, obj: dict[str, Any]) -> None:
        """A nation's stored marking definition never changes (STIX 2.1 does not version definitions)."""
        for d in self.store.definitions([definition_id]):
            if d.originator == party.nation and orjson.loads(d.body) != obj:
                raise InvalidObject(
                    f"not stored: marking definitions are immutable (STIX 2.1 does not version them), and "
                    f"{definition_id} is already stored with other contents; use a new id for new contents"
                )

    def _meaning(self, ref: str, party: Party, pending: dict[str, MarkingMeaning]) -> MarkingMeaning:
        """What a marking ref means in this party's objects.

        From the envelope, else the nation's own stored definition, else, for TLP and relto's self-verifying
        markings (whose id is derived from their contents), any copy the party may see. A definition another
        nation stored and this party may not see answers like one the node never received.
        """
        if ref in pending:
            return pending[ref]
        key = (party.nation, ref)
        meaning = self._meanings.get(key)
        if meaning is not None:
            return meaning
        if ref in TLP_BY_ID:
            meaning = MarkingMeaning("tlp", tlp=TLP_BY_ID[ref])
        else:
            copies = self.store.definitions([ref])
            own = next((d for d in copies if d.originator == party.nation), None)
            if own is not None:
                meaning = interpret_marking_definition(orjson.loads(own.body), self.ladder)
            else:
                visible = self.visible_sets(party)
                for d in copies:
                    if d.marking_set in visible:
                        found = interpret_marking_definition(orjson.loads(d.body), self.ladder)
                        if found.self_verifying:
                            meaning = found
                            break
            if meaning is None:
                raise InvalidObject(
                    f"unknown marking-definition {ref}: publish its definition first or in the same envelope"
                )
        if len(self._meanings) > 100_000:
            self._meanings.clear()
        self._meanings[key] = meaning
        return meaning

    def _set_for(
        self, party: Party, refs: tuple[str, ...], pending: dict[str, MarkingMeaning], closed: bool = False
    ) -> int:
        """The marking set of these refs published by this party; `closed`: whatever the refs say, the
        originator only (the object itself carries no REL TO, so none of its parts can be wider)."""
        nation = f"{party.nation}|closed" if closed else party.nation
        fast = self._set_keys.get((nation, refs))
        if fast is not None and not any(r in pending for r in refs):
            return fast
        ordered = sorted(set(refs))
        meanings = [self._meaning(r, party, pending) for r in ordered]
        rank, rel_to, tlp = combine(meanings, self.ladder)
        key = f"{nation}|{','.join(ordered)}"
        found = self._set_id(key, MarkingSet(0, party.nation, rank, None if closed else rel_to, tlp))
        self._set_keys[(nation, refs)] = found
        return found

    def _releasable_at_all(self, party: Party, refs: tuple[str, ...], pending: dict[str, MarkingMeaning]) -> bool:
        """Whether these (object-level) refs include a REL TO: without one, only the originator may read."""
        for ref in refs:
            meaning = self._meaning(ref, party, pending)
            if meaning.releasability is not None and meaning.releasability.rel_to is not None:
                return True
        return False

    def _sets_for_object(
        self, party: Party, obj: dict[str, Any], checked: Checked, pending: dict[str, MarkingMeaning]
    ) -> tuple[int, bytes | None]:
        """The version's marking set, and its stored shape: the marking set of each field marked narrower.

        The version's set is its object markings plus the granular markings on whole required properties
        (a party that may not see those cannot receive the version at all).
        """
        analysis = redact.analyse(obj)
        if not obj.get("granular_markings"):
            set_id = self._set_for(party, checked.marking_refs, pending)
            return set_id, redact.Shape((), analysis.references, analysis.endpoints, analysis.nested).encode()
        # Every part of an object without a REL TO of its own is for the originator only (fail closed): a
        # granular marking can narrow a field, never widen it.
        closed = not self._releasable_at_all(party, checked.object_markings, pending)
        whole = list(checked.object_markings)
        for f in analysis.fields:
            if f.whole_required:
                whole.extend(f.refs)
        set_id = self._set_for(party, tuple(dict.fromkeys(whole)), pending, closed)
        fields = []
        for f in analysis.fields:
            refs = tuple(dict.fromkeys((*checked.object_markings, *f.refs)))
            field_set = self._set_for(party, refs, pending, closed)
            if field_set != set_id and not f.whole_required:
                fields.append((field_set, f.selector))
        shape = redact.Shape(tuple(fields), analysis.references, analysis.endpoints, analysis.nested)
        return set_id, shape.encode()

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
            limit = self.settings.max_marking_sets_per_nation
            made = self.store.marking_set_id(key, template, limit=limit)
            if made is None:
                raise InvalidObject(
                    f"not stored: {template.originator} already has {limit} marking sets (distinct combinations "
                    "of markings) on this node, the most one nation may make (max_marking_sets_per_nation); "
                    "reuse a combination already in use, or ask the operator to raise the limit"
                )
            found = made
            self._set_keys[key] = found
            if found > self._max_set:
                self._checked = 0.0  # our next read recompiles the policy with this set
        return found

    # read ---------------------------------------------------------------------------------------------
    def _query(
        self, party: Party, collection_id: str, filters: Filters, after: int | None = None, **overrides: Any
    ) -> VersionQuery:
        self.collection(collection_id)
        if after is None:
            after = filters.after_seq
            if filters.next is not None:
                after = max(after, self.cursors.open(filters.next, collection_id))
        fields: dict[str, Any] = {
            "collection": collection_id,
            "visible": self.visible_sets(party),
            "after_seq": after,
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

    def read(
        self, party: Party, collection_id: str, filters: Filters, *, path: str = "taxii.objects", **overrides: Any
    ) -> Page:
        """One page of versions released to this party, newest visible version per object unless asked.

        `path` names the exit path in the decision log.
        """
        page = self._page(party, collection_id, filters, **overrides)
        if page.rows:
            self.decisions.record(party, path, collection_id, [(r.stix_id, r.version_text) for r in page.rows])
        return page

    def _page(self, party: Party, collection_id: str, filters: Filters, **overrides: Any) -> Page:
        """Read on until `limit` versions are released, the collection ends, or the read has examined
        _PAGE_EXAMINE times the limit: withheld versions never make a page come back empty with more to come
        (an `added_after` client would ask for it again forever), nor show how many were withheld."""
        limit = filters.limit
        kept: list[tuple[StoredVersion, bytes]] = []
        after: int | None = None
        examined, more, last_added = 0, False, None
        while True:
            want = limit - len(kept)
            while True:
                query = self._query(party, collection_id, filters, after, **{**overrides, "limit": want + 1})
                rows = self.store.read(query)
                if query.known_max_set is None or all(r.marking_set <= query.known_max_set for r in rows):
                    break
                # A marking set created since our policy was compiled (maybe by another process): recompile
                # and ask again, rather than page past versions the party may be allowed to see.
                self._refresh(force=True)
            more = len(rows) > want
            rows = rows[:want]
            if not rows:
                break
            after, last_added = rows[-1].seq, rows[-1].date_added
            examined += len(rows)
            released = self.release(party, collection_id, rows)
            kept.extend((r, b) for r, b in zip(rows, released, strict=True) if b is not None)
            # Past the bound a page ends as soon as it holds something: never empty while more follow (a
            # client would ask again from the same place, or page on with limit 0, as taxii2-client does).
            if not more or len(kept) >= limit or (kept and examined >= limit * _PAGE_EXAMINE):
                break
        cursor = self.cursors.seal(after, collection_id) if more and after is not None else None
        return Page([r for r, _ in kept], [b for _, b in kept], more, cursor, last_added)

    def read_object(self, party: Party, collection_id: str, object_id: str, filters: Filters) -> Page:
        """Versions of one object; NotFound when it does not exist or none of it is released to the party."""
        page = self.read(party, collection_id, filters, path="taxii.object", ids=(object_id,))
        if not page.rows and filters.next is None:
            self._exists_released(party, collection_id, object_id)
        return page

    def object_versions(self, party: Party, collection_id: str, object_id: str, filters: Filters) -> Page:
        """The versions of one object released to this party."""
        page = self.read(party, collection_id, filters, path="taxii.versions", ids=(object_id,), versions=("all",))
        if not page.rows and filters.next is None:
            self._exists_released(party, collection_id, object_id)
        return page

    def _exists_released(self, party: Party, collection_id: str, object_id: str) -> None:
        """NotFound unless some version of the object is released to the party (the same answer for an
        object that does not exist, so a 404 reveals nothing)."""
        if not self._released_versions(party, collection_id, object_id):
            raise NotFound(f"no object {object_id} in this collection")

    def _versions_seen(self, party: Party, collection_id: str, object_id: str) -> list[StoredVersion]:
        """Every version of one object whose marking set the party may see (before release), every copy."""
        probe = VersionQuery(
            collection=collection_id, visible=self.visible_sets(party), ids=(object_id,), versions=("all",), limit=1000
        )
        return self.store.read(probe)

    def _released_versions(self, party: Party, collection_id: str, object_id: str) -> list[StoredVersion]:
        rows = self._versions_seen(party, collection_id, object_id)
        return [r for r, b in zip(rows, self.release(party, collection_id, rows), strict=True) if b is not None]

    # release ------------------------------------------------------------------------------------------
    def release(
        self, party: Party, collection_id: str, versions: Sequence[Candidate], read_at: float | None = None
    ) -> list[bytes | None]:
        """What each version is released to this party as, or None when it is withheld.

        The versions have passed the policy filter of the store query. Here (docs/tearlines.md,
        docs/security.md) a party that may see several nations' copies of an id is given one (its own
        nation's, else the first published); fields marked narrower than the party may see are removed, and
        references to objects hidden from it, except in its own nation's versions (it wrote them: trimming
        them would only tell it what the node holds). Most versions need nothing: their stored body goes out
        unparsed. A tombstone (no body) is judged on its skeleton: anything but None means it was released.
        `read_at` (time.monotonic()) is when the versions were read from the store, if known: a policy
        refreshed since then need not be again.
        """
        out: list[bytes | None] = [
            v.body if v.body is not None else (getattr(v, "skeleton", None) or b"{}") for v in versions
        ]
        if any(v.shared for v in versions):
            chosen = self._chosen_copies(party, collection_id, versions)
            out = [
                None if v.shared and chosen.get(v.stix_id) != v.originator else b
                for v, b in zip(versions, out, strict=True)
            ]
        if all(v.shape is None for v in versions):
            return out
        visible = self._sees(party, read_at)
        if visible is None:
            return out
        shapes = [None if v.shape is None else redact.Shape.decode(v.shape) for v in versions]
        foreign = [s if v.originator != party.nation else None for v, s in zip(versions, shapes, strict=True)]
        hidden = self._hidden_in(party, visible, foreign)
        return self._trim(party, versions, out, shapes, visible, hidden)

    def _chosen_copies(self, party: Party, collection_id: str, versions: Sequence[Candidate]) -> dict[str, str]:
        """For each id held by several nations, whose copy this party is shown: its own nation's if it may see
        it, else the first published (lowest rank) of those it may see. Decided from what it may see alone."""
        ids = {v.stix_id for v in versions if v.shared}
        visible = self.visible_sets(party)
        ranks: dict[str, dict[str, int]] = {}
        for v in versions:  # the candidates themselves passed the policy filter (tombstones included)
            if v.shared:
                ranks.setdefault(v.stix_id, {})[v.originator] = v.copy_rank
        for stix_id, hs in self._holdings(ids).items():
            for h in hs:
                if h.collection == collection_id and h.marking_set in visible:
                    ranks.setdefault(stix_id, {})[h.originator] = h.copy_rank
        chosen = {}
        for stix_id, by_nation in ranks.items():
            chosen[stix_id] = (
                party.nation if party.nation in by_nation else min(by_nation, key=lambda n: (by_nation[n], n))
            )
        return chosen

    def _sees(self, party: Party, read_at: float | None = None) -> frozenset[int] | None:
        """The marking sets this party may see, or None when it may see every one."""
        visible = self.visible_sets(party)
        if len(visible) == len(self._sets) and (read_at is None or self._checked < read_at):
            # Seeing every set we know of: make sure no other process made one before the versions were read
            # (one small query; the subscribers of one live feed share it).
            visible = self.visible_sets(party, refresh=True)
        if len(visible) == len(self._sets):
            # A party that may see every marking set sees every object and every field. (The fields' sets
            # were made before their versions were stored, so the refresh above knows them all.)
            return None
        return visible

    def _hidden_in(
        self, party: Party, visible: frozenset[int] | None, shapes: Sequence[redact.Shape | None]
    ) -> set[str]:
        """The ids these shapes reference that are hidden from a party seeing `visible` (None: every set)."""
        wanted = {ref for s in shapes if s is not None for ref in s.references}
        return self._hidden(party, visible, wanted) if wanted and visible is not None else set()

    @staticmethod
    def _trim(
        party: Party,
        versions: Sequence[Candidate],
        bodies: Sequence[bytes | None],
        shapes: Sequence[redact.Shape | None],
        visible: frozenset[int],
        hidden: set[str],
    ) -> list[bytes | None]:
        out: list[bytes | None] = []
        for v, body, shape in zip(versions, bodies, shapes, strict=True):
            if shape is None or body is None:
                out.append(body)
                continue
            fields = [selector for set_id, selector in shape.fields if set_id not in visible]
            ids = hidden.intersection(shape.references) if hidden and v.originator != party.nation else set()
            if not fields and not ids:
                out.append(body)
                continue
            released = redact.redact(orjson.loads(body), fields, ids, nested=shape.nested or v.body is None)
            out.append(None if released is None else orjson.dumps(released))
        return out

    def _hidden(self, party: Party, visible: frozenset[int], ids: set[str]) -> set[str]:
        """The ids among `ids` hidden from a party that sees `visible` (docs/tearlines.md, rules 1 and 2)."""
        holdings = self._holdings(ids)
        hidden = {i for i, hs in holdings.items() if not any(h.marking_set in visible for h in hs)}
        endpoints: dict[str, tuple[str, ...]] = {}
        for stix_id, hs in holdings.items():
            seen = [h for h in hs if h.marking_set in visible and h.type in ("relationship", "sighting")]
            # Rule 2 never hides a party's own relationship from it: it knows what it named.
            if stix_id not in hidden and seen and not any(h.originator == party.nation for h in seen):
                newest = max(seen, key=lambda h: h.version)
                endpoints[stix_id] = redact.Shape.decode(newest.shape).endpoints
        if endpoints:
            unknown = {e for es in endpoints.values() for e in es} - holdings.keys()
            ends = self._holdings(unknown) if unknown else {}
            hidden_ends = hidden | {i for i, hs in ends.items() if not any(h.marking_set in visible for h in hs)}
            hidden.update(i for i, es in endpoints.items() if any(e in hidden_ends for e in es))
        return hidden

    def _holdings(self, ids: set[str]) -> dict[str, list[Holding]]:
        by_id: dict[str, list[Holding]] = {}
        for h in self.store.holdings(sorted(ids)):
            by_id.setdefault(h.stix_id, []).append(h)
        return by_id

    def delete_object(self, party: Party, collection_id: str, object_id: str, filters: Filters) -> int:
        """Delete versions of one object: an admin's view of every copy, or the party's nation's own copy.

        The store deletes exactly what the authorised query matches, so no version is removed that the
        party could not delete (not only the first page of them is checked).
        """
        if not party.admin and not party.can_write:
            self.decisions.record(party, "refused.delete", collection_id, [(object_id, None)])
            raise Forbidden("this token may not delete objects")
        query = self._query(party, collection_id, filters, 0, ids=(object_id,))
        rows = self.store.read(query)
        mine = rows if party.admin else [r for r in rows if r.originator == party.nation]
        if not mine:
            if any(b is not None for b in self.release(party, collection_id, rows)):
                self.decisions.record(party, "refused.delete", collection_id, [(object_id, None)])
                raise Forbidden("only the nation that published this object, or an admin, may delete it")
            raise NotFound(f"no object {object_id} in this collection")
        if not party.admin:
            query = self._query(party, collection_id, filters, 0, ids=(object_id,), originator=party.nation)
        deleted = self.store.delete(query)
        self._rang(collection_id)
        self.decisions.record(party, "delete", collection_id, [(r.stix_id, r.version_text) for r in mine])
        return deleted

    def preview(
        self, requester: Party, collection_id: str, object_id: str, nation: str, clearance: str | None = None
    ) -> dict[str, Any]:
        """What a party of `nation` with `clearance` (default: the top level) would receive of an object.

        For admins, and for the writers of the nation that published a version of it; to anyone else it
        answers as if the object did not exist, or Forbidden when they can see it but are not its author.
        Every preview is recorded in the decision log, whatever it answered.
        """
        path, items = "preview", [(object_id, None)]
        try:
            doc = self._preview(requester, collection_id, object_id, nation, clearance)
            if doc.get("objects"):
                items = [(object_id, doc["objects"][0].get("modified"))]
            return doc
        except Forbidden:
            path = "refused.preview"
            raise
        finally:
            self.decisions.record(requester, path, collection_id, items)

    def _preview(
        self, requester: Party, collection_id: str, object_id: str, nation: str, clearance: str | None
    ) -> dict[str, Any]:
        self.collection(collection_id)
        rows = self._released_versions(requester, collection_id, object_id)
        if not rows:
            raise NotFound(f"no object {object_id} in this collection")
        if not requester.admin:
            authors = {r.originator for r in rows}
            if not requester.can_write or requester.nation not in authors:
                raise Forbidden("only admins and the originating nation's writers may preview an object")
        try:
            level = self.ladder.name(self.ladder.rank(clearance)) if clearance else self.ladder.levels[-1]
            target = Party(token_id=0, nation=check_nation(nation), clearance=self.ladder.rank(level), can_write=False)
        except ConfigurationError as exc:
            raise InvalidRequest(exc.message) from None
        page = self._page(target, collection_id, Filters(limit=1), ids=(object_id,))
        doc: dict[str, Any] = {"id": object_id, "nation": target.nation, "clearance": level, "released": False}
        if not page.rows:
            return {**doc, "objects": []}
        # The preview shows the requester nothing it may not see itself: what the target receives, cut again
        # by the requester's own view (noted when that removes anything).
        row = page.rows[0]
        if row.marking_set not in self.visible_sets(requester):
            return {**doc, "released": True, "objects": [], "note": _ABOVE_YOU}
        shape = redact.Shape.decode(row.shape)
        target_sets, my_sets = self._sees(target), self._sees(requester)
        cut: bytes | None = row.body
        if target_sets is not None or my_sets is not None:
            every = frozenset(self._sets)
            sets = (every if target_sets is None else target_sets) & (every if my_sets is None else my_sets)
            hidden: set[str] = set()
            for who, seen in ((target, target_sets), (requester, my_sets)):
                if row.originator != who.nation:
                    hidden |= self._hidden_in(who, seen, [shape])
            fields = [selector for set_id, selector in shape.fields if set_id not in sets]
            ids = hidden.intersection(shape.references)
            if fields or ids:
                released = redact.redact(orjson.loads(row.body), fields, ids, nested=shape.nested)
                cut = None if released is None else orjson.dumps(released)
        if cut is None:
            return {**doc, "released": True, "objects": [], "note": _ABOVE_YOU}
        doc = {**doc, "released": True, "objects": [orjson.loads(cut)]}
        if cut != page.bodies[0]:
            doc["note"] = "parts of the version released to this nation are above your own view and are left out"
        return doc

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
