"""Query parameters an endpoint does not take are ignored; malformed values of those it takes are a 400.

TAXII 2.1 section 3.4: "Requests MAY use a <field> not defined in this specification, and servers MAY
ignore fields they do not understand"; "If any of the URL query parameters are malformed, the TAXII Server
MUST return an HTTP 400". It says nothing of other unknown parameters: relto ignores those too, so a
client's cache-buster or a match field of another server's (match[relationship_type]) does not break a
read. (The 400s for malformed values are in test_bad_input.py.)
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from relto.domain.levels import DEFAULT_LEVELS, Ladder
from relto.domain.markings import releasability_marking
from tests.conftest import Harness

TS = "2024-01-01T00:00:00.000Z"
UNKNOWN: list[dict[str, str]] = [
    {"_": "1717171717171"},  # a cache-buster
    {"match[relationship_type]": "uses"},  # another server's match field
    {"match[colour]": "blue", "colour": "blue", "x_acme_trace": "on"},
]
MARKING = releasability_marking("SECRET", ["GBR", "KOR"], Ladder.of(DEFAULT_LEVELS))


def indicator(**over: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "type": "indicator",
        "spec_version": "2.1",
        "id": f"indicator--{uuid.uuid4()}",
        "created": TS,
        "modified": TS,
        "name": "bad domain",
        "pattern": "[domain-name:value = 'evil.example']",
        "pattern_type": "stix",
        "valid_from": TS,
        "object_marking_refs": [MARKING["id"]],
    }
    obj.update(over)
    return obj


@pytest.fixture
def published(harness: Harness) -> tuple[Harness, str, str, dict[str, Any]]:
    token, coll = harness.token("GBR"), harness.collection()
    obj = indicator()
    status = harness.post(token, coll, [MARKING, obj])
    return harness, token, coll, {"object": obj, "status": status["id"]}


def get(h: Harness, token: str, path: str, params: dict[str, str]) -> httpx.Response:
    return h.client.get(path, params=params, headers=h.headers(token))


@pytest.mark.parametrize("unknown", UNKNOWN, ids=[",".join(u) for u in UNKNOWN])
def test_unknown_parameters_are_ignored_on_every_read(
    published: tuple[Harness, str, str, dict[str, Any]], unknown: dict[str, str]
) -> None:
    h, token, coll, made = published
    object_id = made["object"]["id"]
    base = f"/api/collections/{coll}"
    paths = [
        "/taxii2/",
        "/api/",
        "/api/collections/",
        f"{base}/",
        f"{base}/objects/",
        f"{base}/manifest/",
        f"{base}/objects/{object_id}/",
        f"{base}/objects/{object_id}/versions/",
        f"/api/status/{made['status']}/",
        "/relto/extension-definition/",
    ]
    for path in paths:
        plain, with_unknown = get(h, token, path, {}), get(h, token, path, unknown)
        assert plain.status_code == with_unknown.status_code == 200, (path, with_unknown.text)
        assert with_unknown.json() == plain.json(), path
    preview = f"{base}/objects/{object_id}/preview/"
    plain, with_unknown = (
        get(h, token, preview, {"nation": "KOR"}),
        get(h, token, preview, {"nation": "KOR", **unknown}),
    )
    assert plain.status_code == with_unknown.status_code == 200, with_unknown.text
    assert with_unknown.json() == plain.json()


def test_known_filters_still_apply_beside_unknown_ones(published: tuple[Harness, str, str, dict[str, Any]]) -> None:
    h, token, coll, made = published
    r = get(h, token, f"/api/collections/{coll}/objects/", {"match[type]": "indicator,", "unknown[]": "", "_": "2"})
    assert r.status_code == 200 and r.json()["objects"] == [made["object"]]


def test_parameters_of_other_endpoints_are_ignored_where_not_taken(
    published: tuple[Harness, str, str, dict[str, Any]],
) -> None:
    """match[type] and match[id] filter the collection, not one object; versions/ lists every version."""
    h, token, coll, made = published
    object_id = made["object"]["id"]
    one = f"/api/collections/{coll}/objects/{object_id}/"
    assert get(h, token, one, {"match[type]": "malware"}).json()["objects"] == [made["object"]]
    versions = get(h, token, f"{one}versions/", {"match[version]": "first", "match[id]": "x"})
    assert versions.status_code == 200 and versions.json()["versions"] == [TS]


def test_delete_ignores_unknown_parameters(published: tuple[Harness, str, str, dict[str, Any]]) -> None:
    h, token, coll, made = published
    path = f"/api/collections/{coll}/objects/{made['object']['id']}/"
    r = h.client.delete(path, params={"_": "1", "match[version]": TS}, headers=h.headers(token))
    assert r.status_code == 200, r.text
    assert get(h, token, path, {}).status_code == 404


def test_malformed_known_parameters_are_still_400_beside_unknown_ones(
    published: tuple[Harness, str, str, dict[str, Any]],
) -> None:
    h, token, coll, _ = published
    for bad in ({"limit": "0"}, {"added_after": "yesterday"}, {"match[version]": "soon"}, {"next": "garbage"}):
        r = get(h, token, f"/api/collections/{coll}/objects/", {"_": "1", **bad})
        assert r.status_code == 400, (bad, r.text)
        assert next(iter(bad)) in r.json()["description"]
