"""TAXII 2.1 resources as bytes: envelopes, manifests, versions and statuses (TAXII 2.1 section 3.7, 4.3)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from relto.domain.errors import InvalidEnvelope, MalformedJSON
from relto.domain.timestamps import format_timestamp
from relto.store.base import StoredVersion


def parse_envelope(body: bytes) -> list[Any]:
    """The `objects` list of a posted envelope; 400 for bad JSON, 422 for a wrong shape."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedJSON(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidEnvelope('the body must be a TAXII envelope: {"objects": [ ...STIX objects... ]}')
    objects = doc.get("objects")
    if not isinstance(objects, list):
        raise InvalidEnvelope('the envelope needs an "objects" list of STIX objects')
    return objects


def version_of(v: StoredVersion) -> str:
    """The TAXII `version` of a stored version: its modified (or created), else its date_added."""
    return taxii_version(v.version_text, v.date_added)


def taxii_version(version_text: str | None, date_added: int | None) -> str:
    """An object's TAXII version (TAXII 2.1 section 3.4.1, match `version`): its `modified`, else `created`;
    an object with neither (an SCO) is known by its `date_added`, the one value this server keeps for it."""
    if version_text:
        return version_text
    return format_timestamp(date_added) if date_added is not None else ""


def version_order(rows: Sequence[StoredVersion]) -> list[int]:
    """The order to list a page in: each object's versions oldest first, in the places its versions took in
    arrival order. Objects keep their date_added order (TAXII 2.1 section 3.3) and the page keeps exactly its
    versions (the cursor is a sequence: nothing is skipped or repeated across pages)."""
    places: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        places.setdefault(row.stix_id, []).append(i)
    order = list(range(len(rows)))
    for slots in places.values():
        if len(slots) > 1:
            by_version = sorted(slots, key=lambda i: (_version_key(rows[i]), rows[i].seq))
            for slot, i in zip(slots, by_version, strict=True):
                order[slot] = i
    return order


def _version_key(v: StoredVersion) -> int:
    return v.version if v.version_text is not None else v.date_added


def envelope(bodies: Sequence[bytes], more: bool, next_cursor: str | None) -> bytes:
    """An envelope of already-serialised objects, joined without re-parsing them."""
    head = b'{"more":true,"next":' + orjson.dumps(next_cursor) if more else b'{"more":false'
    if not bodies:
        return head + b"}"
    return head + b',"objects":[' + b",".join(bodies) + b"]}"


def manifest(rows: Sequence[StoredVersion], more: bool, next_cursor: str | None) -> bytes:
    """A manifest resource for these versions."""
    doc: dict[str, Any] = {"more": more}
    if more:
        doc["next"] = next_cursor
    if rows:
        doc["objects"] = [
            {
                "id": r.stix_id,
                "date_added": format_timestamp(r.date_added),
                "version": version_of(r),
                "media_type": "application/stix+json;version=2.1",
            }
            for r in rows
        ]
    return orjson.dumps(doc)


def versions(rows: Sequence[StoredVersion], more: bool, next_cursor: str | None) -> bytes:
    """A versions resource for one object."""
    doc: dict[str, Any] = {"more": more}
    if more:
        doc["next"] = next_cursor
    if rows:
        doc["versions"] = [version_of(r) for r in rows]
    return orjson.dumps(doc)


def status(
    status_id: str,
    request_timestamp: int,
    successes: Sequence[dict[str, str]],
    failures: Sequence[dict[str, str]],
) -> dict[str, Any]:
    """A completed status resource (we store before answering, so nothing is ever pending)."""
    return {
        "id": status_id,
        "status": "complete",
        "request_timestamp": format_timestamp(request_timestamp),
        "total_count": len(successes) + len(failures),
        "success_count": len(successes),
        "successes": list(successes),
        "failure_count": len(failures),
        "failures": list(failures),
        "pending_count": 0,
        "pendings": [],
    }
