"""The UI's publish form, checked for shape and turned into STIX objects and a mark request (docs/ui.md).

One item per form: a report, indicator, sighting, note, location or threat actor; a point picked on the map
becomes a location object published with it (named by the report's or note's object_refs, the sighting's
where_sighted_refs, or a relationship from the others). The markings are applied by domain/tearline.mark_objects,
exactly as for POST /api/mark/.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from relto.api.marking import MarkRequest, parse_mark_request
from relto.domain.errors import InvalidRequest
from relto.domain.timestamps import format_timestamp, now_micros

TYPES = ("report", "indicator", "sighting", "note", "location", "threat-actor")
TEXT_FIELD = {"note": "content"}  # where each type keeps the free text (default: description)
_FORM_KEYS = {
    "collection",
    "type",
    "name",
    "description",
    "pattern",
    "latitude",
    "longitude",
    "object_refs",
    "sighting_of_ref",
    "classification",
    "rel_to",
    "tlp",
    "tearline",
    "nation",
    "clearance",
}


def parse_draft(doc: Any) -> tuple[str, MarkRequest, str]:
    """(collection id, the mark request of the item's objects, the item's id) from the publish form's JSON.

    `tearline` is {"classification": ..., "rel_to": [...]} for the item's text field, or absent.
    """
    if not isinstance(doc, dict):
        raise InvalidRequest("the body must be a JSON object with the form's fields")
    unknown = set(doc) - _FORM_KEYS
    if unknown:
        raise InvalidRequest(f"unknown form fields {sorted(unknown)}")
    collection = _text(doc, "collection", required=True)
    kind = _text(doc, "type", required=True)
    if kind not in TYPES:
        raise InvalidRequest(f"type must be one of {', '.join(TYPES)}")
    objects = build_objects(kind, doc)
    mark: dict[str, Any] = {
        "objects": objects,
        "classification": doc.get("classification"),
        "rel_to": doc.get("rel_to"),
    }
    if doc.get("tlp"):
        mark["tlp"] = doc["tlp"]
    tearline = doc.get("tearline")
    if tearline:
        text = TEXT_FIELD.get(kind, "description")
        if text not in objects[0]:
            raise InvalidRequest(
                "the tearline marks the description, and there is none: write one, or drop the tearline"
            )
        mark["fields"] = {text: tearline}
    return collection, parse_mark_request(mark), str(objects[0]["id"])


def build_objects(kind: str, doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The item (first) and the objects published with it, unmarked."""
    now = format_timestamp(now_micros())
    base: dict[str, Any] = {
        "type": kind,
        "spec_version": "2.1",
        "id": f"{kind}--{uuid.uuid4()}",
        "created": now,
        "modified": now,
    }
    name = _text(doc, "name")
    text = _text(doc, "description")
    point = _point(doc)
    refs = [r for r in _list(doc, "object_refs") if r]
    location: dict[str, Any] | None = None
    if point is not None and kind != "location":
        location = {
            "type": "location",
            "spec_version": "2.1",
            "id": f"location--{uuid.uuid4()}",
            "created": now,
            "modified": now,
            "name": f"{name or kind} (location)",
            "latitude": point[0],
            "longitude": point[1],
        }
        refs.append(location["id"])
    item: dict[str, Any] = dict(base)
    if name:
        item["name"] = name
    if text:
        item[TEXT_FIELD.get(kind, "description")] = text
    extra: list[dict[str, Any]] = []
    if kind == "report":
        _need(name, "a report needs a name")
        if not refs:
            raise InvalidRequest("a report names at least one object: pick a location on the map or give object ids")
        item["published"] = now
        item["object_refs"] = refs
    elif kind == "note":
        _need(text, "a note needs its text (description)")
        if not refs:
            raise InvalidRequest("a note is about at least one object: pick a location on the map or give object ids")
        item["object_refs"] = refs
        item.pop("name", None)
    elif kind == "indicator":
        pattern = _text(doc, "pattern")
        _need(pattern, "an indicator needs a STIX pattern, e.g. [ipv4-addr:value = '198.51.100.7']")
        item.update(pattern=pattern, pattern_type="stix", valid_from=now)
    elif kind == "sighting":
        of = _text(doc, "sighting_of_ref")
        _need(of, "a sighting needs the id of what was sighted (sighting_of_ref), e.g. an indicator's id")
        item.pop("name", None)
        item["sighting_of_ref"] = of
        if location is not None:
            item["where_sighted_refs"] = [location["id"]]
    elif kind == "location":
        if point is None:
            raise InvalidRequest("a location needs latitude and longitude: click the map")
        item.update(latitude=point[0], longitude=point[1])
    elif kind == "threat-actor":
        _need(name, "a threat actor needs a name")
    if location is not None and kind in ("indicator", "threat-actor"):
        verb = "located-at" if kind == "threat-actor" else "related-to"
        extra.append(
            {
                "type": "relationship",
                "spec_version": "2.1",
                "id": f"relationship--{uuid.uuid4()}",
                "created": now,
                "modified": now,
                "relationship_type": verb,
                "source_ref": item["id"],
                "target_ref": location["id"],
            }
        )
    return [item, *([location] if location else []), *extra]


def _text(doc: dict[str, Any], key: str, *, required: bool = False) -> str:
    value = doc.get(key)
    if value is None or value == "":
        if required:
            raise InvalidRequest(f'"{key}" is required')
        return ""
    if not isinstance(value, str):
        raise InvalidRequest(f'"{key}" must be text')
    return value.strip()


def _list(doc: dict[str, Any], key: str) -> list[str]:
    value = doc.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidRequest(f'"{key}" must be a list of STIX ids')
    return [v.strip() for v in value]


def _point(doc: dict[str, Any]) -> tuple[float, float] | None:
    lat, lon = doc.get("latitude"), doc.get("longitude")
    if lat in (None, "") and lon in (None, ""):
        return None
    try:
        point = (float(lat), float(lon))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InvalidRequest("latitude and longitude must be numbers (degrees)") from None
    if not (-90 <= point[0] <= 90 and -180 <= point[1] <= 180):
        raise InvalidRequest("latitude must be within -90..90 and longitude within -180..180")
    return point


def _need(value: str, message: str) -> None:
    if not value:
        raise InvalidRequest(message)


def today() -> str:
    """Today's date (UTC) as YYYY-MM-DD."""
    return datetime.now(UTC).date().isoformat()
