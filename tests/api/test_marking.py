"""The body of POST /api/mark/ (relto.api.marking): its shape checked, with messages that say what to fix."""

from __future__ import annotations

from typing import Any

import pytest

from relto.api.marking import parse_mark_request
from relto.domain.errors import InvalidRequest
from tests.domain.test_tearline import report


def test_parse_mark_request() -> None:
    request = parse_mark_request(
        {
            "object": report(),
            "classification": "UNCLASSIFIED",
            "rel_to": ["GBR"],
            "tlp": "green",
            "fields": {"description": {"classification": "SECRET", "rel_to": ["GBR"]}},
            "replace": True,
        }
    )
    assert request.objects == [report()]
    assert request.fields == {"description": ("SECRET", ["GBR"])}
    assert request.tlp == "green" and request.replace


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], "must be a JSON object"),
        ({"objects": [1], "classification": "U", "rel_to": ["GBR"], "extra": 1}, "unknown properties ['extra']"),
        ({"classification": "U", "rel_to": ["GBR"]}, 'exactly one of "object"'),
        ({"object": {}, "objects": [], "classification": "U", "rel_to": ["GBR"]}, 'exactly one of "object"'),
        ({"objects": [], "classification": "U", "rel_to": ["GBR"]}, "non-empty list"),
        ({"objects": {}, "classification": "U", "rel_to": ["GBR"]}, "non-empty list"),
        ({"object": {}, "rel_to": ["GBR"]}, '"classification" must be'),
        ({"object": {}, "classification": "U", "rel_to": "GBR"}, '"rel_to" must be'),
        ({"object": {}, "classification": "U", "rel_to": ["GBR"], "tlp": 1}, '"tlp" must be one of'),
        ({"object": {}, "classification": "U", "rel_to": ["GBR"], "fields": []}, '"fields" must map'),
        ({"object": {}, "classification": "U", "rel_to": ["GBR"], "fields": {"a": "S"}}, '"fields.a" must be'),
        (
            {"object": {}, "classification": "U", "rel_to": ["GBR"], "fields": {"a": {"rel_to": ["GBR"]}}},
            '"fields.a.classification" must be',
        ),
        ({"object": {}, "classification": "U", "rel_to": ["GBR"], "replace": "yes"}, '"replace" must be'),
    ],
)
def test_parse_mark_request_says_what_to_fix(doc: Any, message: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_mark_request(doc)
    assert message in caught.value.message
