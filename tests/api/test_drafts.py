"""The publish form as STIX objects (relto.api.drafts): every type builds valid, markable objects."""

from __future__ import annotations

from typing import Any

import pytest

from relto.api.drafts import parse_draft
from relto.domain.errors import InvalidRequest
from relto.domain.tearline import mark_objects

MARKS = {"collection": "c", "classification": "SECRET", "rel_to": ["GBR", "KOR"]}
TARGET = "indicator--4a2b6e1c-6c56-4a0e-9d0f-3d1b2b6f0a11"


@pytest.mark.parametrize(
    ("form", "types"),
    [
        ({"type": "report", "name": "R", "description": "d", "latitude": 1, "longitude": 2}, ["report", "location"]),
        ({"type": "report", "name": "R", "object_refs": [TARGET]}, ["report"]),
        ({"type": "indicator", "name": "I", "pattern": "[ipv4-addr:value = '198.51.100.7']"}, ["indicator"]),
        (
            {"type": "indicator", "pattern": "[ipv4-addr:value = '198.51.100.7']", "latitude": "5", "longitude": "6"},
            ["indicator", "location", "relationship"],
        ),
        ({"type": "sighting", "sighting_of_ref": TARGET, "latitude": 1, "longitude": 2}, ["sighting", "location"]),
        ({"type": "note", "description": "text", "object_refs": [TARGET]}, ["note"]),
        ({"type": "location", "name": "L", "latitude": -33.9, "longitude": 151.2}, ["location"]),
        (
            {"type": "threat-actor", "name": "T", "latitude": 1, "longitude": 2},
            ["threat-actor", "location", "relationship"],
        ),
    ],
)
def test_each_type_builds_markable_objects(form: dict[str, Any], types: list[str]) -> None:
    tearline = {"tearline": {"classification": "SECRET", "rel_to": ["GBR"]}} if "description" in form else {}
    _, request, item_id = parse_draft({**MARKS, **form, **tearline})
    assert bool(request.fields) == bool(tearline)
    assert [o["type"] for o in request.objects] == types and request.objects[0]["id"] == item_id
    marked = mark_objects(
        request.objects, classification=request.classification, rel_to=request.rel_to, fields=request.fields
    )
    assert len(marked.objects) == len(types)  # mark_objects runs the STIX checks on each


@pytest.mark.parametrize(
    ("form", "says"),
    [
        ({"type": "malware"}, "type must be one of"),
        ({"type": "report", "name": "R"}, "names at least one object"),
        ({"type": "note", "object_refs": [TARGET]}, "needs its text"),
        ({"type": "indicator"}, "STIX pattern"),
        ({"type": "sighting"}, "sighting_of_ref"),
        ({"type": "location"}, "click the map"),
        ({"type": "location", "latitude": 91, "longitude": 0}, "within -90..90"),
        ({"type": "location", "latitude": "north", "longitude": 0}, "must be numbers"),
        ({"type": "threat-actor", "colour": "red"}, "unknown form fields"),
        ({"type": "threat-actor", "name": 7}, "must be text"),
        (
            {"type": "threat-actor", "name": "T", "tearline": {"classification": "SECRET", "rel_to": ["GBR"]}},
            "there is none",
        ),
    ],
)
def test_bad_forms_say_what_to_fix(form: dict[str, Any], says: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_draft({**MARKS, **form})
    assert says in caught.value.message
