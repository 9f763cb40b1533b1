"""The releaser: what each version that passed the store's policy filter is released to a party as.

Every exit path asks it (TAXII reads, single objects, versions, deletion's check, preview, the live stream):
the copy chosen when several nations hold an id, fields marked narrower than the party may see removed,
references to objects hidden from it removed, versions that would lose a required reference withheld
(docs/tearlines.md, docs/security.md).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import orjson

from relto.domain import redact
from relto.domain.parties import Party
from relto.node.policy import PolicyView
from relto.store.base import Holding

# Hidden-id verdicts kept per compiled view: how many views, and how many ids per view, before starting afresh.
_VIEWS = 64
_IDS_PER_VIEW = 200_000


class Candidate(Protocol):
    """A stored version or tombstone as the release step needs it (StoredVersion and Event are ones).

    A tombstone has no body; its `skeleton` stands in for it when judging whether it was released."""

    @property
    def stix_id(self) -> str: ...
    @property
    def type(self) -> str: ...
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


class Holdings(Protocol):
    """What the releaser asks the store: who holds which ids, and how far its history goes."""

    def holdings(self, ids: Sequence[str]) -> list[Holding]: ...
    def head(self) -> int: ...


class _Verdicts:
    """Whether each id asked about is hidden from one compiled view, as the store stood once its last sequence
    was `head`: true for as long as it still is (every write that adds or removes a version takes a sequence)."""

    __slots__ = ("head", "hidden")

    def __init__(self, head: int) -> None:
        self.head = head
        self.hidden: dict[str, bool] = {}


@dataclass(frozen=True, slots=True)
class View:
    """Everything a release depends on about the party, as the policy compiled it at one moment.

    `release_as` reads the party through this alone, so two parties with equal views are released identical
    bytes of the same versions (against the same store): the live stream shares rendered events by it. Equal
    views need the same nation (its own versions and relationships are not trimmed for it), the same kind (a
    node gets every copy), and the same visible marking sets (which carry the clearance, the communities on the
    day, TLP and every tearline's set).
    """

    nation: str
    is_node: bool
    visible: frozenset[int]  # the marking sets it may read
    sees_all: bool  # it may see every marking set known, so no field or reference is trimmed for it


class Releaser:
    """Copy choice, field trimming, hidden references and withholding, asked by every exit path."""

    def __init__(self, versions: Holdings, policy: PolicyView) -> None:
        self.versions = versions
        self.policy = policy
        # (nation, visible sets) -> the verdicts for that view: the rules depend on nothing else but the holdings
        self._views: dict[tuple[str, frozenset[int]], _Verdicts] = {}
        self._lock = threading.Lock()
        # (time.monotonic() before it was read, the head then): several reads of versions made before it share it
        self._head_seen = (-1.0, 0)

    def release(
        self, party: Party, collection_id: str, versions: Sequence[Candidate], read_at: float | None = None
    ) -> list[bytes | None]:
        """What each version is released to this party as, or None when it is withheld.

        A person who may see several nations' copies of an id is given one (its own nation's, else the first
        published; another node's token gets every copy); fields marked narrower than the party may see are
        removed, and references to objects hidden from it, except in its own nation's versions (it wrote
        them: trimming them would only tell it what the node holds). Most versions need nothing: their stored
        body goes out unparsed. A tombstone (no body) is judged on its skeleton: anything but None means it
        was released. `read_at` (time.monotonic()) is when the versions were read from the store, if known: a
        policy refreshed since then need not be again.
        """
        return self.release_as(self.view(party, read_at), collection_id, versions, read_at)

    def view(self, party: Party, read_at: float | None = None) -> View:
        """What the policy engine makes of this party now (see `release` for `read_at`)."""
        sees = self.policy.sees(party, read_at)  # first: it may refresh the policy
        visible = self.policy.visible_sets(party) if sees is None else sees
        return View(party.nation, party.is_node, visible, sees is None)

    def release_as(
        self, view: View, collection_id: str, versions: Sequence[Candidate], read_at: float | None = None
    ) -> list[bytes | None]:
        """What each version is released as to a party with this view (see `release`)."""
        out: list[bytes | None] = [
            v.body if v.body is not None else (getattr(v, "skeleton", None) or b"{}") for v in versions
        ]
        if not view.is_node and any(v.shared for v in versions):
            # A person is shown one copy of an id; another node receives every copy it may (each keeps its
            # originator there).
            chosen = self._chosen_copies(view, collection_id, versions)
            out = [
                None if v.shared and chosen.get(v.stix_id) != v.originator else b
                for v, b in zip(versions, out, strict=True)
            ]
        if all(v.shape is None for v in versions) or view.sees_all:
            return out
        visible = view.visible
        shapes = [None if v.shape is None else redact.Shape.decode(v.shape) for v in versions]
        foreign = [s if v.originator != view.nation else None for v, s in zip(versions, shapes, strict=True)]
        hidden = self.hidden_in(view.nation, visible, foreign, read_at)
        return _trim(view.nation, versions, out, shapes, visible, hidden)

    def cut_for_both(
        self, target: Party, requester: Party, originator: str, body: bytes, shape: bytes | None
    ) -> bytes | None:
        """A version as `target` receives it, cut again by what `requester` may see (preview's answer: it
        shows the requester nothing it may not see itself); None when nothing of it is left."""
        parsed = redact.Shape.decode(shape)
        target_sets, my_sets = self.policy.sees(target), self.policy.sees(requester)
        if target_sets is None and my_sets is None:
            return body
        every = self.policy.every_set()
        sets = (every if target_sets is None else target_sets) & (every if my_sets is None else my_sets)
        hidden: set[str] = set()
        for who, seen in ((target, target_sets), (requester, my_sets)):
            if originator != who.nation:
                hidden |= self.hidden_in(who.nation, seen, [parsed])
        fields = [selector for set_id, selector in parsed.fields if set_id not in sets]
        ids = hidden.intersection(parsed.references)
        if not fields and not ids:
            return body
        released = redact.redact(orjson.loads(body), fields, ids, nested=parsed.nested)
        return None if released is None else orjson.dumps(released)

    def _chosen_copies(self, view: View, collection_id: str, versions: Sequence[Candidate]) -> dict[str, str]:
        """For each id held by several nations, whose copy this party is shown: its own nation's if it may see
        it, else the first published (lowest rank) of those it may see. Decided from what it may see alone."""
        ids = {v.stix_id for v in versions if v.shared}
        visible = view.visible
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
                view.nation if view.nation in by_nation else min(by_nation, key=lambda n: (by_nation[n], n))
            )
        return chosen

    def hidden_in(
        self,
        nation: str,
        visible: frozenset[int] | None,
        shapes: Sequence[redact.Shape | None],
        read_at: float | None = None,
    ) -> set[str]:
        """The ids these shapes reference that are hidden from a party of `nation` seeing `visible` (None: every
        set). `read_at`: when the versions these shapes are of were read (time.monotonic()), if known."""
        wanted = {ref for s in shapes if s is not None for ref in s.references}
        return self._hidden(nation, visible, wanted, read_at) if wanted and visible is not None else set()

    def _hidden(self, nation: str, visible: frozenset[int], ids: set[str], read_at: float | None) -> set[str]:
        """The ids among `ids` hidden from a party that sees `visible` (docs/tearlines.md, rules 1 and 2).

        Verdicts are kept per view while the store's head stays where it was when they were reached (read
        before the holdings, so a write in between only makes them be reached again): a version added or
        deleted since, which could hide or reveal an id, always starts the view afresh (fail closed). The head
        is read again unless it was read after the versions were (then it is no older than they are)."""
        verdicts = self._verdicts(nation, visible, self._head(read_at))
        known = verdicts.hidden
        unknown = ids.difference(known)
        hidden = {i for i in ids if i not in unknown and known[i]}
        if unknown:
            found = self._judge(nation, visible, unknown)
            hidden |= found
            if len(known) + len(unknown) <= _IDS_PER_VIEW:
                known.update({i: i in found for i in unknown})  # one update: never half an answer
        return hidden

    def _head(self, read_at: float | None) -> int:
        """The store's head, read at or after `read_at` (None: now)."""
        seen = self._head_seen
        if read_at is not None and read_at <= seen[0]:
            return seen[1]
        started = time.monotonic()
        head = self.versions.head()
        self._head_seen = (started, head)
        return head

    def _verdicts(self, nation: str, visible: frozenset[int], head: int) -> _Verdicts:
        """The verdicts kept for this view at this head (a fresh, empty one if the head has moved)."""
        key = (nation, visible)
        with self._lock:
            verdicts = self._views.get(key)
            if verdicts is None or verdicts.head != head:
                verdicts = self._views[key] = _Verdicts(head)
                if len(self._views) > _VIEWS:
                    del self._views[next(iter(self._views))]
            return verdicts

    def _judge(self, nation: str, visible: frozenset[int], ids: set[str]) -> set[str]:
        """The ids among `ids` hidden from a party that sees `visible`, from the store's holdings."""
        holdings = self._holdings(ids)
        hidden = {i for i, hs in holdings.items() if not any(h.marking_set in visible for h in hs)}
        endpoints: dict[str, tuple[str, ...]] = {}
        for stix_id, hs in holdings.items():
            seen = [h for h in hs if h.marking_set in visible and h.type in ("relationship", "sighting")]
            # Rule 2 never hides a party's own relationship from it: it knows what it named.
            if stix_id not in hidden and seen and not any(h.originator == nation for h in seen):
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
        for h in self.versions.holdings(sorted(ids)):
            by_id.setdefault(h.stix_id, []).append(h)
        return by_id


def _trim(
    nation: str,
    versions: Sequence[Candidate],
    bodies: Sequence[bytes | None],
    shapes: Sequence[redact.Shape | None],
    visible: frozenset[int],
    hidden: set[str],
) -> list[bytes | None]:
    out: list[bytes | None] = []
    none: tuple[str, ...] = ()
    for v, body, shape in zip(versions, bodies, shapes, strict=True):
        if shape is None or body is None:
            out.append(body)
            continue
        fields = [selector for set_id, selector in shape.fields if set_id not in visible] if shape.fields else none
        ids = hidden.intersection(shape.references) if hidden and v.originator != nation else none
        if not fields and not ids:
            out.append(body)
            continue
        if v.body is not None:  # most versions are cut where their stored shape says, without parsing
            done, cut = redact.cut(v.body, shape, v.type, fields, ids)
            if done:
                out.append(cut)
                continue
        released = redact.redact(orjson.loads(body), fields, ids, nested=shape.nested or v.body is None)
        out.append(None if released is None else orjson.dumps(released))
    return out
