"""The body of POST /api/mark/ (relto's own endpoint, docs/tearlines.md), checked for shape before marking."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from relto.domain.errors import InvalidRequest
from relto.domain.levels import Ladder
from relto.domain.markings import TLP_IDS
from relto.domain.tearline import FieldSpec, Marked, mark_objects


@dataclass(frozen=True, kw_only=True)
class MarkRequest:
    """The body of POST /api/mark/, checked for shape."""

    objects: list[Any]
    classification: str
    rel_to: list[str]
    tlp: str | None = None
    fields: dict[str, FieldSpec] = field(default_factory=dict)
    replace: bool = False


def parse_mark_request(doc: Any) -> MarkRequest:
    """Check the shape of a mark request: {"object" | "objects", "classification", "rel_to", "tlp", "fields"}."""
    shape = (
        '{"objects": [...] or "object": {...}, "classification": "SECRET", "rel_to": ["GBR", "KOR"], '
        '"tlp": "amber" (optional), "fields": {"description": {"classification": "SECRET", "rel_to": ["GBR"]}}}'
    )
    if not isinstance(doc, dict):
        raise InvalidRequest(f"the body must be a JSON object: {shape}")
    unknown = set(doc) - {"object", "objects", "classification", "rel_to", "tlp", "fields", "replace"}
    if unknown:
        raise InvalidRequest(f"unknown properties {sorted(unknown)}; the body is {shape}")
    if ("object" in doc) == ("objects" in doc):
        raise InvalidRequest(f'give exactly one of "object" (a STIX object) and "objects" (a list): {shape}')
    objects = [doc["object"]] if "object" in doc else doc["objects"]
    if not isinstance(objects, list) or not objects:
        raise InvalidRequest('"objects" must be a non-empty list of STIX objects')
    classification, rel_to = _marking_of(doc, "")
    tlp = doc.get("tlp")
    if tlp is not None and not isinstance(tlp, str):
        raise InvalidRequest(f'"tlp" must be one of {", ".join(TLP_IDS)}')
    fields = doc.get("fields", {})
    if not isinstance(fields, dict):
        raise InvalidRequest('"fields" must map selectors to {"classification": ..., "rel_to": [...]}')
    specs: dict[str, FieldSpec] = {}
    for selector, marking in fields.items():
        if not isinstance(marking, dict):
            raise InvalidRequest(f'"fields.{selector}" must be {{"classification": "SECRET", "rel_to": ["GBR"]}}')
        specs[selector] = _marking_of(marking, f"fields.{selector}.")
    replace = doc.get("replace", False)
    if not isinstance(replace, bool):
        raise InvalidRequest('"replace" must be true or false')
    return MarkRequest(
        objects=objects, classification=classification, rel_to=rel_to, tlp=tlp, fields=specs, replace=replace
    )


def _marking_of(doc: Mapping[str, Any], where: str) -> tuple[str, list[str]]:
    classification = doc.get("classification")
    rel_to = doc.get("rel_to")
    if not isinstance(classification, str):
        raise InvalidRequest(f'"{where}classification" must be a level name such as "SECRET"')
    if not isinstance(rel_to, list) or not rel_to or not all(isinstance(p, str) for p in rel_to):
        raise InvalidRequest(f'"{where}rel_to" must be a non-empty list of nation codes and community names')
    return classification, rel_to


def mark(request: MarkRequest, ladder: Ladder, members: Mapping[str, frozenset[str]]) -> Marked:
    """The request's objects marked (definitions made), with the node's ladder and today's community members."""
    return mark_objects(
        request.objects,
        classification=request.classification,
        rel_to=request.rel_to,
        tlp=request.tlp,
        fields=request.fields,
        replace=request.replace,
        ladder=ladder,
        communities=members,
    )
