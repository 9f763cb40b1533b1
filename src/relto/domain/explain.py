"""Why a party receives less than the whole of an object: the reasons in words. Pure functions, no I/O.

The decision itself is made elsewhere (domain/policy.visible for marking sets, domain/redact.redact for fields
and references); `explain` is given the same inputs (the version's marking set, the marking sets of its narrower
fields, the ids hidden from the party) and what was released, and says which of them took what away. It asks
the one policy function which sets the party may see, so it cannot disagree with the decision.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from relto.domain.levels import Ladder
from relto.domain.markings import MarkingSet
from relto.domain.policy import releasable_to, visible
from relto.domain.redact import references
from relto.domain.selectors import required

__all__ = ["explain", "marking_words", "why_not"]


def marking_words(
    ms: MarkingSet, ladder: Ladder, nation: str | None = None, members: Mapping[str, frozenset[str]] | None = None
) -> str:
    """A marking set as an analyst reads it: 'SECRET REL TO GBR, KOR' (with `nation`, only the REL TO groups
    that leave it out, when any do)."""
    groups = list(ms.rel_to or ())
    if nation is not None:
        shut = [g for g in groups if not releasable_to(nation, MarkingSet(0, ms.originator, 0, (g,)), members or {})]
        groups = shut or groups
    words = ladder.name(ms.rank)
    if ms.rel_to is None:
        words += f" (no REL TO: {ms.originator} only)" if ms.originator else " (no REL TO)"
    elif groups:
        words += " " + " and ".join("REL TO " + ", ".join(g) if g else "REL TO no other nation" for g in groups)
    if ms.tlp:
        words += f" TLP:{ms.tlp.upper()}"
    return words


def why_not(
    nation: str, clearance: int, ms: MarkingSet, members: Mapping[str, frozenset[str]], ladder: Ladder
) -> tuple[str, str] | None:
    """Why a party may not see a marking set, as (the marking, what it does): ('SECRET REL TO GBR, KOR',
    'does not include UKR'); None if it may."""
    if visible(nation, clearance, ms, members):
        return None
    if not releasable_to(nation, ms, members):
        return marking_words(ms, ladder, nation, members), f"does not include {nation}"
    return marking_words(ms, ladder), f"is above {nation}'s clearance {ladder.name(clearance)}"


def explain(
    obj: Mapping[str, Any],
    released: Mapping[str, Any] | None,
    *,
    nation: str,
    clearance: int,
    whole: MarkingSet,
    fields: Sequence[tuple[str, MarkingSet]],
    hidden_ids: Collection[str],
    members: Mapping[str, frozenset[str]],
    ladder: Ladder,
) -> tuple[str, ...]:
    """Why `nation` receives `released` (None: nothing) rather than the whole of `obj`; () when it gets all.

    `whole` is the version's marking set (with any marking on a whole required property), `fields` the marking
    set of each narrower field (object markings + the field's), `hidden_ids` the referenced ids hidden from it.
    """
    subject = str(obj.get("id"))
    why = why_not(nation, clearance, whole, members, ladder)
    if why is not None:
        return (f"{nation} would receive nothing of {subject}: its marking {why[0]} {why[1]}",)
    reasons: list[tuple[str, str]] = []  # (property it cuts, reason)
    for selector, ms in fields:
        because = why_not(nation, clearance, ms, members, ladder)
        if because is not None:
            said = f"the field {selector} is marked {because[0]}, which {because[1]}"
            reasons.append((selector.partition(".")[0], said))
    gone: dict[str, list[str]] = {}  # top-level property -> its references hidden from the party
    for path, ref in references(obj):
        if ref in hidden_ids:
            gone.setdefault(str(path[0]), []).append(ref)
    needed = required(str(obj.get("type")))
    if released is None:
        causes = _withheld(obj, nation, gone, needed) + [r for prop, r in reasons if prop in needed]
        causes = causes or [f"a property a {obj.get('type')} cannot go without would be cut"]
        return tuple(f"{nation} would receive nothing of {subject}: {c}" for c in causes)
    for prop, refs in gone.items():
        reasons += [
            (prop, f"its {prop.removesuffix('s')} {ref} is not releasable to {nation}, so it is left out")
            for ref in refs
        ]
    return tuple(r for _, r in reasons)


def _withheld(obj: Mapping[str, Any], nation: str, gone: Mapping[str, list[str]], needed: Collection[str]) -> list[str]:
    """The required references the cut would take: why a version whose marking admits the party is withheld."""
    kind = str(obj.get("type"))
    out = []
    for prop in sorted(needed):
        refs = gone.get(prop)
        if not refs:
            continue
        value = obj.get(prop)
        if not isinstance(value, list):
            out.append(f"its {prop} {refs[0]} is not releasable to {nation}, and a {kind} cannot go without it")
        elif len(value) == 1:
            out.append(
                f"its only {prop.removesuffix('s')} {refs[0]} is not releasable to {nation}, and a {kind} must name "
                "at least one object"
            )
        elif len(refs) >= len(value):
            out.append(
                f"none of its {prop} ({', '.join(refs)}) is releasable to {nation}, and a {kind} must name at least "
                "one object"
            )
    return out
