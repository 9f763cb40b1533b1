"""What a nation would receive of a draft not yet published ("view as"): marked, judged and cut without
storing anything, not even a marking set.

A draft's markings are read from the definitions in it (as the publisher reads them: see MarkingResolver),
folded into marking-set templates that are judged with the one policy function (domain/policy.visible), and
each version is cut with the same redact step the Releaser uses: narrower fields removed, references to
objects hidden from the nation removed, the version withheld when a required part would go.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from relto.domain import redact
from relto.domain.communities import membership_index
from relto.domain.errors import InvalidObject, InvalidRequest
from relto.domain.explain import explain
from relto.domain.levels import Ladder
from relto.domain.markings import TLP_BY_ID, MarkingMeaning, MarkingSet, combine, interpret_marking_definition
from relto.domain.parties import Party
from relto.domain.policy import visible
from relto.domain.tearline import objects_of
from relto.node.releaser import Releaser


def draft_meanings(objects: Sequence[Mapping[str, Any]], ladder: Ladder) -> dict[str, MarkingMeaning]:
    """The meaning of each marking-definition in a draft (the TLP ones are known by id)."""
    out = {ref: MarkingMeaning("tlp", tlp=tlp) for ref, tlp in TLP_BY_ID.items()}
    for obj in objects:
        if obj.get("type") == "marking-definition":
            out[str(obj["id"])] = interpret_marking_definition(obj, ladder)
    return out


def template(
    originator: str, refs: Sequence[str], meanings: Mapping[str, MarkingMeaning], ladder: Ladder, closed: bool
) -> MarkingSet:
    """The marking set these refs would make when `originator` publishes them (not stored: id 0)."""
    missing = [r for r in refs if r not in meanings]
    if missing:
        raise InvalidObject(f"unknown marking-definition {missing[0]}: the draft must carry its definition")
    rank, rel_to, tlp = combine([meanings[r] for r in dict.fromkeys(refs)], ladder)
    return MarkingSet(0, originator, rank, None if closed else rel_to, tlp)


@dataclass(frozen=True)
class Judged:
    """One draft object as a party would receive it (None: withheld), and why it gets less than the whole."""

    id: str
    released: dict[str, Any] | None
    reasons: tuple[str, ...] = ()


def judge_draft(
    objects: Sequence[dict[str, Any]],
    originator: str,
    nation: str,
    clearance: int,
    ladder: Ladder,
    communities: Mapping[str, frozenset[str]],
    stored_hidden: Callable[[list[redact.Shape]], set[str]] | None = None,
) -> list[Judged]:
    """Each non-definition object of a draft that `originator` would publish, as (`nation`, `clearance`) would
    receive it, with the reasons (domain/explain). `stored_hidden` says which references to objects outside
    the draft are hidden (None: none are, as for `relto mark` without a node)."""
    meanings = draft_meanings(objects, ladder)
    drafts = [o for o in objects if o.get("type") != "marking-definition"]
    plans: list[tuple[MarkingSet, list[tuple[str, MarkingSet]], redact.Analysis]] = []
    for obj in drafts:
        refs = [str(r) for r in obj.get("object_marking_refs") or ()]
        closed = not any(
            (m := meanings.get(r)) is not None and m.releasability is not None and m.releasability.rel_to is not None
            for r in refs
        )
        analysis = redact.analyse(obj)
        whole_refs = [*refs, *(r for f in analysis.fields if f.whole_required for r in f.refs)]
        field_sets = [
            (f.selector, template(originator, [*refs, *f.refs], meanings, ladder, closed))
            for f in analysis.fields
            if not f.whole_required
        ]
        plans.append((template(originator, whole_refs, meanings, ladder, closed), field_sets, analysis))
    whole = [visible(nation, clearance, ms, communities) for ms, _, _ in plans]
    # The draft's own objects are hidden from the party exactly when they would be withheld from it; stored
    # ones as `stored_hidden` judges them.
    local = {str(d["id"]) for d in drafts}
    hidden = {str(o["id"]) for o, ok in zip(drafts, whole, strict=True) if not ok}
    if stored_hidden is not None:
        shapes = [redact.Shape((), tuple(r for r in a.references if r not in local), (), True) for _, _, a in plans]
        hidden |= stored_hidden(shapes)
    out: list[Judged] = []
    for obj, ok, (ms, field_sets, analysis) in zip(drafts, whole, plans, strict=True):
        released = None
        cut = [sel for sel, fs in field_sets if not visible(nation, clearance, fs, communities)]
        ids = hidden.intersection(analysis.references)
        if ok:
            released = redact.redact(copy.deepcopy(obj), cut, ids, nested=True)
        reasons = explain(
            obj,
            released,
            nation=nation,
            clearance=clearance,
            whole=ms,
            fields=field_sets,
            hidden_ids=ids,
            members=communities,
            ladder=ladder,
        )
        out.append(Judged(str(obj.get("id")), released, reasons))
    return out


def cut_draft(
    releaser: Releaser,
    requester: Party,
    target: Party,
    objects: Sequence[dict[str, Any]],
    ladder: Ladder,
    communities: Mapping[str, frozenset[str]],
) -> list[Judged]:
    """Each non-definition object of the draft as `target` would receive it from `requester`, and why."""

    def stored_hidden(shapes: list[redact.Shape]) -> set[str]:
        # Stored objects as the Releaser judges them for the target, and for the requester, who is shown
        # nothing it may not see.
        hidden: set[str] = set()
        if target.nation != requester.nation:
            hidden |= releaser.hidden_in(target.nation, releaser.policy.visible_sets(target), shapes)
        hidden |= releaser.hidden_in(requester.nation, releaser.policy.visible_sets(requester), shapes)
        return hidden

    return judge_draft(objects, requester.nation, target.nation, target.clearance, ladder, communities, stored_hidden)


def today_members(communities: Any) -> Mapping[str, frozenset[str]]:
    """Community name -> members today (UTC), as the policy reads them now."""
    return membership_index(communities, datetime.now(UTC).date())


def draft_objects(doc: Any) -> list[dict[str, Any]]:
    """The objects of a draft to preview: one object, a list of them, a bundle or an envelope."""
    objects = doc if isinstance(doc, list) else objects_of(doc)
    if not objects:
        raise InvalidRequest("there is nothing to preview: the draft holds no objects")
    for obj in objects:
        if not isinstance(obj, dict) or not isinstance(obj.get("id"), str) or not isinstance(obj.get("type"), str):
            raise InvalidRequest(
                f"each object to preview must be a JSON object with its 'type' and 'id', not {obj!r:.80}"
            )
    return objects


def draft_answer(judged: Sequence[Judged], party: Party, level: str, default: bool, publisher: str) -> dict[str, Any]:
    """A draft preview as JSON: whose view, published by whom, and each object as released (null) with reasons."""
    return {
        "nation": party.nation,
        "clearance": level,
        "clearance_default": default,
        "publisher": publisher,
        "objects": [{"id": j.id, "released": j.released, "reasons": list(j.reasons)} for j in judged],
    }


def clearance_words(party: Party, level: str, default: bool) -> str:
    """'as UKR at TOP SECRET (the top of this node's ladder; --clearance to change)'."""
    said = " (the top of this node's ladder; --clearance to change)" if default else ""
    return f"as {party.nation} at {level}{said}"
