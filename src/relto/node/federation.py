"""Federation's two ends on a node (docs/federation.md): the feed another node's token reads, and the receive
path that applies what a followed peer sent.

Out: every version and owner deletion, in every collection, that the node token may receive, released by the
one Releaser (a peer's nation's cut, or a hub's union of its nations' cuts), with its originator and the path it
travelled, and the definitions its markings name. In: each version is checked and marked exactly as if its
originator had published it here, then stored in the originator's copy with its path, in one transaction with
the peer's cursor. A peer may deliver only versions of the nations it speaks for.
"""

from __future__ import annotations

import dataclasses
import os
import re
import uuid
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson

from relto.domain.audit import Item
from relto.domain.communities import membership_index
from relto.domain.errors import ConfigurationError, Forbidden, InvalidObject, InvalidRequest, NotFound
from relto.domain.levels import Ladder
from relto.domain.markings import TLP_BY_ID, MarkingMeaning, interpret_marking_definition
from relto.domain.parties import Party
from relto.domain.policy import relayed_nations
from relto.domain.timestamps import now_micros
from relto.node.policy import PolicyView
from relto.node.publisher import Publisher
from relto.store.base import (
    CollectionRecord,
    Event,
    NewVersion,
    NodeInfo,
    PeerProgress,
    PeerRecord,
    Received,
    Store,
)
from relto.taxii.cursors import Cursors

EPOCH_SECRET = "epoch"  # the node's epoch, made anew by `relto restore` (relto.store.backup)
CURSOR_SCOPE = "federation"  # what a federation cursor is sealed to (TAXII cursors name their collection)
_DEFINITIONS_KEPT = 10_000  # (originator, definition) pairs remembered by the feed
_TITLE, _DESCRIPTION = 200, 2000  # characters of a received collection's title and description kept
_REF = re.compile(rb"marking-definition--[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass(frozen=True)
class FeedBatch:
    """One answer of the federation feed: the JSON document, how many events it holds, whether more wait,
    and its cursor."""

    body: bytes
    count: int
    more: bool
    next: str
    collections: int = 0  # how many collections it lists (a new one is news even without events)


@dataclass
class _Step:
    """A step of a batch being assembled (see Received)."""

    collection: str
    versions: list[NewVersion] = field(default_factory=list)
    deletions: list[tuple[str, str, str]] = field(default_factory=list)


@dataclass
class Outcome:
    """What applying one received batch did."""

    received: int = 0
    refused: int = 0
    looped: int = 0
    deleted: int = 0
    last_refusal: str | None = None
    collections: set[str] = field(default_factory=set)
    remote_node: str = ""  # who the peer said it is
    remote_nation: str = ""


@dataclass(frozen=True)
class FeedCursor:
    """Where a node token's feed is: the sequence read up to, the marking sets it could read when it got there
    (and the newest set then), and, while one runs, a backfill of sets it may read now and could not then.

    Sealed like every cursor (nothing in it can be read or changed by the follower); the sets are kept compressed
    (a few bytes for the usual runs of ids)."""

    seq: int = 0
    seen: frozenset[int] = frozenset()
    seen_max: int = 0
    backfill: tuple[int, ...] = ()
    backfill_after: int = 0
    epoch: str = ""  # the node's epoch when issued: a restored node starts a new one (and its feeds start over)

    @classmethod
    def open(cls, cursors: Cursors, value: str | None) -> FeedCursor:
        if not value:
            return cls()
        sealed = cursors.open_bytes(value, CURSOR_SCOPE)
        try:
            raw = orjson.loads(zlib.decompress(sealed))
            seen = frozenset(_runs_out(raw["v"]))
            return cls(raw["s"], seen, raw["m"], tuple(_runs_out(raw["b"])), raw["a"], raw.get("e", ""))
        except (zlib.error, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise InvalidRequest("this federation cursor is from an older relto: start again without it") from None

    def seal(self, cursors: Cursors) -> str:
        doc = {
            "s": self.seq,
            "v": _runs_in(self.seen),
            "m": self.seen_max,
            "b": _runs_in(self.backfill),
            "a": self.backfill_after,
            "e": self.epoch,
        }
        return cursors.seal_bytes(zlib.compress(orjson.dumps(doc)), CURSOR_SCOPE)

    def noticing(self, visible: frozenset[int], known_max: int) -> FeedCursor:
        """This cursor, with a backfill of the sets that existed when it was made, were not readable then and are
        now (a fresh cursor has nothing to backfill: it starts at the beginning)."""
        if self.seq == 0:
            return self
        grown = {s for s in visible if s <= self.seen_max and s not in self.seen}
        if not grown or grown <= set(self.backfill):
            return self
        # New reach while a backfill runs: start it again, for every set it covers (rare: a membership change).
        return dataclasses.replace(self, backfill=tuple(sorted(grown | set(self.backfill))), backfill_after=0)

    def moved(self, seq: int, visible: frozenset[int], known_max: int) -> FeedCursor:
        """The cursor after reading up to `seq` with `visible` sets readable."""
        return dataclasses.replace(self, seq=max(seq, self.seq), seen=visible, seen_max=max(known_max, self.seen_max))


def _runs_in(ids: Iterable[int]) -> list[int]:
    """Sorted ids as [start, length, start, length, ...] (marking sets are made in runs)."""
    out: list[int] = []
    for i in sorted(ids):
        if out and out[-2] + out[-1] == i:
            out[-1] += 1
        else:
            out += [i, 1]
    return out


def _runs_out(runs: list[int]) -> list[int]:
    return [i for start, length in zip(runs[::2], runs[1::2], strict=True) for i in range(start, start + length)]


class Host(Protocol):
    """What federation asks of the node it belongs to (the Node; named here so that this module need not
    import it back)."""

    store: Store
    info: NodeInfo
    ladder: Ladder
    cursors: Cursors
    policy: PolicyView
    publisher: Publisher

    def visible_sets(self, party: Party, refresh: bool = False) -> frozenset[int]: ...
    def backfill(
        self, party: Party, collection_id: str | None, sets: frozenset[int], after: int, upto: int, limit: int
    ) -> tuple[list[Event], int]: ...
    def release(
        self, party: Party, collection_id: str, versions: Sequence[Any], read_at: float | None = None
    ) -> list[bytes | None]: ...
    def record(
        self, party: Party, path: str, collection_id: str, items: Iterable[Item], refs: Sequence[int] = ()
    ) -> None: ...
    def collection(self, collection_id: str) -> CollectionRecord: ...
    def collections(self) -> list[CollectionRecord]: ...
    def rang(self, collection_id: str) -> None: ...


class Federation:
    """The feed (out) and the receive path (in) of one node."""

    def __init__(self, node: Host) -> None:
        self.node = node
        self._known_ids: set[str] = set()  # collections known to exist here
        self._epoch = ""  # this node's epoch (new after a restore), read once
        self._definition_cache: dict[tuple[str, str], bytes] = {}  # (originator, id) -> the definition sent

    # out ----------------------------------------------------------------------------------------------
    def feed(
        self, party: Party, cursor: str | None, limit: int, requester: str = "", max_bytes: int = 8 << 20
    ) -> FeedBatch:
        """One batch of the federation feed for another node's token, as the JSON document it is sent as.

        `requester` is the reading node's id: versions that already passed through it are not sent back.
        """
        if not party.is_node:
            self.node.record(party, "refused.federation", "", [])
            raise Forbidden(
                "the federation feed is for other nodes' tokens (relto token issue --peer or --relay-for); "
                "people read TAXII collections or their live stream"
            )
        node = self.node
        if not self._epoch:  # a restore happens with the node stopped: one look per process is enough
            self._epoch = node.store.secret(EPOCH_SECRET, lambda: os.urandom(8)).hex()
        epoch = self._epoch
        position = FeedCursor.open(node.cursors, cursor)
        if position.epoch != epoch:
            # Issued before this node was restored from a backup (or by an older relto): what it points past may
            # not be here, and what is written now may lie below it. Start again; repeats are no-ops downstream.
            position = FeedCursor(epoch=epoch)
        position = position.noticing(node.visible_sets(party), node.policy.known_max_set)
        if position.backfill:
            return self._backfill(party, position, limit, requester, max_bytes)
        after = position.seq
        while True:
            known = node.policy.known_max_set
            events, covered = node.store.events(None, after, limit, node.visible_sets(party), known)
            if all(e.marking_set <= known for e in events):
                break
            node.policy.refresh(force=True)  # a marking set made since our policy was compiled
        full = len(events) >= limit
        visible = node.visible_sets(party)
        events = [e for e in events if e.marking_set in visible]
        out, refs, stopped = self._entries(party, events, requester, max_bytes)
        more = (full and covered > after) or stopped is not None
        covered = stopped if stopped is not None else covered
        sealed = position.moved(covered, visible, node.policy.known_max_set).seal(node.cursors)
        return self._answer(out, refs, more, sealed)

    def _backfill(self, party: Party, position: FeedCursor, limit: int, requester: str, max_bytes: int) -> FeedBatch:
        """Versions stored before the cursor in marking sets the token could not read then and may now (a nation
        joined a community, a token's reach grew): sent before anything newer, so that a follower gets what a
        TAXII read would now show it, not only what is written from now on. Deletions are not replayed (the
        follower never had those versions)."""
        node = self.node
        visible = node.visible_sets(party)
        events, covered = node.backfill(
            party, None, frozenset(position.backfill), position.backfill_after, position.seq, limit
        )
        out, refs, stopped = self._entries(party, events, requester, max_bytes)
        covered = stopped if stopped is not None else covered
        done = covered >= position.seq
        following = dataclasses.replace(
            position, backfill=() if done else position.backfill, backfill_after=0 if done else covered
        )
        sealed = following.moved(position.seq, visible, node.policy.known_max_set).seal(node.cursors)
        return self._answer(out, refs, True, sealed)

    def _entries(
        self, party: Party, events: Sequence[Event], requester: str, max_bytes: int
    ) -> tuple[list[dict[str, Any]], dict[str, set[bytes]], int | None]:
        """The feed entries of these events as released to the token (recorded in the decision log), the
        definitions they name, and the sequence where the byte budget cut them short (None: all of them)."""
        released = self._release(party, events)
        me = self.node.info.node_id
        out: list[dict[str, Any]] = []
        refs: dict[str, set[bytes]] = {}
        items: dict[str, list[Item]] = {}
        seqs: dict[str, list[int]] = {}  # per item, the version's sequence (0: a deletion, no stored version)
        size = 0
        stopped = None
        for event, body in zip(events, released, strict=True):
            path = orjson.loads(event.path) if event.path else []
            if body is None or requester in path or (event.body is None and not event.by_owner):
                continue
            entry: dict[str, Any] = {"c": event.collection, "id": event.stix_id, "o": event.originator}
            if event.body is None:
                entry.update(deleted=True, v=event.version_text or "")
            else:
                entry.update(p=[*path, me], t=event.date_added, obj=orjson.Fragment(body))
                refs.setdefault(event.originator, set()).update(_REF.findall(body))
            out.append(entry)
            items.setdefault(event.collection, []).append((event.stix_id, event.version_text))
            seqs.setdefault(event.collection, []).append(0 if event.body is None else event.seq)
            size += len(body)
            if size >= max_bytes:
                stopped = event.seq
                break
        for collection_id, chosen in items.items():
            self.node.record(party, "federation", collection_id, chosen, seqs[collection_id])
        return out, refs, stopped

    def _answer(self, out: list[dict[str, Any]], refs: dict[str, set[bytes]], more: bool, sealed: str) -> FeedBatch:
        node = self.node
        me = node.info.node_id
        collections = node.collections()
        doc = {
            "node": {"id": me, "nation": node.info.nation, "title": node.info.title},
            # Every collection, so peers have them before anything in them is released to them (collections are
            # not restricted: every party may list them).
            "collections": [{"id": c.id, "title": c.title, "description": c.description} for c in collections],
            "definitions": self._definitions(refs),
            "events": out,
            "next": sealed,
            "more": more,
        }
        return FeedBatch(orjson.dumps(doc), len(out), more, sealed, len(collections))

    def _release(self, party: Party, events: Sequence[Event]) -> list[bytes | None]:
        """Each event released to the node token, through the one Releaser (grouped by collection)."""
        out: list[bytes | None] = [None] * len(events)
        by_collection: dict[str, list[int]] = {}
        for i, e in enumerate(events):
            by_collection.setdefault(e.collection, []).append(i)
        for collection_id, indexes in by_collection.items():
            released = self.node.release(party, collection_id, [events[i] for i in indexes])
            for i, body in zip(indexes, released, strict=True):
                out[i] = body
        return out

    def _definitions(self, refs: dict[str, set[bytes]]) -> list[dict[str, Any]]:
        """The marking definitions the batch's versions name, each as its originator's (relto's self-verifying
        definitions are the same whoever stored them). Definitions never change, so each is looked up once."""
        pairs = sorted((o, r.decode()) for o, rs in refs.items() for r in rs if r.decode() not in TLP_BY_ID)
        missing = sorted({ref for o, ref in pairs if (o, ref) not in self._definition_cache})
        if missing:
            copies: dict[str, dict[str, bytes]] = {}
            for d in self.node.store.definitions(missing):
                copies.setdefault(d.id, {})[d.originator] = d.body
            for originator, ref in pairs:
                found = copies.get(ref)
                if (originator, ref) in self._definition_cache or not found:
                    continue  # not stored (yet): asked again next time
                body = found.get(originator)
                if body is None:
                    any_copy = orjson.loads(next(iter(found.values())))
                    if not interpret_marking_definition(any_copy, self.node.ladder).self_verifying:
                        continue
                    body = orjson.dumps(any_copy)
                if len(self._definition_cache) > _DEFINITIONS_KEPT:
                    self._definition_cache.clear()
                self._definition_cache[(originator, ref)] = body
        out = []
        for originator, ref in pairs:
            body = self._definition_cache.get((originator, ref))
            if body is not None:
                out.append({"o": originator, "d": orjson.Fragment(body)})
        return out

    # in -----------------------------------------------------------------------------------------------
    def speaks_for(self, peer: PeerRecord, remote_nation: str) -> frozenset[str]:
        """The originators a peer may deliver versions of: its --speaks-for list (communities' members today),
        or the peer node's own nation."""
        entries = [x for x in peer.speaks_for.split(",") if x] or [remote_nation]
        self.node.policy.refresh()
        members = membership_index(self.node.policy.snapshot.communities, datetime.now(UTC).date())
        return relayed_nations(entries, members)

    def receive(self, peer: PeerRecord, doc: dict[str, Any]) -> tuple[Outcome, str, bool]:
        """Apply one batch from `peer` (its feed document) in one transaction with its cursor; return what it
        did, the cursor and whether more are waiting. A malformed document raises InvalidRequest."""
        try:
            remote = doc["node"]
            remote_id, remote_nation = str(remote["id"]), str(remote["nation"])
            events, cursor, more = list(doc["events"]), str(doc["next"]), bool(doc["more"])
            definitions, collections = list(doc.get("definitions", ())), list(doc.get("collections", ()))
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidRequest(f"the peer's answer is not a relto federation feed ({exc})") from None
        if peer.remote_node and remote_id != peer.remote_node:
            raise ConfigurationError(
                f"the node at {peer.url} is not the one this peer was added for (node id {remote_id}, expected "
                f"{peer.remote_node}); if it was rebuilt, remove the peer and add it again"
            )
        if remote_id == self.node.info.node_id:
            raise ConfigurationError(f"{peer.url} is this node itself: a node cannot follow itself")
        speaks = self.speaks_for(peer, remote_nation)
        self._ensure_collections(collections)
        meanings = self._meanings(definitions, speaks)
        outcome = Outcome(remote_node=remote_id, remote_nation=remote_nation)
        steps: list[_Step] = []
        parties: dict[str, Party] = {}
        top = len(self.node.ladder.levels) - 1
        me = self.node.info.node_id
        newest = None
        for event in events:
            if not isinstance(event, dict):  # a malformed entry is refused, never an exception that wedges the peer
                outcome.refused += 1
                outcome.last_refusal = f"an entry of 'events' is not a JSON object: {type(event).__name__}"
                continue
            originator, collection = event.get("o"), event.get("c")
            stix_id = event.get("id")
            if not isinstance(originator, str) or originator not in speaks:
                outcome.refused += 1
                outcome.last_refusal = (
                    f"{stix_id}: its originator {originator} is not among the nations this peer speaks for "
                    f"({', '.join(sorted(speaks)) or 'none'}); widen with `relto peer add --speaks-for`"
                )
                continue
            if not isinstance(collection, str) or self._known(collection) is None:
                outcome.refused += 1
                outcome.last_refusal = f"{stix_id}: names an unknown collection {collection!r}"
                continue
            if event.get("deleted"):
                step = self._step(steps, collection, deleting=True)
                step.deletions.append((str(stix_id), originator, str(event.get("v") or "")))
                continue
            path = event.get("p")
            if not isinstance(path, list) or me in path:
                outcome.looped += 1  # it went round a ring back to us
                continue
            newest = event.get("t", newest)
            party = parties.get(originator) or Party(token_id=0, nation=originator, clearance=top, can_write=True)
            parties[originator] = party
            try:
                version = self.node.publisher.mark_one(
                    party, event.get("obj"), dict(meanings.get(originator, {})), orjson.dumps(path).decode()
                )
            except InvalidObject as exc:
                outcome.refused += 1
                outcome.last_refusal = f"{stix_id}: {exc.message}"
                continue
            self._step(steps, collection, deleting=False).versions.append(version)
        frozen = [Received(s.collection, tuple(s.versions), tuple(s.deletions)) for s in steps]
        progress = PeerProgress(
            cursor=cursor,
            refused=outcome.refused,
            last_refusal=outcome.last_refusal,
            remote_node=remote_id,
            remote_nation=remote_nation,
            behind_since=newest if more and isinstance(newest, int) else None,
            at=now_micros(),
        )
        appended = self.node.store.receive(peer.name, frozen, progress)
        outcome = self._account(peer, frozen, appended, outcome, remote_nation)
        return outcome, cursor, more

    def _account(
        self, peer: PeerRecord, steps: Sequence[Received], appended: Sequence[Any], outcome: Outcome, nation: str
    ) -> Outcome:
        """Count what was stored, ring the live streams and record the writes in the decision log."""
        who = Party(token_id=0, nation=nation or self.node.info.nation, clearance=0, name=f"peer {peer.name}")
        results = iter(appended)
        for step in steps:
            items: list[Item] = []
            seqs: list[int] = []  # the stored versions' sequences, which the record refers to (0: a deletion)
            if step.versions:
                result = next(results)
                stored_seqs = result.seqs or [0] * len(step.versions)
                for v, new, seq in zip(step.versions, result.stored, stored_seqs, strict=True):
                    if new:
                        items.append((v.stix_id, v.version_text))
                        seqs.append(seq)
                outcome.received += sum(1 for new in result.stored if new)
                if result.refused:
                    outcome.refused += len(result.refused)
                    outcome.last_refusal = next(iter(result.refused.values()))
            items.extend((stix_id, version or None) for stix_id, _, version in step.deletions)
            seqs.extend(0 for _ in step.deletions)
            if items:
                outcome.collections.add(step.collection)
                self.node.record(who, "federation.receive", step.collection, items, seqs)
        for collection_id in outcome.collections:
            self.node.rang(collection_id)
        return outcome

    @staticmethod
    def _step(steps: list[_Step], collection: str, *, deleting: bool) -> _Step:
        """The open step for this collection, or a new one: a step applies its versions, then its deletions,
        so a version after a deletion starts a new step (the batch's order is kept)."""
        last = steps[-1] if steps else None
        if last is not None and last.collection == collection and (deleting or not last.deletions):
            return last
        steps.append(_Step(collection))
        return steps[-1]

    def _known(self, collection_id: str) -> CollectionRecord | None:
        try:
            return self.node.collection(collection_id)
        except NotFound:
            return None

    def _ensure_collections(self, collections: Iterable[Any]) -> None:
        """Collections named by the batch exist here with the same id (created on first sight)."""
        for c in collections:
            if not isinstance(c, dict) or not _is_uuid(c.get("id")) or c["id"] in self._known_ids:
                continue
            if self.node.store.collection(c["id"]) is not None:
                self._known_ids.add(c["id"])  # collections are never deleted
            else:
                record = CollectionRecord(
                    id=c["id"],
                    title=str(c.get("title") or "received")[:_TITLE],
                    description=str(c.get("description") or "")[:_DESCRIPTION],
                    created=now_micros(),
                )
                self.node.store.add_collection(record)
                self.node.rang(record.id)  # this node's own followers learn of it now

    def _meanings(self, definitions: Iterable[Any], speaks: frozenset[str]) -> dict[str, dict[str, MarkingMeaning]]:
        """What the batch's definitions mean for each originator (only the nations the peer speaks for)."""
        out: dict[str, dict[str, MarkingMeaning]] = {}
        for d in definitions:
            if not isinstance(d, dict) or d.get("o") not in speaks or not isinstance(d.get("d"), dict):
                continue
            try:
                meaning = interpret_marking_definition(d["d"], self.node.ladder)
            except (InvalidObject, ConfigurationError):
                continue
            if isinstance(d["d"].get("id"), str):
                out.setdefault(d["o"], {})[d["d"]["id"]] = meaning
        return out


def _is_uuid(value: Any) -> bool:
    """Whether a peer's collection id is one (collections are named by UUIDs everywhere)."""
    try:
        return isinstance(value, str) and len(value) == 36 and str(uuid.UUID(value)) == value
    except ValueError:
        return False
