"""The marking resolver (publish side): what a version's markings mean, which marking set they make, and who
may add versions to an id (the ownership gate)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from relto.domain import redact
from relto.domain.errors import InvalidObject
from relto.domain.levels import Ladder
from relto.domain.markings import TLP_BY_ID, MarkingMeaning, MarkingSet, combine, interpret_marking_definition
from relto.domain.parties import Party
from relto.domain.stix import SCO_TYPES, Checked
from relto.node.policy import PolicyView
from relto.store.base import Gate, Holding, NewVersion, PolicyStore

_MEANINGS = 100_000  # (nation, ref) meanings remembered before the cache starts again


class MarkingResolver:
    """Marks what a party publishes: meanings per nation, marking sets made on first use, the ownership gate."""

    def __init__(self, store: PolicyStore, policy: PolicyView, ladder: Ladder, *, max_sets_per_nation: int) -> None:
        self.store = store
        self.policy = policy
        self.ladder = ladder
        self.max_sets_per_nation = max_sets_per_nation
        # marking set key (or (nation, refs as written)) -> marking set id
        self._set_keys: dict[str | tuple[str, tuple[str, ...]], int] = {}
        # (publishing nation, marking ref) -> what the ref means in that nation's objects
        self._meanings: dict[tuple[str, str], MarkingMeaning] = {}

    def gate(self, party: Party) -> Gate:
        """The ownership rule, asked by the store inside the write transaction for each new version whose id
        other nations hold: an object belongs to the nation that published it first (DESIGN invariant 9).

        A nation with a copy of its own adds to it. A nation without one is refused only if it may see
        another nation's version of the id: then the refusal tells it nothing it could not read. If every
        other copy is hidden from it, its version starts its own copy, exactly as if the id were new
        (invariant 11); readers who may see several copies are shown one (see Releaser.release). Observables
        and marking definitions (ids derived from their contents) always go to the publisher's own copy.
        """
        visible = self.policy.visible_sets(party)

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

    def for_definition(
        self, party: Party, obj: dict[str, Any], checked: Checked, pending: dict[str, MarkingMeaning]
    ) -> int:
        """The marking set of a marking definition (readable by whoever its own marking admits, TLP ones by
        everyone); adds its meaning to `pending`, for the objects of the same envelope."""
        meaning = interpret_marking_definition(obj, self.ladder)
        self._check_unchanged(party, checked.id, obj)
        if meaning.kind == "tlp":
            set_id = self._set_id("public", MarkingSet(0, party.nation, 0, None, None, public=True))
        elif meaning.kind == "releasability":
            rank, rel_to, _ = combine([meaning], self.ladder)
            assert meaning.releasability is not None
            groups = ",".join("+".join(g) for g in rel_to or ())
            key = f"{party.nation}|self:{meaning.releasability.classification}:{groups}"
            set_id = self._set_id(key, MarkingSet(0, party.nation, rank, rel_to, None))
        else:
            set_id = self._set_for(party, checked.marking_refs, pending)
        pending[checked.id] = meaning
        return set_id

    def for_object(
        self, party: Party, obj: dict[str, Any], checked: Checked, pending: dict[str, MarkingMeaning]
    ) -> tuple[int, bytes | None]:
        """The version's marking set, and its stored shape: the marking set of each field marked narrower.

        The version's set is its object markings plus the granular markings on whole required properties
        (a party that may not see those cannot receive the version at all).
        """
        analysis = redact.analyse(obj)
        if not obj.get("granular_markings"):
            set_id = self._set_for(party, checked.marking_refs, pending)
            shape = redact.Shape((), analysis.references, analysis.endpoints, analysis.nested, deep=analysis.deep)
            return set_id, shape.with_members(obj).encode()
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
        shape = redact.Shape(
            tuple(fields), analysis.references, analysis.endpoints, analysis.nested, deep=analysis.deep
        )
        return set_id, shape.with_members(obj).encode()

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
                visible = self.policy.visible_sets(party)
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
        if len(self._meanings) > _MEANINGS:
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

    def _set_id(self, key: str, template: MarkingSet) -> int:
        found = self._set_keys.get(key)
        if found is None:
            limit = self.max_sets_per_nation
            made = self.store.marking_set_id(key, template, limit=limit)
            if made is None:
                raise InvalidObject(
                    f"not stored: {template.originator} already has {limit} marking sets (distinct combinations "
                    "of markings) on this node, the most one nation may make (max_marking_sets_per_nation); "
                    "reuse a combination already in use, or ask the operator to raise the limit"
                )
            found = made
            self._set_keys[key] = found
            self.policy.made(found)
        return found
