"""Tearlines made easy: mark a whole object widely and some of its fields more narrowly. Pure functions, no I/O.

The whole object gets one relto releasability marking (plus an optional TLP) in `object_marking_refs`; each
field marking becomes one `granular_markings` entry holding every selector marked alike. A field's markings
combine with the object's, the stricter winning (docs/tearlines.md), so a field marking only ever narrows:
the result says so in `warnings` when one would not.

`relto mark --apply` and `POST /api/mark/` (its body parsed in api/marking.py) are thin shells around
`mark_objects`. The selector grammar is domain/selectors.py's, shared with the release path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from relto.domain.errors import InvalidObject, InvalidRequest, InvalidValue
from relto.domain.levels import Ladder
from relto.domain.markings import (
    TLP_IDS,
    canonical_rel_to,
    check_rel_to_known,
    level_name,
    releasability_marking,
    tlp_definition,
)
from relto.domain.selectors import (
    ELEMENT_REQUIRED,
    INDEX,
    MARKINGS,
    check_selector_syntax,
    json_kind,
    required,
    why_unresolved,
)
from relto.domain.stix import check_object

FieldSpec = tuple[str, Sequence[str]]  # (classification, REL TO)


@dataclass(frozen=True, kw_only=True)
class Marked:
    """Objects with their markings applied, the marking-definitions they need, and advice for the analyst."""

    objects: tuple[dict[str, Any], ...]
    definitions: tuple[dict[str, Any], ...]
    warnings: tuple[str, ...] = ()

    def envelope(self) -> dict[str, Any]:
        """A TAXII envelope ready to POST to a collection: the definitions first, then the objects."""
        return {"objects": [*self.definitions, *self.objects]}


@dataclass(frozen=True)
class _Portion:
    """One releasability marking as the checks need it."""

    definition: dict[str, Any]
    rank: int
    rel_to: tuple[str, ...]

    @property
    def id(self) -> str:
        return str(self.definition["id"])

    @property
    def name(self) -> str:
        return str(self.definition["name"])


def mark_object(
    obj: Any,
    *,
    classification: str,
    rel_to: Sequence[str],
    tlp: str | None = None,
    fields: Mapping[str, FieldSpec] | None = None,
    replace: bool = False,
    ladder: Ladder | None = None,
    communities: Mapping[str, frozenset[str]] | None = None,
) -> Marked:
    """Mark one object: `classification REL TO rel_to` on the whole, `fields` (selector -> marking) on parts."""
    return mark_objects(
        [obj],
        classification=classification,
        rel_to=rel_to,
        tlp=tlp,
        fields=fields,
        replace=replace,
        ladder=ladder,
        communities=communities,
    )


def mark_objects(
    objects: Sequence[Any],
    *,
    classification: str,
    rel_to: Sequence[str],
    tlp: str | None = None,
    fields: Mapping[str, FieldSpec] | None = None,
    replace: bool = False,
    ladder: Ladder | None = None,
    communities: Mapping[str, frozenset[str]] | None = None,
) -> Marked:
    """Mark several objects alike; marking-definitions among them pass through unmarked.

    Every object gets the whole marking. A field marking applies to each object that has the selected field;
    a selector that names nothing in any of them is an error (a typo would otherwise leave the field wide).
    An object that already carries markings is refused unless `replace` (language markings are kept).
    `communities` (name -> member nations today) lets REL TO entries be checked and compared; without it,
    community names are checked for syntax only.
    """
    ladder = ladder or Ladder()
    whole = _portion(classification, rel_to, ladder, communities, "the whole object")
    tlp_def = _tlp(tlp)
    portions: dict[str, tuple[_Portion, list[str]]] = {}  # marking id -> (portion, selectors), first seen first
    for raw_selector, spec in (fields or {}).items():
        selector = check_selector_syntax(raw_selector)
        if any(selector in sels for _, sels in portions.values()):
            raise InvalidValue(f"selector {selector!r} is given twice: give each field one marking")
        portion = _field_portion(selector, spec, ladder, communities)
        portions.setdefault(portion.id, (portion, []))[1].append(selector)

    definitions: dict[str, dict[str, Any]] = {whole.id: whole.definition}
    if tlp_def is not None:
        definitions[tlp_def["id"]] = tlp_def
    for portion, _ in portions.values():
        definitions.setdefault(portion.id, portion.definition)
    for obj in objects:
        if _is_definition(obj):
            definitions.setdefault(obj["id"], obj)
    targets = [obj for obj in objects if not _is_definition(obj)]
    if not targets:
        raise InvalidRequest("there is no STIX object to mark (marking-definitions alone are never marked)")
    names = [_describe(obj) for obj in targets]

    selectors = [s for _, sels in portions.values() for s in sels]
    misses = {s: [why_unresolved(name, obj, s) for name, obj in zip(names, targets, strict=True)] for s in selectors}
    warnings: list[str] = []
    for s, why in misses.items():
        missing = [name for name, miss in zip(names, why, strict=True) if miss is not None]
        if len(missing) == len(targets):
            first = str(why[0])
            raise InvalidValue(first if len(targets) == 1 else f"{first} (nor in the other objects)")
        if missing:
            shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
            warnings.append(f"{s!r} names nothing in {shown}: that field marking is not applied there")

    narrowing: dict[str, tuple[_Portion, list[str]]] = {}  # only these can withhold a version
    for key, (portion, sels) in portions.items():
        narrows, advice = _advice(whole, portion, sels, ladder, communities)
        warnings.extend(advice)
        if narrows:
            narrowing[key] = (portion, sels)
    marked: list[dict[str, Any]] = []
    for i, obj in enumerate(targets):
        present = {s for s in selectors if misses[s][i] is None}
        marked.append(_mark(obj, whole, tlp_def, portions, present, replace))
        warnings.extend(_required_advice(marked[-1], whole, narrowing, present))
    return Marked(objects=tuple(marked), definitions=tuple(definitions.values()), warnings=tuple(warnings))


def _mark(
    obj: dict[str, Any],
    whole: _Portion,
    tlp_def: dict[str, Any] | None,
    portions: Mapping[str, tuple[_Portion, list[str]]],
    present: set[str],
    replace: bool,
) -> dict[str, Any]:
    granular = obj.get("granular_markings")
    granular = granular if isinstance(granular, list) or granular is None else [granular]
    lang = [g for g in granular or () if isinstance(g, dict) and "lang" in g]
    if (obj.get("object_marking_refs") or len(lang) < len(granular or ())) and not replace:
        raise InvalidObject(
            f"{_describe(obj)} already carries markings (object_marking_refs or granular_markings): remove them, "
            'or ask to replace them (relto mark --replace; "replace": true for /api/mark/)'
        )
    out = {k: v for k, v in obj.items() if k not in MARKINGS}
    out["object_marking_refs"] = [whole.id] + ([tlp_def["id"]] if tlp_def else [])
    entries = list(lang)
    for portion, sels in portions.values():
        mine = [s for s in sels if s in present]
        if mine:
            entries.append({"selectors": mine, "marking_ref": portion.id})
    if entries:
        out["granular_markings"] = entries
    try:
        check_object(out)
    except InvalidObject as exc:
        raise InvalidObject(f"{_describe(obj)}: {exc.message}") from None
    return out


# inputs -------------------------------------------------------------------------------------------------
def parse_field(text: str) -> tuple[str, FieldSpec]:
    """'object_refs.[2]=SECRET:GBR,USA' -> ('object_refs.[2]', ('SECRET', ['GBR', 'USA']))."""
    selector, eq, marking = text.partition("=")
    classification, colon, rel_to = marking.partition(":")
    if not eq or not colon or not selector.strip() or not classification.strip() or not rel_to.strip():
        raise InvalidValue(
            f"field marking {text!r} is not SELECTOR=CLASSIFICATION:REL,TO "
            "(for example description=SECRET:GBR or object_refs.[2]=SECRET:GBR,USA)"
        )
    return selector.strip(), (classification.strip(), [p for p in rel_to.split(",") if p.strip()])


def objects_of(doc: Any) -> list[Any]:
    """The objects of a JSON document: one STIX object, a STIX bundle, or a TAXII envelope."""
    if isinstance(doc, dict) and (doc.get("type") == "bundle" or "type" not in doc):
        objects = doc.get("objects")
        if not isinstance(objects, list):
            raise InvalidRequest('give one STIX object, a bundle or an envelope {"objects": [...]}: no "objects" list')
        return objects
    if isinstance(doc, dict):
        return [doc]
    raise InvalidRequest(
        f'give one STIX object, a bundle or an envelope {{"objects": [...]}}, not a JSON {json_kind(doc)}'
    )


# checks -------------------------------------------------------------------------------------------------
def _portion(
    classification: str,
    rel_to: Sequence[str],
    ladder: Ladder,
    communities: Mapping[str, frozenset[str]] | None,
    what: str,
) -> _Portion:
    try:
        level = level_name(classification, ladder)
        parties = canonical_rel_to(rel_to)
        if not parties:
            raise InvalidValue("REL TO needs at least one nation or community")
        if communities is not None:
            check_rel_to_known(parties, communities)
    except InvalidValue as exc:
        raise InvalidValue(f"{what}: {exc.message}") from None
    return _Portion(releasability_marking(level, parties, ladder), ladder.rank(level), parties)


def _field_portion(
    selector: str, spec: Any, ladder: Ladder, communities: Mapping[str, frozenset[str]] | None
) -> _Portion:
    if not (isinstance(spec, tuple | list) and len(spec) == 2 and isinstance(spec[0], str)):
        raise InvalidValue(f"field {selector!r}: give (classification, REL TO list), got {spec!r}")
    classification, rel_to = spec
    if isinstance(rel_to, str) or not all(isinstance(p, str) for p in rel_to):
        raise InvalidValue(f"field {selector!r}: REL TO must be a list of nation codes and community names")
    return _portion(classification, rel_to, ladder, communities, f"field {selector!r}")


def _tlp(name: str | None) -> dict[str, Any] | None:
    if name is None:
        return None
    key = name.strip().lower().removeprefix("tlp:")
    if key not in TLP_IDS:
        raise InvalidValue(f"unknown TLP {name!r}; TLP 2.0 names are {', '.join(TLP_IDS)}")
    return tlp_definition(key)


def _expand(rel_to: Sequence[str], communities: Mapping[str, frozenset[str]] | None) -> frozenset[str]:
    """The parties a REL TO admits: nations, communities' members today; unknown communities stay names."""
    out: set[str] = set()
    for entry in rel_to:
        out |= communities[entry] if communities is not None and entry in communities else {entry}
    return frozenset(out)


def _advice(
    whole: _Portion,
    part: _Portion,
    selectors: Sequence[str],
    ladder: Ladder,
    communities: Mapping[str, frozenset[str]] | None,
) -> tuple[bool, list[str]]:
    """Whether a field marking narrows the whole, and warnings where it does not or less than it seems to."""
    which = ", ".join(repr(s) for s in selectors)
    admitted = _expand(whole.rel_to, communities)
    if part.rank <= whole.rank and admitted <= _expand(part.rel_to, communities):
        return False, [
            f"{part.name} on {which} is not narrower than the whole object ({whole.name}): markings combine and "
            "the stricter wins, so it has no effect"
        ]
    out: list[str] = []
    if part.rank < whole.rank:
        out.append(
            f"{part.name} on {which}: the level is below the whole object's ({ladder.name(whole.rank)}); "
            f"the stricter wins, so {which} stays {ladder.name(whole.rank)}"
        )
    wider = [e for e in part.rel_to if not _expand([e], communities) <= admitted]
    if wider:
        out.append(
            f"{part.name} on {which}: {', '.join(wider)} reaches beyond the whole object ({whole.name}); "
            "a field is released only where its object is, never wider, so parties outside the whole never see it"
        )
    return True, out


def _required_advice(
    obj: Mapping[str, Any],
    whole: _Portion,
    portions: Mapping[str, tuple[_Portion, list[str]]],
    present: set[str],
) -> list[str]:
    """Warn where a field marking withholds the whole version (docs/tearlines.md, Required properties)."""
    needed = required(str(obj.get("type")))
    out: list[str] = []
    marked_elements: dict[str, set[int]] = {}
    for portion, sels in portions.values():
        for s in sels:
            if s not in present:
                continue
            head, _, rest = s.partition(".")
            if not rest and head in needed:
                instead = f"elements such as '{head}.[0]'" if isinstance(obj.get(head), list) else "optional properties"
                out.append(
                    f"{_describe(obj)}: {head!r} is required for a {obj.get('type')}, so {portion.name} on it marks "
                    f"the whole version and a party outside it receives none of it; to keep a tearline, mark {instead} "
                    "instead"
                )
            steps = s.split(".")
            if len(steps) >= 3 and INDEX.fullmatch(steps[-2]) and steps[-1] in ELEMENT_REQUIRED.get(steps[-3], ()):
                element = ".".join(steps[:-1])
                out.append(
                    f"{_describe(obj)}: {steps[-1]!r} is required in each of {steps[-3]!r}; a party outside "
                    f"{portion.name} would receive {element!r} without it, which is not valid STIX: mark {element!r} "
                    "instead"
                )
            index = INDEX.fullmatch(rest)
            if head in needed and index is not None:
                marked_elements.setdefault(head, set()).add(int(index[1]))
    for head, indexes in marked_elements.items():
        value = obj.get(head)
        if isinstance(value, list) and len(indexes) >= len(value):
            out.append(
                f"{_describe(obj)}: every element of the required {head!r} carries a field marking; a party admitted "
                f"to the whole ({whole.name}) but to none of them receives no version of it"
            )
    return out


def _is_definition(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get("type") == "marking-definition" and isinstance(obj.get("id"), str)


def _describe(obj: Any) -> str:
    if not isinstance(obj, dict):
        raise InvalidObject(f"each object to mark must be a JSON object, not a JSON {json_kind(obj)}")
    id_ = obj.get("id")
    if not isinstance(id_, str) or not isinstance(obj.get("type"), str):
        raise InvalidObject("each object to mark needs its 'type' and 'id'")
    return id_
