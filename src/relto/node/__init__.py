"""The node: a small facade over parts with one job each; every publish and read goes through here.

The API layer turns HTTP into calls on Node; the CLI builds a Node on a Store. The parts (docs/architecture.md):
- Authenticator (relto.node.authenticator): tokens to parties, through a bounded cache;
- PolicyView (relto.node.policy): marking sets and communities as an immutable snapshot, compiled visibility;
- MarkingResolver (relto.node.markings): what published markings mean, their marking sets, the ownership gate;
- Publisher (relto.node.publisher): the one write path for objects and its status;
- Releaser (relto.node.releaser): what each read version is released as; every exit path asks it.
Every release and write is recorded by one call, `Node.record`, in the decision log.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from relto.decisions import DecisionLog
from relto.domain import redact
from relto.domain.audit import Item
from relto.domain.communities import Community
from relto.domain.errors import ConfigurationError, Forbidden, InvalidRequest, NotFound
from relto.domain.explain import explain
from relto.domain.levels import Ladder
from relto.domain.markings import MarkingSet
from relto.domain.parties import Party, check_nation
from relto.domain.timestamps import now_micros
from relto.node.authenticator import Authenticator
from relto.node.drafts import Judged, cut_draft, today_members
from relto.node.federation import Federation
from relto.node.markings import MarkingResolver
from relto.node.policy import PolicyView
from relto.node.publisher import Publisher
from relto.node.releaser import Candidate, Releaser, View
from relto.node.tally import Tally
from relto.settings import Settings
from relto.store.base import CollectionRecord, Doorbell, Event, Store, StoredVersion, VersionQuery
from relto.taxii.cursors import Cursors, new_key
from relto.taxii.filters import Filters

__all__ = ["Candidate", "Node", "Page"]

_ABOVE_YOU = "this nation would receive a version of the object that is above your own view"
_PAGE_EXAMINE = 10  # a page reads on past withheld versions, up to this many times its limit


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
        # Called with a collection id after each committed write: the live stream's in-process doorbell.
        self.on_write: list[Callable[[str], None]] = []
        self._collections: dict[str, CollectionRecord] = {}
        # Seals every cursor this node hands out (TAXII `next`, stream ids): nothing in one can be read.
        self.cursors = Cursors(store.secret("cursor", new_key))
        # Every release and write is recorded here (the tamper-evident decision log), through `record`.
        self.tally = Tally()  # and counted here, for the metrics (relto.api.metrics)
        self.decisions = DecisionLog(
            store,
            enabled=bool(self.settings.decision_log),
            flush_seconds=self.settings.decision_log_flush_ms / 1000,
        )
        self.authenticator = Authenticator(store, self.ladder)
        self.policy = PolicyView(store)
        self.markings = MarkingResolver(
            store, self.policy, self.ladder, max_sets_per_nation=self.settings.max_marking_sets_per_nation
        )
        self.publisher = Publisher(store, self.markings, self.record, self.rang)
        self.releaser = Releaser(store, self.policy)
        self.federation = Federation(self)

    def close(self) -> None:
        """Write the decision log's last records and release the store's connections."""
        self.decisions.close()
        self.store.close()

    def record(
        self, party: Party, path: str, collection_id: str, items: Iterable[Item], refs: Sequence[int] = ()
    ) -> None:
        """Note in the decision log what `party` was released or wrote on exit path `path`: the one call.

        `refs`: the stored versions' sequences, one per item (0: not a stored version), when known."""
        items = tuple(items)
        self.tally.count(path, len(items))
        self.decisions.record(party, path, collection_id, items, refs)

    # parties and policy -------------------------------------------------------------------------------
    def authenticate(self, token: str | None) -> Party:
        """The party holding this token; Unauthenticated if it is missing, unknown or revoked."""
        return self.authenticator.authenticate(token)

    @property
    def known_max_set(self) -> int:
        """The newest marking set the compiled policy knows."""
        return self.policy.known_max_set

    def visible_sets(self, party: Party, refresh: bool = False) -> frozenset[int]:
        """The marking sets this party may read today: the one policy engine, compiled and cached."""
        return self.policy.visible_sets(party, refresh)

    def marking_set(self, set_id: int) -> MarkingSet:
        """A marking set by id."""
        return self.policy.marking_set(set_id)

    def communities(self) -> list[Community]:
        """All communities with their membership history, as stored now."""
        return self.store.communities()

    def put_community(self, community: Community) -> None:
        """Create or replace a community; this process's policy follows at once, others' within a second."""
        self.store.put_community(community)
        self.policy.refresh(force=True)

    def rang(self, collection_id: str) -> None:
        """Tell this process's live streams (and federation feeds) that a collection was written."""
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
        self.rang(record.id)  # followers of this node learn of it now
        return record

    # publish ------------------------------------------------------------------------------------------
    def publish(self, party: Party, collection_id: str, objects: Sequence[Any]) -> dict[str, Any]:
        """Check, mark and store a posted envelope's objects; return the TAXII status (already stored).

        Every version joins the publisher's own copy of its id (docs/security.md): a nation may not add
        versions to an object another nation published first, and nothing it is told depends on what is
        hidden from it.
        """
        if not party.can_write:
            self.record(party, "refused.publish", collection_id, [])
            raise Forbidden("this token may read but not publish")
        self.collection(collection_id)
        return self.publisher.publish(party, collection_id, objects)

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
            "known_max_set": self.policy.known_max_set,
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
            rows = page.rows
            self.record(party, path, collection_id, [(r.stix_id, r.version_text) for r in rows], [r.seq for r in rows])
        return page

    def _page(self, party: Party, collection_id: str, filters: Filters, **overrides: Any) -> Page:
        """Read on until `limit` versions are released, the collection ends, or the read has examined
        _PAGE_EXAMINE times the limit: withheld versions never make a page come back empty with more to come
        (an `added_after` client would ask for it again forever), nor show how many were withheld."""
        limit = filters.limit
        kept: list[tuple[StoredVersion, bytes]] = []
        after: int | None = None
        examined, more, last_added = 0, False, None
        # The versions read but not yet examined, in sequence order; whether they are all that is left; and when
        # they were read. When many are withheld, the page reads on in one larger read rather than many small
        # ones, and examines them in the same steps as it would have read them.
        ahead: list[StoredVersion] = []
        ahead_all, read_at = False, 0.0
        while True:
            want = limit - len(kept)
            if len(ahead) <= want and not ahead_all:
                batch = want + 1
                if examined:  # enough for what is missing at the share released so far, within the bound
                    share = max(len(kept) / examined, 1 / _PAGE_EXAMINE)
                    batch = max(batch, min(int(want / share * 1.25) + 1, limit * _PAGE_EXAMINE - examined + 1))
                ahead, read_at = self._read(party, collection_id, filters, after, batch, overrides)
                ahead_all = len(ahead) < batch
            more = len(ahead) > want
            rows, ahead = ahead[:want], ahead[want:]
            if not rows:
                break
            after, last_added = rows[-1].seq, rows[-1].date_added
            examined += len(rows)
            released = self.release(party, collection_id, rows, read_at)
            kept.extend((r, b) for r, b in zip(rows, released, strict=True) if b is not None)
            # Past the bound a page ends as soon as it holds something: never empty while more follow (a
            # client would ask again from the same place, or page on with limit 0, as taxii2-client does).
            if not more or len(kept) >= limit or (kept and examined >= limit * _PAGE_EXAMINE):
                break
        cursor = self.cursors.seal(after, collection_id) if more and after is not None else None
        return Page([r for r, _ in kept], [b for _, b in kept], more, cursor, last_added)

    def _read(
        self, party: Party, collection_id: str, filters: Filters, after: int | None, limit: int, overrides: Any
    ) -> tuple[list[StoredVersion], float]:
        """Up to `limit` versions visible to the party after `after`, and when they were read (time.monotonic())."""
        while True:
            query = self._query(party, collection_id, filters, after, **{**overrides, "limit": limit})
            read_at = time.monotonic()
            rows = self.store.read(query)
            if query.known_max_set is None or all(r.marking_set <= query.known_max_set for r in rows):
                return rows, read_at
            # A marking set created since our policy was compiled (maybe by another process): recompile
            # and ask again, rather than page past versions the party may be allowed to see.
            self.policy.refresh(force=True)

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

    def _released_versions(self, party: Party, collection_id: str, object_id: str) -> list[StoredVersion]:
        """Every version of one object released to the party, every copy."""
        probe = VersionQuery(
            collection=collection_id, visible=self.visible_sets(party), ids=(object_id,), versions=("all",), limit=1000
        )
        rows = self.store.read(probe)
        return [r for r, b in zip(rows, self.release(party, collection_id, rows), strict=True) if b is not None]

    def release(
        self, party: Party, collection_id: str, versions: Sequence[Candidate], read_at: float | None = None
    ) -> list[bytes | None]:
        """What each version is released to this party as, or None when it is withheld (see Releaser)."""
        return self.releaser.release(party, collection_id, versions, read_at)

    # the live stream ----------------------------------------------------------------------------------
    def head(self) -> int:
        """The last sequence handed out (objects and deletions): where a new stream starts."""
        return self.store.head()

    def seq_at(self, date_added: int) -> int:
        """The last sequence added at or before `date_added`: where a stream from a time starts."""
        return self.store.seq_at(date_added)

    def doorbell(self) -> Doorbell | None:
        """Where other processes' writes ring (None: poll)."""
        return self.store.doorbell()

    def tail(self, collection_id: str, after_seq: int, limit: int) -> tuple[list[Event], int]:
        """A collection's events after `after_seq`, unfiltered, for the process's shared feed (which releases
        nothing itself: each subscriber's events go through `stream_release`); and how far the answer goes."""
        return self.store.events(collection_id, after_seq, limit, None)

    def catch_up(self, party: Party, collection_id: str, after_seq: int, limit: int) -> tuple[list[Event], int]:
        """A collection's events after `after_seq` in marking sets the party may see (the policy is inside
        the store query, as for TAXII reads); and how far the answer goes."""
        return self.store.events(collection_id, after_seq, limit, self.visible_sets(party))

    def backfill(
        self, party: Party, collection_id: str | None, sets: frozenset[int], after: int, upto: int, limit: int
    ) -> tuple[list[Event], int]:
        """Versions (no deletions) in (after, upto] of these marking sets that the party may read now, for a
        follower whose reach grew (a nation joined a community) after it read past them; and how far the answer
        goes. Whoever sends them releases them through `release` (or `stream_release`) as any other."""
        sets = sets & self.visible_sets(party)
        if not sets:
            return [], upto
        events, covered = self.store.events(collection_id, after, limit, sets)
        return [e for e in events if e.seq <= upto and e.body is not None], min(covered, upto)

    def release_view(self, party: Party, read_at: float | None = None) -> View:
        """What the policy engine makes of this party now: parties with equal views are released the same
        bytes of the same versions (the live stream renders each event once per view)."""
        return self.releaser.view(party, read_at)

    def release_as(self, view: View, collection_id: str, versions: Sequence[Event]) -> list[bytes | None]:
        """What each version is released as to a party with this view (None: withheld); records nothing: the
        caller records per party."""
        return self.releaser.release_as(view, collection_id, versions)

    def stream_release(
        self, party: Party, collection_id: str, events: Sequence[Event], read_at: float | None = None
    ) -> list[bytes | None]:
        """What each event is released to the party as (None: withheld), recorded as the exit path "stream".
        A deletion is told exactly to the parties its version was released to."""
        released = self.release(party, collection_id, events, read_at)
        sent = [e for e, b in zip(events, released, strict=True) if b is not None and e.body is not None]
        if sent:
            self.record(
                party, "stream", collection_id, [(e.stix_id, e.version_text) for e in sent], [e.seq for e in sent]
            )
        return released

    # delete and preview -------------------------------------------------------------------------------
    def delete_object(self, party: Party, collection_id: str, object_id: str, filters: Filters) -> int:
        """Delete versions of one object: an admin's view of every copy, or the party's nation's own copy.

        The store deletes exactly what the authorised query matches, so no version is removed that the
        party could not delete (not only the first page of them is checked).
        """
        if not party.admin and not party.can_write:
            self.record(party, "refused.delete", collection_id, [(object_id, None)])
            raise Forbidden("this token may not delete objects")
        query = self._query(party, collection_id, filters, 0, ids=(object_id,))
        rows = self.store.read(query)
        mine = rows if party.admin else [r for r in rows if r.originator == party.nation]
        if not mine:
            if any(b is not None for b in self.release(party, collection_id, rows)):
                self.record(party, "refused.delete", collection_id, [(object_id, None)])
                raise Forbidden("only the nation that published this object, or an admin, may delete it")
            raise NotFound(f"no object {object_id} in this collection")
        if not party.admin:
            query = self._query(party, collection_id, filters, 0, ids=(object_id,), originator=party.nation)
        deleted = self.store.delete(query, party.nation)
        self.rang(collection_id)
        self.record(party, "delete", collection_id, [(r.stix_id, r.version_text) for r in mine], [r.seq for r in mine])
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
            self.record(requester, path, collection_id, items)

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
        target, level = self.preview_party(nation, clearance)
        page = self._page(target, collection_id, Filters(limit=1), ids=(object_id,))
        doc: dict[str, Any] = {"id": object_id, "nation": target.nation, "clearance": level, "released": False}
        if not page.rows:
            newest = max(rows, key=lambda r: r.version)
            return {**doc, "objects": [], "reasons": list(self._reasons(target, requester, newest, None))}
        # The preview shows the requester nothing it may not see itself: what the target receives, cut again
        # by the requester's own view (noted when that removes anything).
        row = page.rows[0]
        if row.marking_set not in self.visible_sets(requester):
            return {**doc, "released": True, "objects": [], "note": _ABOVE_YOU}
        cut = self.releaser.cut_for_both(target, requester, row.originator, row.body, row.shape)
        if cut is None:
            return {**doc, "released": True, "objects": [], "note": _ABOVE_YOU}
        reasons = self._reasons(target, requester, row, orjson.loads(page.bodies[0]))
        doc = {**doc, "released": True, "reasons": list(reasons), "objects": [orjson.loads(cut)]}
        if cut != page.bodies[0]:
            doc["note"] = "parts of the version released to this nation are above your own view and are left out"
        return doc

    def _reasons(
        self, target: Party, requester: Party, row: StoredVersion, released: dict[str, Any] | None
    ) -> tuple[str, ...]:
        """Why `target` receives `released` (None: nothing) of a stored version, from its marking sets and shape;
        told within the requester's own view (a field or reference hidden from it is not named)."""
        shape = redact.Shape.decode(row.shape)
        mine = self.visible_sets(requester)
        hidden: set[str] = set()
        if row.originator != target.nation:
            hidden = self.releaser.hidden_in(target.nation, self.policy.sees(target), [shape])
        if hidden and row.originator != requester.nation:
            hidden -= self.releaser.hidden_in(requester.nation, self.policy.sees(requester), [shape])
        return explain(
            orjson.loads(row.body),
            released,
            nation=target.nation,
            clearance=target.clearance,
            whole=self.marking_set(row.marking_set),
            fields=[(selector, self.marking_set(set_id)) for set_id, selector in shape.fields if set_id in mine],
            hidden_ids=hidden,
            members=today_members(self.communities()),
            ladder=self.ladder,
        )

    def preview_party(self, nation: str, clearance: str | None) -> tuple[Party, str]:
        """The party a preview shows the view of, and its level's name (default: the top of the ladder)."""
        try:
            level = self.ladder.name(self.ladder.rank(clearance)) if clearance else self.ladder.levels[-1]
            return Party(
                token_id=0, nation=check_nation(nation), clearance=self.ladder.rank(level), can_write=False
            ), level
        except ConfigurationError as exc:
            raise InvalidRequest(exc.message) from None

    def preview_draft(
        self, requester: Party, objects: Sequence[dict[str, Any]], nation: str, clearance: str | None = None
    ) -> list[dict[str, Any] | None]:
        """What a party of `nation` with `clearance` (default: the top level) would receive of a marked draft
        that `requester` may publish: each non-definition object as released, or None when withheld.

        Nothing is stored (no marking set either); recorded in the decision log as "preview.draft".
        """
        return [j.released for j in self.explain_draft(requester, objects, nation, clearance)]

    def explain_draft(
        self, requester: Party, objects: Sequence[dict[str, Any]], nation: str, clearance: str | None = None
    ) -> list[Judged]:
        """As preview_draft, with each object's id and the reasons it is withheld or cut (domain/explain)."""
        if not requester.can_write:
            self.record(requester, "refused.preview.draft", "", [])
            raise Forbidden("this token may read but not publish, so it has no drafts to preview")
        target, _ = self.preview_party(nation, clearance)
        out = cut_draft(self.releaser, requester, target, objects, self.ladder, today_members(self.communities()))
        self.record(requester, "preview.draft", "", [(j.id, None) for j in out])
        return out

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
