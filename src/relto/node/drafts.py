"""What a nation would receive of a draft not yet published ("view as"): marked, judged and cut without
storing anything, not even a marking set.

A draft's markings are read from the definitions in it (as the publisher reads them: see MarkingResolver),
folded into marking-set templates that are judged with the one policy function (domain/policy.visible), and
each version is cut with the same redact step the Releaser uses: narrower fields removed, references to
objects hidden from the nation removed, the version withheld when a required part would go.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from relto.domain import redact
from relto.domain.communities import membership_index
from relto.domain.errors import InvalidObject
from relto.domain.levels import Ladder
from relto.domain.markings import TLP_BY_ID, MarkingMeaning, MarkingSet, combine, interpret_marking_definition
from relto.domain.parties import Party
from relto.domain.policy import visible
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


def cut_draft(
    releaser: Releaser,
    requester: Party,
    target: Party,
    objects: Sequence[dict[str, Any]],
    ladder: Ladder,
    communities: Mapping[str, frozenset[str]],
) -> list[dict[str, Any] | None]:
    """Each non-definition object of the draft as `target` would receive it from `requester` (None: withheld)."""
    meanings = draft_meanings(objects, ladder)
    drafts = [o for o in objects if o.get("type") != "marking-definition"]
    whole: list[bool] = []
    plans: list[tuple[list[str], redact.Analysis]] = []
    for obj in drafts:
        refs = [str(r) for r in obj.get("object_marking_refs") or ()]
        closed = not any(
            (m := meanings.get(r)) is not None and m.releasability is not None and m.releasability.rel_to is not None
            for r in refs
        )
        analysis = redact.analyse(obj)
        whole_refs = [*refs, *(r for f in analysis.fields if f.whole_required for r in f.refs)]
        ms = template(requester.nation, whole_refs, meanings, ladder, closed)
        whole.append(visible(target.nation, target.clearance, ms, communities))
        hidden_fields = [
            f.selector
            for f in analysis.fields
            if not f.whole_required
            and not visible(
                target.nation,
                target.clearance,
                template(requester.nation, [*refs, *f.refs], meanings, ladder, closed),
                communities,
            )
        ]
        plans.append((hidden_fields, analysis))
    # The draft's own objects are hidden from the target exactly when they would be withheld from it; stored
    # ones as the Releaser judges them for the target (and for the requester, who is shown nothing it may not see).
    local_hidden = {str(o["id"]) for o, ok in zip(drafts, whole, strict=True) if not ok}
    stored_refs = [
        redact.Shape((), tuple(r for r in a.references if r not in {str(d["id"]) for d in drafts}), (), True)
        for _, a in plans
    ]
    hidden = set(local_hidden)
    if target.nation != requester.nation:
        hidden |= releaser.hidden_in(target, releaser.policy.visible_sets(target), stored_refs)
    hidden |= releaser.hidden_in(requester, releaser.policy.visible_sets(requester), stored_refs)
    out: list[dict[str, Any] | None] = []
    for obj, ok, (fields, analysis) in zip(drafts, whole, plans, strict=True):
        if not ok:
            out.append(None)
            continue
        ids = hidden.intersection(analysis.references)
        out.append(redact.redact(copy.deepcopy(obj), fields, ids, nested=True))
    return out


def today_members(communities: Any) -> Mapping[str, frozenset[str]]:
    """Community name -> members today (UTC), as the policy reads them now."""
    return membership_index(communities, datetime.now(UTC).date())
