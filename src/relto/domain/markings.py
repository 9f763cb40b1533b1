"""Markings: the relto releasability marking (classification + REL TO), TLP 2.0, and marking sets.

A relto marking is a STIX 2.1 marking-definition carrying the relto property-extension. Its id is a UUIDv5
of its canonical contents, so the same classification and REL TO give the same id on every node.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from relto.domain.communities import check_community_name
from relto.domain.errors import InvalidObject, InvalidValue
from relto.domain.levels import Ladder
from relto.domain.parties import check_nation

# The namespace of every id relto derives; never change it, or ids stop matching across nodes.
RELTO_NAMESPACE = uuid.UUID("6f3c2a0e-5b1d-5d8e-9c47-2a1e7b0d4f10")
RELTO_IDENTITY_ID = f"identity--{uuid.uuid5(RELTO_NAMESPACE, 'identity:relto')}"
RELTO_EXTENSION_ID = f"extension-definition--{uuid.uuid5(RELTO_NAMESPACE, 'extension:releasability:1')}"
# A fixed creation time keeps derived objects byte-identical on every node.
RELTO_EPOCH = "2024-10-21T00:00:00.000Z"

TLP_IDS: dict[str, str] = {
    "clear": "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
    "green": "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
    "amber": "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
    "amber+strict": "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",
    "red": "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",
}
# TLP 1.0 ids from the STIX 2.1 specification, still in wide use; mapped onto TLP 2.0 names.
TLP1_IDS: dict[str, str] = {
    "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9": "clear",
    "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da": "green",
    "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82": "amber",
    "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed": "red",
}
TLP_BY_ID: dict[str, str] = {**{v: k for k, v in TLP_IDS.items()}, **TLP1_IDS}
TLP_ORDER = ("clear", "green", "amber", "amber+strict", "red")
TLP_EXTENSION_ID = "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d"
# ISA's ACS 3.0 marking (cti-stix-common-objects): its control_set.classification codes and
# permitted_nationalities are read as a releasability marking when the node's ladder has the levels.
ACS_EXTENSION_ID = "extension-definition--3a65884d-005a-4290-8335-cb2d778a83ce"
ACS_LEVELS = {"U": "UNCLASSIFIED", "C": "CONFIDENTIAL", "S": "SECRET", "TS": "TOP SECRET"}


def tlp_definition(name: str) -> dict[str, Any]:
    """The standard TLP 2.0 marking-definition object for a TLP name (clear, green, amber, ...)."""
    return {
        "type": "marking-definition",
        "spec_version": "2.1",
        "id": TLP_IDS[name],
        "created": "2022-10-01T00:00:00.000Z",
        "name": f"TLP:{name.upper()}",
        "extensions": {TLP_EXTENSION_ID: {"extension_type": "property-extension", "tlp_2_0": name}},
    }


def level_name(name: str, ladder: Ladder) -> str:
    """A ladder level from its name or its ACS 3.0 code (U, C, S, TS)."""
    key = name.strip().upper()
    return ladder.name(ladder.rank(ACS_LEVELS.get(key, key)))


@dataclass(frozen=True)
class Releasability:
    """What one relto marking says: a classification and the parties it may be released to (any-of)."""

    classification: str
    rel_to: tuple[str, ...] | None


def canonical_rel_to(entries: Iterable[str]) -> tuple[str, ...]:
    """Nation codes and community names, checked, upper-cased, de-duplicated and sorted."""
    out: set[str] = set()
    for raw in entries:
        item = raw.strip().upper()
        if not item:
            continue
        if len(item) == 3 and item.isalpha():
            out.add(check_nation(item))
        else:
            out.add(check_community_name(item))
    return tuple(sorted(out))


def check_rel_to_known(parties: Iterable[str], communities: Collection[str]) -> None:
    """Raise unless each REL TO entry is a nation code or one of `communities` (names known to the node)."""
    for entry in parties:
        if len(entry) != 3 and entry not in communities:
            raise InvalidValue(
                f"{entry!r} is neither a nation code (ISO 3166-1 alpha-3, e.g. GBR) nor a known community "
                f"({', '.join(sorted(communities))})"
            )


def releasability_id(level: str, parties: tuple[str, ...]) -> str:
    """The id of relto's marking for a (canonical) level and REL TO: the UUIDv5 of those contents."""
    key = f"releasability:1|{level}|{','.join(parties)}"
    return f"marking-definition--{uuid.uuid5(RELTO_NAMESPACE, key)}"


def releasability_marking(classification: str, rel_to: Iterable[str], ladder: Ladder) -> dict[str, Any]:
    """The marking-definition for `classification REL TO rel_to`, with its deterministic id."""
    level = level_name(classification, ladder)
    parties = canonical_rel_to(rel_to)
    if not parties:
        raise InvalidValue("REL TO needs at least one nation or community")
    return {
        "type": "marking-definition",
        "spec_version": "2.1",
        "id": releasability_id(level, parties),
        "created": RELTO_EPOCH,
        "created_by_ref": RELTO_IDENTITY_ID,
        "name": f"{level} REL TO {', '.join(parties)}",
        "extensions": {
            RELTO_EXTENSION_ID: {
                "extension_type": "property-extension",
                "classification": level,
                "rel_to": list(parties),
            }
        },
    }


def relto_identity() -> dict[str, Any]:
    """The identity that authors relto's extension and marking definitions."""
    return {
        "type": "identity",
        "spec_version": "2.1",
        "id": RELTO_IDENTITY_ID,
        "created": RELTO_EPOCH,
        "modified": RELTO_EPOCH,
        "name": "relto",
        "identity_class": "system",
        "description": "The relto coalition intelligence-sharing node software.",
    }


def relto_extension_definition() -> dict[str, Any]:
    """The extension-definition object that describes relto's releasability marking."""
    return {
        "type": "extension-definition",
        "spec_version": "2.1",
        "id": RELTO_EXTENSION_ID,
        "created_by_ref": RELTO_IDENTITY_ID,
        "created": RELTO_EPOCH,
        "modified": RELTO_EPOCH,
        "name": "relto releasability marking",
        "description": (
            "A property-extension of marking-definition: `classification` is a level of the node's "
            "classification ladder (default UNCLASSIFIED < RESTRICTED < CONFIDENTIAL < SECRET < TOP SECRET); "
            "`rel_to` lists ISO 3166-1 alpha-3 nations and community names (NATO, EU, FVEY, IP4, ...) the "
            "marked data may be released to, any-of. The originating nation is always included. Several "
            "relto markings on one object must all be satisfied."
        ),
        "schema": "https://github.com/relto/relto/blob/main/docs/markings.md",
        "version": "1.0.0",
        "extension_types": ["property-extension"],
    }


@dataclass(frozen=True)
class MarkingMeaning:
    """What a known marking-definition means to the policy."""

    kind: str  # "releasability", "tlp" or "statement" (any other marking: carried, no effect on reads)
    releasability: Releasability | None = None
    tlp: str | None = None
    # The id proves the meaning (relto's markings, the TLP ids): any copy of the definition says the same.
    self_verifying: bool = field(default=False, compare=False)


def interpret_marking_definition(obj: Mapping[str, Any], ladder: Ladder) -> MarkingMeaning:
    """Read a marking-definition object; raise InvalidObject if it is malformed or contradicts its own id.

    Meaning is never taken on trust (DESIGN invariant 10): a TLP id means its TLP level whatever the body
    says (and a body saying otherwise is refused); a relto marking's id must be the UUIDv5 of its contents.
    """
    extensions = obj.get("extensions")
    tlp = TLP_BY_ID.get(obj.get("id", ""))
    if tlp is not None:
        _check_tlp_body(obj, tlp, extensions)
        return MarkingMeaning("tlp", tlp=tlp, self_verifying=True)
    if not isinstance(extensions, dict):
        return MarkingMeaning("statement")
    if ACS_EXTENSION_ID in extensions:
        return _interpret_acs(extensions[ACS_EXTENSION_ID], ladder)
    ext = extensions.get(RELTO_EXTENSION_ID)
    if ext is None:
        return MarkingMeaning("statement")
    if not isinstance(ext, dict):
        raise InvalidObject(f"extension {RELTO_EXTENSION_ID} must be an object")
    level = ext.get("classification")
    rel_to = ext.get("rel_to")
    if not isinstance(level, str):
        raise InvalidObject("relto marking: 'classification' must be a level name such as \"SECRET\"")
    if not isinstance(rel_to, list) or not rel_to or not all(isinstance(p, str) for p in rel_to):
        raise InvalidObject("relto marking: 'rel_to' must be a non-empty list of nation codes and community names")
    try:
        name = ladder.name(ladder.rank(level))
        parties = canonical_rel_to(rel_to)
    except InvalidValue as exc:
        raise InvalidObject(f"relto marking: {exc.message}") from None
    expected = releasability_id(name, parties)
    if obj.get("id") != expected:
        raise InvalidObject(
            f"relto marking: its id must be the UUIDv5 of its contents, {expected} for "
            f"{name} REL TO {', '.join(parties)} (relto markings are self-verifying: `relto mark` makes them)"
        )
    return MarkingMeaning("releasability", releasability=Releasability(name, parties), self_verifying=True)


def _check_tlp_body(obj: Mapping[str, Any], tlp: str, extensions: Any) -> None:
    """Refuse a body under a TLP id that says something else (another level, or a releasability marking)."""
    said: set[str] = set()
    if isinstance(extensions, dict):
        if RELTO_EXTENSION_ID in extensions or ACS_EXTENSION_ID in extensions:
            said.add("a releasability marking")
        ext = extensions.get(TLP_EXTENSION_ID)
        if isinstance(ext, dict) and ext.get("tlp_2_0") is not None:
            said.add(str(ext.get("tlp_2_0")).lower())
    definition = obj.get("definition")
    if obj.get("definition_type") == "tlp" and isinstance(definition, dict) and definition.get("tlp") is not None:
        level = str(definition.get("tlp")).lower()
        said.add("clear" if level == "white" else level)
    wrong = said - {tlp}
    if wrong:
        raise InvalidObject(
            f"{obj.get('id')} is the standard TLP:{tlp.upper()} marking; this body says {', '.join(sorted(wrong))}"
        )


def _interpret_acs(ext: Any, ladder: Ladder) -> MarkingMeaning:
    control = ext.get("control_set") if isinstance(ext, dict) else None
    level = control.get("classification") if isinstance(control, dict) else None
    if not isinstance(level, str):
        raise InvalidObject("ACS 3.0 marking: control_set.classification is required (U, C, S or TS)")
    nations = control.get("permitted_nationalities") if isinstance(control, dict) else None
    if nations is not None and (not isinstance(nations, list) or not all(isinstance(n, str) for n in nations)):
        raise InvalidObject("ACS 3.0 marking: control_set.permitted_nationalities must be a list of codes")
    try:
        name = level_name(level, ladder)
        parties = canonical_rel_to(nations) if nations else ()
    except InvalidValue as exc:
        raise InvalidObject(f"ACS 3.0 marking: {exc.message}") from None
    # No permitted nationalities: the originator only. An empty any-of group admits no other nation, whatever
    # the marking is combined with (an absent group would let a wider marking decide alone).
    return MarkingMeaning("releasability", releasability=Releasability(name, parties))


@dataclass(frozen=True)
class MarkingSet:
    """One distinct combination of markings on stored versions; the policy is compiled per set.

    `rel_to` holds one any-of group per releasability marking (all groups must be satisfied; an empty group
    admits the originator only); None means the version carries no releasability marking and is visible to its
    originator nation only (fail closed).
    `public` marks the node's own vocabulary (TLP definitions), readable by every party.
    """

    id: int
    originator: str
    rank: int
    rel_to: tuple[tuple[str, ...], ...] | None
    tlp: str | None = None
    public: bool = False


def combine(
    meanings: Iterable[MarkingMeaning], ladder: Ladder
) -> tuple[int, tuple[tuple[str, ...], ...] | None, str | None]:
    """Fold markings into (classification rank, REL TO groups or None, strongest TLP)."""
    rank = 0
    groups: list[tuple[str, ...]] = []
    tlp: str | None = None
    for m in meanings:
        if m.releasability is not None:
            rank = max(rank, ladder.rank(m.releasability.classification))
            if m.releasability.rel_to is not None:
                groups.append(m.releasability.rel_to)
        elif m.tlp is not None and (tlp is None or TLP_ORDER.index(m.tlp) > TLP_ORDER.index(tlp)):
            tlp = m.tlp
    return rank, (tuple(sorted(set(groups))) if groups else None), tlp
