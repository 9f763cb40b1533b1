"""Bad input through the HTTP app: every class of mistake gets its exact status and a TAXII error body.

A TAXII 2.1 error message (section 3.6.1) is `{"title", "description", "http_status"}` in
application/taxii+json;version=2.1; the description must tell the client what to fix. Nothing a client
sends may produce a 5xx. Per-object mistakes inside an envelope are not request errors: the envelope is
answered 202 and the status lists each rejected object with the reason, and a rejected object leaves
nothing behind.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from starlette.testclient import TestClient

from relto.api import create_app
from relto.domain.communities import default_communities
from relto.domain.levels import DEFAULT_LEVELS, Ladder
from relto.domain.markings import RELTO_EXTENSION_ID, releasability_marking
from relto.node import Node
from relto.settings import Settings
from relto.store import open_store
from relto.store.base import NodeInfo
from tests.conftest import TAXII, Harness

TS = "2024-01-01T00:00:00.000Z"
LATER = "2024-06-01T00:00:00.000Z"


# helpers --------------------------------------------------------------------------------------------------
def assert_taxii_error(r: httpx.Response, status: int, *mentions: str) -> dict[str, Any]:
    """The response is a TAXII error message with this status whose description mentions each word."""
    assert r.status_code == status, (r.status_code, r.text)
    assert r.status_code < 500
    assert r.headers["content-type"] == TAXII
    body = r.json()
    assert isinstance(body, dict), body
    assert isinstance(body.get("title"), str) and body["title"].strip(), body
    assert isinstance(body.get("description"), str) and body["description"].strip(), body
    assert body.get("http_status") == str(status), body
    for word in mentions:
        assert word.lower() in body["description"].lower(), (word, body["description"])
    return body  # type: ignore[no-any-return]


def new_id(type_: str) -> str:
    return f"{type_}--{uuid.uuid4()}"


def indicator(**over: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "type": "indicator",
        "spec_version": "2.1",
        "id": new_id("indicator"),
        "created": TS,
        "modified": TS,
        "name": "bad domain",
        "pattern": "[domain-name:value = 'evil.example']",
        "pattern_type": "stix",
        "valid_from": TS,
    }
    obj.update(over)
    return obj


def objects_url(coll: str) -> str:
    return f"/api/collections/{coll}/objects/"


def post_raw(h: Harness, coll: str, content: bytes, **headers: str) -> httpx.Response:
    hdrs = h.headers(h.token("GBR"))
    hdrs.update(headers)
    return h.client.post(objects_url(coll), content=content, headers=hdrs)


def stored_ids(h: Harness, token: str, coll: str) -> set[str]:
    r = h.client.get(objects_url(coll), params={"match[version]": "all"}, headers=h.headers(token))
    assert r.status_code == 200, r.text
    return {o["id"] for o in r.json().get("objects", [])}


@pytest.fixture
def coll(harness: Harness) -> str:
    return harness.collection()


@pytest.fixture
def gbr(harness: Harness) -> str:
    return harness.token("GBR", "SECRET")


# 400 malformed JSON ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("content", [b"{not json", b"", b'{"objects": [}', b"\xff\xfe", b'{"objects": []} trailing'])
def test_malformed_json_is_400(harness: Harness, coll: str, content: bytes) -> None:
    assert_taxii_error(post_raw(harness, coll, content), 400, "JSON")


# 422 JSON that is not an envelope -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "doc", [[], [{"type": "indicator"}], {"objects": 5}, {}, {"objects": None}, {"objects": {}}, "objects", None, 7]
)
def test_json_that_is_not_an_envelope_is_422(harness: Harness, coll: str, doc: Any) -> None:
    assert_taxii_error(post_raw(harness, coll, orjson.dumps(doc)), 422, "objects")


def test_empty_envelope_is_accepted(harness: Harness, coll: str) -> None:
    r = post_raw(harness, coll, b'{"objects": []}')
    assert r.status_code == 202, r.text
    assert r.json()["total_count"] == 0


# 415 wrong Content-Type -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "text/plain",
        "application/taxii+json;version=2.0",
        "application/stix+json;version=2.1",
        "application/x-www-form-urlencoded",
    ],
)
def test_wrong_content_type_is_415(harness: Harness, coll: str, content_type: str) -> None:
    r = post_raw(harness, coll, orjson.dumps({"objects": [indicator()]}), **{"Content-Type": content_type})
    assert_taxii_error(r, 415, "Content-Type", TAXII)


def test_missing_content_type_is_415(harness: Harness, coll: str) -> None:
    token = harness.token("GBR")
    headers = {"Authorization": f"Bearer {token}", "Accept": TAXII}
    r = harness.client.post(objects_url(coll), content=orjson.dumps({"objects": []}), headers=headers)
    # httpx adds no Content-Type for raw bytes; make sure none went out.
    assert "content-type" not in r.request.headers
    assert_taxii_error(r, 415, "Content-Type")


@pytest.mark.parametrize("content_type", ["application/taxii+json;version=2.1", "application/taxii+json; version=2.1"])
def test_taxii_21_content_type_is_accepted(harness: Harness, coll: str, content_type: str) -> None:
    r = post_raw(harness, coll, orjson.dumps({"objects": [indicator()]}), **{"Content-Type": content_type})
    assert r.status_code == 202, r.text


# 406 Accept that does not allow TAXII 2.1 -----------------------------------------------------------------
@pytest.mark.parametrize(
    "accept",
    ["application/xml", "application/taxii+json;version=2.0", "text/html", "application/stix+json;version=2.0"],
)
@pytest.mark.parametrize("what", ["objects", "manifest", "collection", "discovery", "post"])
def test_accept_without_taxii_21_is_406(harness: Harness, coll: str, gbr: str, accept: str, what: str) -> None:
    headers = {**harness.headers(gbr), "Accept": accept}
    paths = {
        "objects": objects_url(coll),
        "manifest": f"/api/collections/{coll}/manifest/",
        "collection": f"/api/collections/{coll}/",
        "discovery": "/taxii2/",
    }
    if what == "post":
        r = harness.client.post(objects_url(coll), content=b'{"objects": []}', headers=headers)
    else:
        r = harness.client.get(paths[what], headers=headers)
    assert_taxii_error(r, 406, "Accept", TAXII)


def test_accept_that_refuses_taxii_with_q0_is_406(harness: Harness, coll: str, gbr: str) -> None:
    """RFC 9110 12.4.2: a quality value of 0 means "not acceptable"."""
    for accept in ("application/taxii+json;version=2.1;q=0", "*/*;q=0", "application/taxii+json;q=0, text/html"):
        headers = {**harness.headers(gbr), "Accept": accept}
        r = harness.client.get(objects_url(coll), headers=headers)
        assert_taxii_error(r, 406, "Accept")


@pytest.mark.parametrize(
    "accept",
    [
        None,
        "*/*",
        "application/*",
        TAXII,
        "application/taxii+json",
        "application/xml, application/taxii+json;version=2.1",
        "application/taxii+json;version=2.1;q=0.5",
    ],
)
def test_accept_missing_or_allowing_taxii_21_is_200(harness: Harness, coll: str, gbr: str, accept: str | None) -> None:
    headers = {"Authorization": f"Bearer {gbr}"}
    if accept is not None:
        headers["Accept"] = accept
    r = harness.client.get(objects_url(coll), headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == TAXII


# 413 body larger than max_content_length ------------------------------------------------------------------
@pytest.fixture
def small(tmp_path: Path) -> Iterator[Harness]:
    """A node that takes bodies of at most 1000 bytes."""
    store = open_store(data=tmp_path / "small")
    store.initialise(
        NodeInfo(node_id="small", nation="GBR", levels=DEFAULT_LEVELS, title="small node"), default_communities()
    )
    node = Node(store, Settings(max_content_length=1000))
    with TestClient(create_app(node)) as client:
        yield Harness(node, client)
    store.close()


def test_body_over_max_content_length_is_413(small: Harness) -> None:
    coll = small.collection()
    token = small.token("GBR")
    root = small.get(token, "/api/")
    assert root.json()["max_content_length"] == 1000
    big = orjson.dumps({"objects": [indicator(description="x" * 2000)]})
    assert len(big) > 1000
    r = small.client.post(objects_url(coll), content=big, headers=small.headers(token))
    assert_taxii_error(r, 413, "1000")
    # Nothing of it was stored.
    assert stored_ids(small, token, coll) == set()


def test_chunked_body_over_max_content_length_is_413(small: Harness) -> None:
    """Without a Content-Length the limit still holds while the body streams in."""
    coll = small.collection()
    token = small.token("GBR")
    big = orjson.dumps({"objects": [indicator(description="x" * 2000)]})

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(big), 100):
            yield big[i : i + 100]

    r = small.client.post(objects_url(coll), content=chunks(), headers=small.headers(token))
    assert "content-length" not in r.request.headers
    assert_taxii_error(r, 413, "1000")
    assert stored_ids(small, token, coll) == set()


def test_body_within_max_content_length_is_accepted(small: Harness) -> None:
    coll = small.collection()
    token = small.token("GBR")
    obj = indicator()
    body = orjson.dumps({"objects": [obj]})
    assert len(body) <= 1000
    r = small.client.post(objects_url(coll), content=body, headers=small.headers(token))
    assert r.status_code == 202, r.text
    assert stored_ids(small, token, coll) == {obj["id"]}


# 400 bad filters ------------------------------------------------------------------------------------------
BAD_FILTERS: list[tuple[dict[str, str], str]] = [
    ({"limit": "0"}, "limit"),
    ({"limit": "abc"}, "limit"),
    ({"limit": "-1"}, "limit"),
    ({"limit": "1.5"}, "limit"),
    ({"limit": ""}, "limit"),
    ({"limit": "\u00b2"}, "limit"),  # '²'.isdigit() is True, int('²') is not a number
    ({"added_after": "yesterday"}, "added_after"),
    ({"added_after": "2024-02-30T00:00:00Z"}, "added_after"),
    ({"match[version]": "notatime"}, "match[version]"),
    ({"match[version]": "last,notatime"}, "match[version]"),
    ({"next": "garbage"}, "next"),
    ({"next": "!!!"}, "next"),
    ({"next": base64.urlsafe_b64encode(b"relto:abc").decode()}, "next"),
]


@pytest.mark.parametrize(("params", "mention"), BAD_FILTERS, ids=[repr(p) for p, _ in BAD_FILTERS])
@pytest.mark.parametrize("endpoint", ["objects", "manifest"])
def test_bad_filter_is_400(
    harness: Harness, coll: str, gbr: str, params: dict[str, str], mention: str, endpoint: str
) -> None:
    harness.post(gbr, coll, [indicator()])
    r = harness.client.get(f"/api/collections/{coll}/{endpoint}/", params=params, headers=harness.headers(gbr))
    assert_taxii_error(r, 400, mention)


def test_malformed_value_of_a_filter_the_endpoint_takes_is_400(harness: Harness, coll: str, gbr: str) -> None:
    """(Parameters an endpoint does not take are ignored: tests/api/test_query_params.py.)"""
    obj = indicator()
    harness.post(gbr, coll, [obj])
    url = f"{objects_url(coll)}{obj['id']}/"
    r = harness.client.get(url, params={"match[version]": "soon"}, headers=harness.headers(gbr))
    assert_taxii_error(r, 400, "match[version]")
    r = harness.client.get(f"{url}versions/", params={"limit": "none"}, headers=harness.headers(gbr))
    assert_taxii_error(r, 400, "limit")


# 401 missing or malformed credentials ---------------------------------------------------------------------
def _paths(coll: str) -> list[tuple[str, str]]:
    return [
        ("GET", "/taxii2/"),
        ("GET", "/api/"),
        ("GET", "/api/collections/"),
        ("GET", objects_url(coll)),
        ("GET", f"/api/collections/{coll}/manifest/"),
        ("POST", objects_url(coll)),
        ("GET", f"/api/status/{uuid.uuid4()}/"),
    ]


def _send(h: Harness, method: str, path: str, authorization: str | None) -> httpx.Response:
    headers = {"Accept": TAXII, "Content-Type": TAXII}
    if authorization is not None:
        headers["Authorization"] = authorization
    content = orjson.dumps({"objects": [indicator()]}) if method == "POST" else None
    return h.client.request(method, path, content=content, headers=headers)


def assert_401(r: httpx.Response) -> None:
    assert_taxii_error(r, 401)
    challenge = r.headers.get("www-authenticate", "")
    assert "basic" in challenge.lower() or "bearer" in challenge.lower(), r.headers


def test_no_authorization_is_401_with_challenge(harness: Harness, coll: str) -> None:
    for method, path in _paths(coll):
        r = _send(harness, method, path, None)
        assert_401(r)
        assert "token" in r.json()["description"].lower()


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    "authorization",
    [
        "Basic !!!not-base64!!!",
        "Basic " + base64.b64encode(b"no-colon-here").decode(),
        "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(),
        "Basic",
        "Digest username=gbr",
        "Token rt_0123456789abcdef_secret",
        "Bearer",
        "Bearer ",
        "Bearer not-a-token",
        "Bearer rt_short_secret",
        "Bearer rt_0123456789abcdef",
        "Bearer rt_0123456789abcdef_",
        "Bearer rt_0123456789abcdef_" + "A" * 43,  # right shape, unknown key id
        _basic("anyone", "rt_0123456789abcdef_" + "A" * 43),
        "rt_0123456789abcdef_" + "A" * 43,  # a token with no scheme
    ],
)
def test_malformed_or_unknown_authorization_is_401(harness: Harness, coll: str, authorization: str) -> None:
    harness.token("GBR")  # the node has a token; this is not it
    for method, path in _paths(coll):
        assert_401(_send(harness, method, path, authorization))


def test_known_key_id_with_wrong_secret_is_401(harness: Harness, coll: str, gbr: str) -> None:
    key = gbr[: len("rt_") + 16]
    for wrong in (f"{key}_{'A' * 43}", f"{key}_x", gbr[:-1]):
        for method, path in _paths(coll):
            assert_401(_send(harness, method, path, f"Bearer {wrong}"))


def test_basic_with_the_token_as_password_is_accepted(harness: Harness, coll: str, gbr: str) -> None:
    """The positive control for the Basic cases above."""
    r = _send(harness, "GET", objects_url(coll), _basic("anyone", gbr))
    assert r.status_code == 200, r.text
    r = _send(harness, "GET", objects_url(coll), f"bearer {gbr}")
    assert r.status_code == 200, r.text


# 403 read-only token --------------------------------------------------------------------------------------
def test_read_only_token_cannot_post(harness: Harness, coll: str) -> None:
    reader = harness.token("GBR", "SECRET", can_write=False)
    obj = indicator()
    body = orjson.dumps({"objects": [obj]})
    r = harness.client.post(objects_url(coll), content=body, headers=harness.headers(reader))
    assert_taxii_error(r, 403, "publish")
    assert stored_ids(harness, reader, coll) == set()
    # It may still read.
    assert harness.get(reader, objects_url(coll)).status_code == 200


# 404 -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("missing", [str(uuid.uuid4()), "not-a-collection"])
def test_unknown_collection_is_404(harness: Harness, gbr: str, missing: str) -> None:
    harness.collection()
    obj = new_id("indicator")
    for suffix in ("objects/", "manifest/", "", f"objects/{obj}/", f"objects/{obj}/versions/"):
        r = harness.get(gbr, f"/api/collections/{missing}/{suffix}")
        assert_taxii_error(r, 404, missing)
    r = harness.client.post(
        f"/api/collections/{missing}/objects/",
        content=orjson.dumps({"objects": [indicator()]}),
        headers=harness.headers(gbr),
    )
    assert_taxii_error(r, 404, missing)


@pytest.mark.parametrize("missing", [new_id("indicator"), "garbage"])
def test_unknown_object_is_404(harness: Harness, coll: str, gbr: str, missing: str) -> None:
    harness.post(gbr, coll, [indicator()])
    for suffix in ("", "versions/"):
        r = harness.get(gbr, f"{objects_url(coll)}{missing}/{suffix}")
        assert_taxii_error(r, 404, missing)
    r = harness.client.delete(f"{objects_url(coll)}{missing}/", headers=harness.headers(gbr))
    assert_taxii_error(r, 404, missing)


def test_unknown_status_is_404(harness: Harness, gbr: str) -> None:
    for missing in (str(uuid.uuid4()), "garbage"):
        for path in (f"/api/status/{missing}/", f"/api/status/{missing}"):
            assert_taxii_error(harness.get(gbr, path), 404, missing)


def test_another_tokens_status_is_404(harness: Harness, coll: str, gbr: str) -> None:
    status = harness.post(gbr, coll, [indicator()])
    assert harness.get(gbr, f"/api/status/{status['id']}/").status_code == 200
    for other in (harness.token("USA"), harness.token("GBR", "TOP SECRET"), harness.token("GBR", can_write=False)):
        for path in (f"/api/status/{status['id']}/", f"/api/status/{status['id']}"):
            assert_taxii_error(harness.get(other, path), 404, status["id"])
    # An admin may read every status.
    assert harness.get(harness.token("GBR", admin=True), f"/api/status/{status['id']}/").status_code == 200


@pytest.mark.parametrize(
    "path", ["/nothing/", "/api/nothing/", "/api/collections/x/y/z/w/", "/taxii2/extra/", "/api/status/"]
)
def test_unknown_endpoint_is_404_taxii_body(harness: Harness, gbr: str, path: str) -> None:
    assert_taxii_error(harness.get(gbr, path), 404, "endpoint")


# 405 -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "where"),
    [
        ("PUT", "objects/"),
        ("PATCH", "objects/"),
        ("DELETE", "objects/"),
        ("POST", "manifest/"),
        ("POST", ""),
        ("PUT", "objects/{id}/"),
    ],
)
def test_wrong_method_is_405_taxii_body(harness: Harness, coll: str, gbr: str, method: str, where: str) -> None:
    path = f"/api/collections/{coll}/" + where.format(id=new_id("indicator"))
    r = harness.client.request(method, path, content=b'{"objects": []}', headers=harness.headers(gbr))
    assert_taxii_error(r, 405, "method")


def test_405_names_the_allowed_methods(harness: Harness, coll: str, gbr: str) -> None:
    """RFC 9110 15.5.6: a 405 response MUST carry an Allow header listing the target's methods."""
    r = harness.client.put(objects_url(coll), content=b'{"objects": []}', headers=harness.headers(gbr))
    assert r.status_code == 405
    allowed = {m.strip().upper() for m in r.headers.get("allow", "").split(",") if m.strip()}
    assert {"GET", "POST"} <= allowed, r.headers


# per-object failures inside an envelope --------------------------------------------------------------------
def _relto_marking(**ext: Any) -> dict[str, Any]:
    good = releasability_marking("SECRET", ["GBR", "USA"], Ladder())
    bad = {**good, "id": new_id("marking-definition")}
    bad["extensions"] = {RELTO_EXTENSION_ID: {**good["extensions"][RELTO_EXTENSION_ID], **ext}}
    return bad


def _without(obj: dict[str, Any], *props: str) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in props}


BAD_OBJECTS: dict[str, tuple[Any, str]] = {
    "missing type": (_without(indicator(), "type"), "'type'"),
    "type with capitals": (indicator(type="Indicator"), "'type'"),
    "id not a uuid": (indicator(id="indicator--not-a-uuid"), "'id'"),
    "id of another type": (indicator(id=new_id("malware")), "'id'"),
    "id missing": (_without(indicator(), "id"), "'id'"),
    "id not a string": (indicator(id=42), "'id'"),
    "missing spec_version on an SDO": (_without(indicator(), "spec_version"), "spec_version"),
    "spec_version 2.0": (indicator(spec_version="2.0"), "spec_version"),
    "spec_version number": (indicator(spec_version=2.1), "spec_version"),
    "missing created and modified": (_without(indicator(), "created", "modified"), "created"),
    "missing modified": (_without(indicator(), "modified"), "modified"),
    "missing created": (_without(indicator(), "created"), "created"),
    "month 13": (indicator(created="2024-13-01T00:00:00Z", modified="2024-13-01T00:00:00Z"), "created"),
    "created yesterday": (indicator(created="yesterday"), "timestamp"),
    "created a number": (indicator(created=12345), "timestamp"),
    "modified yesterday": (indicator(modified="yesterday"), "timestamp"),
    "no time zone": (indicator(created="2024-01-01T00:00:00", modified="2024-01-01T00:00:00"), "timestamp"),
    "offset not Z": (indicator(created="2024-01-01T00:00:00+01:00", modified=LATER), "timestamp"),
    "Feb 30": (indicator(created="2024-02-30T00:00:00Z", modified=LATER), "date"),
    "modified before created": (indicator(created=LATER, modified=TS), "earlier"),
    "object_marking_refs a string": (
        indicator(object_marking_refs="marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9"),
        "object_marking_refs",
    ),
    "object_marking_refs of identities": (indicator(object_marking_refs=[new_id("identity")]), "object_marking_refs"),
    "object_marking_refs not ids": (indicator(object_marking_refs=["TLP:RED"]), "object_marking_refs"),
    "unknown marking-definition": (
        indicator(object_marking_refs=[new_id("marking-definition")]),
        "unknown marking-definition",
    ),
    "granular marking without selectors": (
        indicator(granular_markings=[{"marking_ref": new_id("marking-definition")}]),
        "selectors",
    ),
    "relationship without source_ref": (
        {
            "type": "relationship",
            "spec_version": "2.1",
            "id": new_id("relationship"),
            "created": TS,
            "modified": TS,
            "relationship_type": "indicates",
            "target_ref": new_id("malware"),
        },
        "source_ref",
    ),
    "created_by_ref not an identity": (indicator(created_by_ref=new_id("malware")), "created_by_ref"),
    "a string": ("indicator--00000000-0000-4000-8000-000000000000", "object"),
    "a number": (5, "object"),
    "null": (None, "object"),
    "a list": ([indicator()], "object"),
    "relto marking unknown classification": (_relto_marking(classification="SUPER SECRET"), "classification"),
    "relto marking empty rel_to": (_relto_marking(rel_to=[]), "rel_to"),
    "relto marking bad nation": (_relto_marking(rel_to=["G"]), "not a community name"),
    "relto marking extension not an object": (
        {**_relto_marking(), "extensions": {RELTO_EXTENSION_ID: "SECRET"}},
        RELTO_EXTENSION_ID,
    ),
}


def _expected_failure_id(bad: Any) -> str:
    return bad["id"] if isinstance(bad, dict) and isinstance(bad.get("id"), str) else ""


def _assert_absent(h: Harness, token: str, coll: str, bad: Any) -> None:
    bad_id = bad.get("id") if isinstance(bad, dict) else None
    if isinstance(bad_id, str) and bad_id:
        r = h.get(token, f"{objects_url(coll)}{bad_id}/")
        assert_taxii_error(r, 404)
        r = h.get(token, f"{objects_url(coll)}{bad_id}/versions/")
        assert_taxii_error(r, 404)


@pytest.mark.parametrize("case", list(BAD_OBJECTS))
def test_bad_object_in_a_mixed_envelope_is_a_failure_entry(harness: Harness, coll: str, gbr: str, case: str) -> None:
    bad, mention = BAD_OBJECTS[case]
    before, after = indicator(), indicator(name="another")
    status = harness.post(gbr, coll, [before, bad, after])

    assert status["status"] == "complete"
    assert status["total_count"] == 3
    assert status["success_count"] == 2
    assert status["failure_count"] == 1
    assert status["success_count"] + status["failure_count"] + status["pending_count"] == status["total_count"]
    assert {s["id"] for s in status["successes"]} == {before["id"], after["id"]}
    [failure] = status["failures"]
    assert failure["id"] == _expected_failure_id(bad)
    assert isinstance(failure["message"], str) and mention.lower() in failure["message"].lower(), failure

    # Good objects stored and readable; the bad one left nothing behind.
    assert stored_ids(harness, gbr, coll) == {before["id"], after["id"]}
    for good in (before, after):
        r = harness.get(gbr, f"{objects_url(coll)}{good['id']}/")
        assert r.status_code == 200, r.text
        assert r.json()["objects"] == [good]
    _assert_absent(harness, gbr, coll, bad)
    manifest = harness.get(gbr, f"/api/collections/{coll}/manifest/").json()
    assert {m["id"] for m in manifest["objects"]} == {before["id"], after["id"]}

    # The status is kept, with and without the trailing slash.
    for path in (f"/api/status/{status['id']}/", f"/api/status/{status['id']}"):
        r = harness.get(gbr, path)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == TAXII
        assert r.json() == status


def test_every_bad_object_at_once(harness: Harness, coll: str, gbr: str) -> None:
    goods = [indicator(name=f"good {i}") for i in range(3)]
    bads = [bad for bad, _ in BAD_OBJECTS.values()]
    envelope = [goods[0], *bads[: len(bads) // 2], goods[1], *bads[len(bads) // 2 :], goods[2]]
    status = harness.post(gbr, coll, envelope)

    assert status["total_count"] == len(envelope)
    assert status["success_count"] + status["failure_count"] == status["total_count"]
    assert status["success_count"] == len(goods)
    assert status["failure_count"] == len(bads)
    assert status["pending_count"] == 0
    assert sorted(f["id"] for f in status["failures"]) == sorted(_expected_failure_id(b) for b in bads)
    assert all(f["message"].strip() for f in status["failures"])
    assert stored_ids(harness, gbr, coll) == {g["id"] for g in goods}
    for bad in bads:
        _assert_absent(harness, gbr, coll, bad)
    for path in (f"/api/status/{status['id']}/", f"/api/status/{status['id']}"):
        assert harness.get(gbr, path).json() == status


def _statement_marking(**over: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "type": "marking-definition",
        "spec_version": "2.1",
        "id": new_id("marking-definition"),
        "created": TS,
        "definition_type": "statement",
        "definition": {"statement": "Copyright relto tests"},
    }
    obj.update(over)
    return obj


REJECTED_MARKINGS = {
    "relto unknown classification": _relto_marking(classification="SUPER SECRET"),
    "relto empty rel_to": _relto_marking(rel_to=[]),
    "relto bad timestamp": {**_relto_marking(), "created": "yesterday"},
    "statement marked with an unknown marking": _statement_marking(object_marking_refs=[new_id("marking-definition")]),
}


@pytest.mark.parametrize("case", list(REJECTED_MARKINGS))
def test_rejected_marking_definition_leaves_nothing_behind(harness: Harness, coll: str, gbr: str, case: str) -> None:
    """An object in the same envelope that relies on a rejected marking-definition is rejected too."""
    marking = REJECTED_MARKINGS[case]
    relying = indicator(object_marking_refs=[marking["id"]])
    good = indicator(name="unmarked")
    status = harness.post(gbr, coll, [relying, marking, good])

    assert status["success_count"] == 1, status
    assert [s["id"] for s in status["successes"]] == [good["id"]]
    assert {f["id"] for f in status["failures"]} == {marking["id"], relying["id"]}
    relying_failure = next(f for f in status["failures"] if f["id"] == relying["id"])
    assert marking["id"] in relying_failure["message"]
    assert stored_ids(harness, gbr, coll) == {good["id"]}
    _assert_absent(harness, gbr, coll, marking)
    _assert_absent(harness, gbr, coll, relying)

    # A later envelope may not rely on it either.
    later = indicator(object_marking_refs=[marking["id"]])
    status = harness.post(gbr, coll, [later])
    assert status["failure_count"] == 1
    assert "unknown marking-definition" in status["failures"][0]["message"]


def test_objects_may_rely_on_a_good_marking_in_the_same_envelope(harness: Harness, coll: str, gbr: str) -> None:
    """The control for the test above: the same shapes, with a valid definition, are stored."""
    marking = releasability_marking("SECRET", ["USA"], Ladder())
    statement = _statement_marking()
    relying = indicator(object_marking_refs=[marking["id"], statement["id"]])
    status = harness.post(gbr, coll, [relying, marking, statement])
    assert status["failure_count"] == 0, status
    assert stored_ids(harness, gbr, coll) == {marking["id"], statement["id"], relying["id"]}
    usa = harness.token("USA", "SECRET")
    r = harness.get(usa, f"{objects_url(coll)}{relying['id']}/")
    assert r.status_code == 200, r.text
