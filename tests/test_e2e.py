"""End to end: the real `relto serve` process, driven through every TAXII 2.1 endpoint by taxii2-client.

Tokens, collections and marking definitions come from the real `relto` command. Requests authenticate with
HTTP Basic (any user name, the token as password), as taxii2-client does. Where taxii2-client hides what we
need (response headers, error bodies, the status URL without a trailing slash) we ask with httpx instead.

One server serves the whole module; each test works in collections of its own, so tests stay independent.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
from taxii2client.exceptions import AccessError
from taxii2client.v21 import ApiRoot, Collection, Server, as_pages

from tests.conftest import BACKENDS, TAXII, PostgresDatabases, new_database, relto, start_server
from tests.conftest import Server as RunningServer

pytestmark = pytest.mark.slow

STIX = "application/stix+json;version=2.1"
USER = "e2e"  # taxii2-client sends HTTP Basic; relto reads the password as the token, any user name
MAX_CONTENT_LENGTH = 8 * 1024 * 1024  # relto's default setting

# (nation, clearance, extra `token issue` flags) of the parties the tests act as.
PARTIES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "gbr": ("GBR", "SECRET", ()),
    "gbr2": ("GBR", "SECRET", ()),
    "kor": ("KOR", "SECRET", ()),
    "kor_conf": ("KOR", "CONFIDENTIAL", ()),
    "ukr": ("UKR", "SECRET", ()),
    "gbr_ro": ("GBR", "SECRET", ("--read-only",)),
}


# -- the running node ------------------------------------------------------------------------------------


@dataclass
class Running:
    """The module's server, its parties' tokens, and taxii2-client endpoints closed after each test."""

    server: RunningServer
    tokens: dict[str, str]
    _open: list[Any] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.server.url

    def new_collection(self, title: str = "e2e", description: str = "") -> str:
        args = ["collection", "add", *self.server.db.args, title]
        if description:
            args += ["--description", description]
        return relto(*args)

    def _track(self, endpoint: Any) -> Any:
        self._open.append(endpoint)
        return endpoint

    def discovery(self, who: str) -> Server:
        return self._track(Server(f"{self.url}/taxii2/", user=USER, password=self.tokens[who]))

    def api_root(self, who: str) -> ApiRoot:
        return self._track(ApiRoot(f"{self.url}/api/", user=USER, password=self.tokens[who]))

    def collection(self, who: str, collection_id: str) -> Collection:
        url = f"{self.url}/api/collections/{collection_id}/"
        return self._track(Collection(url, user=USER, password=self.tokens[who]))

    def get(self, who: str | None, path: str, **params: Any) -> httpx.Response:
        auth = (USER, self.tokens[who]) if who else None
        return httpx.get(f"{self.url}{path}", params=params, auth=auth, headers={"Accept": TAXII})

    def post(self, who: str, collection_id: str, envelope: dict[str, Any]) -> httpx.Response:
        return httpx.post(
            f"{self.url}/api/collections/{collection_id}/objects/",
            content=json.dumps(envelope),
            auth=(USER, self.tokens[who]),
            headers={"Accept": TAXII, "Content-Type": TAXII},
        )

    def close_endpoints(self) -> None:
        while self._open:
            self._open.pop().close()


@pytest.fixture(scope="module", params=BACKENDS)
def node(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, postgres: PostgresDatabases | None
) -> Iterator[Running]:
    folder: Path = tmp_path_factory.mktemp("e2e")
    with new_database(request.param, folder, postgres) as db:
        admin = relto("init", *db.args, "--nation", "GBR")
        tokens = {"admin": admin}
        for name, (nation, clearance, extra) in PARTIES.items():
            tokens[name] = relto(
                "token", "issue", *db.args, "--nation", nation, "--clearance", clearance, "--name", name, *extra
            )
        server = start_server(db, admin, logs=folder)
        try:
            yield Running(server, tokens)
        finally:
            server.stop()


@pytest.fixture
def e2e(node: Running) -> Iterator[Running]:
    """The module's node; the taxii2-client endpoints a test opens are closed when it ends."""
    try:
        yield node
    finally:
        node.close_endpoints()


# -- STIX objects ----------------------------------------------------------------------------------------


def mark(classification: str, rel_to: str, tlp: str | None = None) -> dict[str, Any]:
    """`relto mark` output: {"refs": [...], "definitions": [...]}."""
    args = ["mark", "--classification", classification, "--rel-to", rel_to]
    if tlp:
        args += ["--tlp", tlp]
    return json.loads(relto(*args))  # type: ignore[no-any-return]


def stamp(day: int, month: int = 1, year: int = 2024) -> str:
    return f"{year:04d}-{month:02d}-{day:02d}T00:00:00.000Z"


def indicator(
    id_: str | None = None,
    modified: str = "2024-01-01T00:00:00.000Z",
    refs: list[str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "type": "indicator",
        "spec_version": "2.1",
        "id": id_ or f"indicator--{uuid.uuid4()}",
        "created": "2024-01-01T00:00:00.000Z",
        "modified": modified,
        "name": "bad domain",
        "pattern": "[domain-name:value = 'bad.example']",
        "pattern_type": "stix",
        "valid_from": "2024-01-01T00:00:00Z",
        **extra,
    }
    if refs is not None:
        obj["object_marking_refs"] = refs
    return obj


def malware(refs: list[str] | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "type": "malware",
        "spec_version": "2.1",
        "id": f"malware--{uuid.uuid4()}",
        "created": "2024-01-05T00:00:00.000Z",
        "modified": "2024-01-05T00:00:00.000Z",
        "name": "badware",
        "is_family": True,
    }
    if refs is not None:
        obj["object_marking_refs"] = refs
    return obj


def ids_of(envelope: dict[str, Any]) -> list[str]:
    return [o["id"] for o in envelope.get("objects", [])]


def http_status(exc: pytest.ExceptionInfo[requests.HTTPError]) -> int:
    assert exc.value.response is not None
    return exc.value.response.status_code


def assert_taxii_error(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/taxii+json")
    body = r.json()
    assert isinstance(body["title"], str) and body["title"]
    assert str(body["http_status"]) == str(status)
    return body  # type: ignore[no-any-return]


# -- a shared corpus for the read filters ----------------------------------------------------------------


@dataclass
class Corpus:
    collection: str
    markings: list[str]  # the marking-definitions in the collection
    a: str  # an indicator with three versions
    a_versions: list[str]
    b: str  # an indicator with one version
    m: str  # a malware

    @property
    def everything_last(self) -> set[str]:
        return {self.a, self.b, self.m, *self.markings}


@pytest.fixture(scope="module")
def corpus(node: Running) -> Corpus:
    """GBR publishes, in one envelope, SECRET REL TO GBR,KOR // TLP:AMBER markings and A v1..v3, B, M."""
    cid = node.new_collection("filters")
    marking = mark("SECRET", "GBR,KOR", "amber")
    refs = marking["refs"]
    a = f"indicator--{uuid.uuid4()}"
    a_versions = [stamp(1), stamp(1, 2), stamp(1, 3)]
    objects = [
        *marking["definitions"],
        *(indicator(a, v, refs) for v in a_versions),
        indicator(refs=refs),
        malware(refs),
    ]
    r = node.post("gbr", cid, {"objects": objects})
    assert r.status_code == 202, r.text
    assert r.json()["success_count"] == len(objects)
    return Corpus(cid, refs, a, a_versions, objects[-2]["id"], objects[-1]["id"])


# -- discovery, API root, collections --------------------------------------------------------------------


def test_discovery(e2e: Running) -> None:
    server = e2e.discovery("kor")
    assert server.title == "relto node (GBR)"
    assert server.default is not None
    assert server.default.url == f"{e2e.url}/api/"
    assert [root.url for root in server.api_roots] == [f"{e2e.url}/api/"]


def test_discovery_of_a_fresh_node_and_its_empty_collections(server: RunningServer) -> None:
    with Server(f"{server.url}/taxii2/", user=USER, password=server.admin) as discovery:
        assert discovery.title == "relto node (GBR)"
        root = discovery.default
        assert root is not None
        assert root.collections == []
    r = httpx.get(f"{server.url}/api/collections/", auth=(USER, server.admin), headers={"Accept": TAXII})
    assert r.status_code == 200 and r.json() == {}


def test_api_root_information(e2e: Running) -> None:
    root = e2e.api_root("ukr")
    assert root.versions == [TAXII]
    assert root.max_content_length == MAX_CONTENT_LENGTH
    assert root.title


def test_collections_list(e2e: Running) -> None:
    made = {e2e.new_collection("list one"), e2e.new_collection("list two")}
    writer = e2e.api_root("gbr").collections
    ids = [c.id for c in writer]
    assert made <= set(ids)
    assert ids == sorted(ids)
    for c in writer:
        assert (c.can_read, c.can_write, c.media_types) == (True, True, [STIX])
    reader = e2e.api_root("gbr_ro").collections
    assert [c.id for c in reader] == ids
    assert all(c.can_read and not c.can_write for c in reader)
    raw = e2e.get("kor", "/api/collections/").json()["collections"]
    assert [c["id"] for c in raw] == ids


def test_one_collection(e2e: Running) -> None:
    cid = e2e.new_collection("single", description="just one")
    c = e2e.collection("kor", cid)
    assert (c.id, c.title, c.description) == (cid, "single", "just one")
    assert (c.can_read, c.can_write, c.media_types) == (True, True, [STIX])
    assert e2e.get("kor", f"/api/collections/{uuid.uuid4()}/").status_code == 404


# -- add objects and status ------------------------------------------------------------------------------


def test_add_objects_and_status(e2e: Running) -> None:
    cid = e2e.new_collection()
    marking = mark("SECRET", "GBR,KOR", "amber")
    objects = [*marking["definitions"], indicator(refs=marking["refs"]), malware(marking["refs"])]
    status = e2e.collection("gbr", cid).add_objects({"objects": objects})
    assert status.status == "complete"
    assert (status.total_count, status.success_count, status.failure_count, status.pending_count) == (4, 4, 0, 0)
    assert {s["id"] for s in status.successes} == {o["id"] for o in objects}

    again = e2e.api_root("gbr").get_status(status.id)
    assert (again.id, again.status, again.success_count) == (status.id, "complete", 4)
    status.refresh()  # taxii2-client's status URL has no trailing slash
    assert (status.status, status.success_count, status.total_count) == ("complete", 4, 4)

    with_slash = e2e.get("gbr", f"/api/status/{status.id}/")
    without = e2e.get("gbr", f"/api/status/{status.id}")
    assert with_slash.status_code == without.status_code == 200
    assert with_slash.headers["content-type"].startswith("application/taxii+json")
    assert with_slash.json() == without.json()
    assert with_slash.json()["id"] == status.id
    assert e2e.get("admin", f"/api/status/{status.id}/").status_code == 200
    assert e2e.get("kor", f"/api/status/{status.id}/").status_code == 404  # another party's status


# -- get objects: each filter ----------------------------------------------------------------------------


def test_get_objects_default_is_latest_versions_in_date_added_order(e2e: Running, corpus: Corpus) -> None:
    got = e2e.collection("gbr", corpus.collection).get_objects()
    assert got["more"] is False
    assert set(ids_of(got)) == corpus.everything_last
    assert len(ids_of(got)) == len(corpus.everything_last)
    a = [o for o in got["objects"] if o["id"] == corpus.a]
    assert [o["modified"] for o in a] == [corpus.a_versions[-1]]


def test_get_objects_added_after(e2e: Running) -> None:
    cid = e2e.new_collection()
    c = e2e.collection("gbr", cid)
    first = [indicator(), indicator()]
    c.add_objects({"objects": first})
    cut = e2e.get("gbr", f"/api/collections/{cid}/objects/").headers["X-TAXII-Date-Added-Last"]
    second = [indicator(), malware()]
    c.add_objects({"objects": second})
    assert set(ids_of(c.get_objects(added_after=cut))) == {o["id"] for o in second}
    assert set(ids_of(c.get_objects())) == {o["id"] for o in first + second}
    last = e2e.get("gbr", f"/api/collections/{cid}/objects/").headers["X-TAXII-Date-Added-Last"]
    assert "objects" not in c.get_objects(added_after=last)


def test_get_objects_limit_and_next_pagination(e2e: Running, corpus: Corpus) -> None:
    c = e2e.collection("gbr", corpus.collection)
    pages = list(as_pages(c.get_objects, per_request=2, version="all"))
    assert len(pages) == 4  # 2 markings + 3 versions of A + B + M = 7 objects
    for page in pages[:-1]:
        assert page["more"] is True and page["next"] and len(page["objects"]) == 2
    assert pages[-1]["more"] is False and "next" not in pages[-1]
    seen = [(o["id"], o.get("modified", o.get("created"))) for p in pages for o in p["objects"]]
    assert len(seen) == len(set(seen)) == 7
    whole = c.get_objects(version="all")["objects"]
    assert seen == [(o["id"], o.get("modified", o.get("created"))) for o in whole]


def test_manifest_pagination(e2e: Running, corpus: Corpus) -> None:
    c = e2e.collection("gbr", corpus.collection)
    pages = list(as_pages(c.get_manifest, per_request=3))
    entries = [e for p in pages for e in p["objects"]]
    assert [e["id"] for e in entries] == [e["id"] for e in c.get_manifest()["objects"]]
    assert len(entries) == len(corpus.everything_last)


def test_match_id(e2e: Running, corpus: Corpus) -> None:
    c = e2e.collection("gbr", corpus.collection)
    one = c.get_objects(id=corpus.a)
    assert ids_of(one) == [corpus.a]
    assert one["objects"][0]["modified"] == corpus.a_versions[-1]
    assert set(ids_of(c.get_objects(id=f"{corpus.a},{corpus.m}"))) == {corpus.a, corpus.m}
    assert set(ids_of(c.get_objects(id=[corpus.b, corpus.m]))) == {corpus.b, corpus.m}
    assert "objects" not in c.get_objects(id=f"indicator--{uuid.uuid4()}")


def test_match_type(e2e: Running, corpus: Corpus) -> None:
    c = e2e.collection("gbr", corpus.collection)
    assert set(ids_of(c.get_objects(type="indicator"))) == {corpus.a, corpus.b}
    assert set(ids_of(c.get_objects(type="indicator,malware"))) == {corpus.a, corpus.b, corpus.m}
    assert set(ids_of(c.get_objects(type=["malware", "marking-definition"]))) == {corpus.m, *corpus.markings}
    assert "objects" not in c.get_objects(type="campaign")


def test_match_version(e2e: Running, corpus: Corpus) -> None:
    c = e2e.collection("gbr", corpus.collection)

    def versions_of_a(**kw: Any) -> list[str]:
        return [o["modified"] for o in c.get_objects(id=corpus.a, **kw).get("objects", [])]

    first, middle, last = corpus.a_versions
    assert versions_of_a(version="first") == [first]
    assert versions_of_a(version="last") == [last]
    assert versions_of_a() == [last]
    assert versions_of_a(version="all") == [first, middle, last]
    assert versions_of_a(version=middle) == [middle]
    assert versions_of_a(version=middle.replace(".000Z", "Z")) == [middle]  # the same instant, other precision
    assert versions_of_a(version=f"first,{last}") == [first, last]
    assert versions_of_a(version=stamp(9, 9)) == []
    everything = c.get_objects(version="all")
    assert len(everything["objects"]) == 7


def test_match_spec_version(e2e: Running, corpus: Corpus) -> None:
    c = e2e.collection("gbr", corpus.collection)
    assert set(ids_of(c.get_objects(spec_version="2.1"))) == corpus.everything_last
    assert "objects" not in c.get_objects(spec_version="2.0")
    assert set(ids_of(c.get_objects(spec_version="2.0,2.1"))) == corpus.everything_last


def test_first_and_last_follow_modified_not_arrival(e2e: Running) -> None:
    cid = e2e.new_collection()
    c = e2e.collection("gbr", cid)
    a = f"indicator--{uuid.uuid4()}"
    for modified in (stamp(2, 2), stamp(3, 3), stamp(1, 1)):  # the newest arrives before the oldest
        c.add_objects({"objects": [indicator(a, modified)]})
    assert [o["modified"] for o in c.get_objects(version="last")["objects"]] == [stamp(3, 3)]
    assert [o["modified"] for o in c.get_objects(version="first")["objects"]] == [stamp(1, 1)]
    assert [e["version"] for e in c.get_manifest()["objects"]] == [stamp(3, 3)]
    assert sorted(c.object_versions(a)["versions"]) == [stamp(1, 1), stamp(2, 2), stamp(3, 3)]


def test_date_added_headers_match_the_manifest(e2e: Running, corpus: Corpus) -> None:
    base = f"/api/collections/{corpus.collection}"
    for params in ({}, {"match[version]": "all"}, {"match[type]": "indicator"}, {"limit": "2"}):
        objects = e2e.get("gbr", f"{base}/objects/", **params)
        manifest = e2e.get("gbr", f"{base}/manifest/", **params)
        added = [e["date_added"] for e in manifest.json()["objects"]]
        for r in (objects, manifest):
            assert r.status_code == 200
            assert r.headers["X-TAXII-Date-Added-First"] == added[0] == min(added), params
            assert r.headers["X-TAXII-Date-Added-Last"] == added[-1] == max(added), params
        assert [o["id"] for o in objects.json()["objects"]] == [e["id"] for e in manifest.json()["objects"]]
    versions = e2e.get("gbr", f"{base}/objects/{corpus.a}/versions/")
    added = [
        e["date_added"]
        for e in e2e.get("gbr", f"{base}/manifest/", **{"match[id]": corpus.a, "match[version]": "all"}).json()[
            "objects"
        ]
    ]
    assert versions.headers["X-TAXII-Date-Added-First"] == added[0]
    assert versions.headers["X-TAXII-Date-Added-Last"] == added[-1]
    one = e2e.get("gbr", f"{base}/objects/{corpus.a}/")
    assert one.headers["X-TAXII-Date-Added-First"] == one.headers["X-TAXII-Date-Added-Last"] == added[-1]


# -- manifest, one object, versions, delete --------------------------------------------------------------


def test_manifest(e2e: Running, corpus: Corpus) -> None:
    c = e2e.collection("gbr", corpus.collection)
    manifest = c.get_manifest(version="all")
    entries = manifest["objects"]
    assert len(entries) == 7
    added = [e["date_added"] for e in entries]
    assert len(set(added)) == len(added)
    assert added == sorted(added)
    assert all(e["media_type"] == STIX for e in entries)
    objects = c.get_objects(version="all")["objects"]
    assert [(e["id"], e["version"]) for e in entries] == [
        (o["id"], o.get("modified", o.get("created"))) for o in objects
    ]
    assert [e["version"] for e in entries if e["id"] == corpus.a] == corpus.a_versions


def test_get_object(e2e: Running, corpus: Corpus) -> None:
    c = e2e.collection("gbr", corpus.collection)
    got = c.get_object(corpus.a)
    assert [o["modified"] for o in got["objects"]] == [corpus.a_versions[-1]]
    assert got["objects"][0]["id"] == corpus.a
    assert [o["modified"] for o in c.get_object(corpus.a, version="all")["objects"]] == corpus.a_versions
    assert [o["modified"] for o in c.get_object(corpus.a, version="first")["objects"]] == corpus.a_versions[:1]
    with pytest.raises(requests.HTTPError) as exc:
        c.get_object(f"indicator--{uuid.uuid4()}")
    assert http_status(exc) == 404


def test_object_versions(e2e: Running, corpus: Corpus) -> None:
    c = e2e.collection("gbr", corpus.collection)
    assert c.object_versions(corpus.a)["versions"] == corpus.a_versions
    assert c.object_versions(corpus.b)["versions"] == ["2024-01-01T00:00:00.000Z"]
    page = c.object_versions(corpus.a, limit=2)
    assert page["versions"] == corpus.a_versions[:2] and page["more"] is True and page["next"]
    rest = c.object_versions(corpus.a, limit=2, next=page["next"])
    assert rest["versions"] == corpus.a_versions[2:] and rest["more"] is False
    with pytest.raises(requests.HTTPError) as exc:
        c.object_versions(f"indicator--{uuid.uuid4()}")
    assert http_status(exc) == 404


def test_delete_object(e2e: Running) -> None:
    cid = e2e.new_collection()
    c = e2e.collection("gbr", cid)
    doomed, kept = indicator(), indicator()
    c.add_objects({"objects": [doomed, kept]})
    assert c.get_object(doomed["id"])["objects"] == [doomed]
    c.delete_object(doomed["id"])
    with pytest.raises(requests.HTTPError) as exc:
        c.get_object(doomed["id"])
    assert http_status(exc) == 404
    assert_taxii_error(e2e.get("gbr", f"/api/collections/{cid}/objects/{doomed['id']}/"), 404)
    assert ids_of(c.get_manifest()) == [kept["id"]]
    with pytest.raises(requests.HTTPError) as exc:
        c.delete_object(doomed["id"])
    assert http_status(exc) == 404


def test_delete_one_version_of_an_object(e2e: Running) -> None:
    cid = e2e.new_collection()
    c = e2e.collection("gbr", cid)
    a = f"indicator--{uuid.uuid4()}"
    c.add_objects({"objects": [indicator(a, stamp(1)), indicator(a, stamp(2)), indicator(a, stamp(3))]})
    c.delete_object(a, version="first")
    assert c.object_versions(a)["versions"] == [stamp(2), stamp(3)]
    c.delete_object(a, version=stamp(3))
    assert c.object_versions(a)["versions"] == [stamp(2)]
    assert [o["modified"] for o in c.get_object(a)["objects"]] == [stamp(2)]
    c.delete_object(a)  # no match[version]: every version
    with pytest.raises(requests.HTTPError) as exc:
        c.object_versions(a)
    assert http_status(exc) == 404


# -- releasability end to end ----------------------------------------------------------------------------


@dataclass
class Released:
    collection: str
    to_kor: str  # SECRET REL TO GBR,KOR
    gbr_only: str  # SECRET REL TO GBR


@pytest.fixture(scope="module")
def released(node: Running) -> Released:
    cid = node.new_collection("releasability")
    gbr_kor, gbr = mark("SECRET", "GBR,KOR"), mark("SECRET", "GBR")
    to_kor, gbr_only = indicator(refs=gbr_kor["refs"]), indicator(refs=gbr["refs"])
    with Collection(f"{node.url}/api/collections/{cid}/", user=USER, password=node.tokens["gbr"]) as c:
        status = c.add_objects({"objects": [*gbr_kor["definitions"], *gbr["definitions"], to_kor, gbr_only]})
    assert status.success_count == 4, status.failures
    return Released(cid, to_kor["id"], gbr_only["id"])


@pytest.mark.parametrize(
    ("who", "expected"),
    [("gbr", "both"), ("gbr2", "both"), ("kor", "to_kor"), ("ukr", "none"), ("kor_conf", "none")],
)
def test_releasability_who_sees_what(e2e: Running, released: Released, who: str, expected: str) -> None:
    want = {"both": {released.to_kor, released.gbr_only}, "to_kor": {released.to_kor}, "none": set()}[expected]
    c = e2e.collection(who, released.collection)
    assert set(ids_of(c.get_objects(type="indicator"))) == want
    assert set(ids_of(c.get_manifest(type="indicator"))) == want
    for object_id in (released.to_kor, released.gbr_only):
        if object_id in want:
            assert ids_of(c.get_object(object_id)) == [object_id]
            assert c.object_versions(object_id)["versions"] == ["2024-01-01T00:00:00.000Z"]
        else:
            with pytest.raises(requests.HTTPError) as exc:
                c.get_object(object_id)
            assert http_status(exc) == 404
            with pytest.raises(requests.HTTPError) as exc:
                c.object_versions(object_id)
            assert http_status(exc) == 404


def test_releasability_manifest_and_versions_agree(e2e: Running, released: Released) -> None:
    for who in ("gbr", "kor", "ukr", "kor_conf"):
        c = e2e.collection(who, released.collection)
        manifest = c.get_manifest(version="all").get("objects", [])
        by_id: dict[str, list[str]] = {}
        for entry in manifest:
            by_id.setdefault(entry["id"], []).append(entry["version"])
        for object_id, versions in by_id.items():
            assert c.object_versions(object_id)["versions"] == versions, who
        objects = c.get_objects(version="all").get("objects", [])
        assert [o["id"] for o in objects] == [e["id"] for e in manifest], who


def test_hidden_object_is_404_over_http(e2e: Running, released: Released) -> None:
    path = f"/api/collections/{released.collection}/objects/{released.gbr_only}/"
    assert e2e.get("gbr", path).status_code == 200
    assert_taxii_error(e2e.get("kor", path), 404)
    assert_taxii_error(e2e.get("kor", path + "versions/"), 404)
    unknown = f"/api/collections/{released.collection}/objects/indicator--{uuid.uuid4()}/"
    assert e2e.get("kor", path).json()["title"] == e2e.get("kor", unknown).json()["title"]


def test_rel_to_a_community_admits_its_members(e2e: Running) -> None:
    cid = e2e.new_collection()
    ip4 = mark("SECRET", "GBR,IP4")  # KOR is a member of IP4, UKR is not
    obj = indicator(refs=ip4["refs"])
    e2e.collection("gbr", cid).add_objects({"objects": [*ip4["definitions"], obj]})
    assert ids_of(e2e.collection("kor", cid).get_objects(type="indicator")) == [obj["id"]]
    assert "objects" not in e2e.collection("ukr", cid).get_objects(type="indicator")


def test_unmarked_object_is_visible_only_to_its_nation(e2e: Running) -> None:
    cid = e2e.new_collection()
    plain = indicator()
    status = e2e.collection("gbr", cid).add_objects({"objects": [plain]})
    assert status.success_count == 1
    for who in ("gbr", "gbr2", "admin"):
        assert ids_of(e2e.collection(who, cid).get_objects()) == [plain["id"]]
    for who in ("kor", "ukr"):
        c = e2e.collection(who, cid)
        assert "objects" not in c.get_objects()
        assert "objects" not in c.get_manifest()
        with pytest.raises(requests.HTTPError) as exc:
            c.get_object(plain["id"])
        assert http_status(exc) == 404


def test_unknown_marking_definition_is_a_failure_and_the_rest_is_stored(e2e: Running) -> None:
    cid = e2e.new_collection()
    unknown = f"marking-definition--{uuid.uuid4()}"
    good, bad = indicator(), indicator(refs=[unknown])
    status = e2e.collection("gbr", cid).add_objects({"objects": [good, bad]})
    assert status.status == "complete"
    assert (status.total_count, status.success_count, status.failure_count) == (2, 1, 1)
    assert [s["id"] for s in status.successes] == [good["id"]]
    assert status.failures[0]["id"] == bad["id"]
    assert unknown in status.failures[0]["message"]
    assert ids_of(e2e.collection("gbr", cid).get_manifest()) == [good["id"]]


# -- date_added, idempotence, custom objects -------------------------------------------------------------


def test_500_objects_in_one_envelope_get_unique_increasing_date_added(e2e: Running) -> None:
    cid = e2e.new_collection()
    marking = mark("SECRET", "GBR,KOR")
    objects = [indicator(refs=marking["refs"]) for _ in range(500)]
    status = e2e.collection("gbr", cid).add_objects({"objects": [*marking["definitions"], *objects]})
    assert status.success_count == 501
    manifest = e2e.collection("kor", cid).get_manifest(type="indicator")
    added = [e["date_added"] for e in manifest["objects"]]
    assert len(added) == 500
    assert all(a < b for a, b in itertools.pairwise(added))

    seen: list[str] = []
    after: str | None = None
    for _ in range(20):
        params = {"match[type]": "indicator", "limit": "64", **({"added_after": after} if after else {})}
        r = e2e.get("kor", f"/api/collections/{cid}/objects/", **params)
        page = r.json().get("objects", [])
        if not page:
            assert "X-TAXII-Date-Added-Last" not in r.headers
            break
        seen += [o["id"] for o in page]
        after = r.headers["X-TAXII-Date-Added-Last"]
    assert len(seen) == len(set(seen)) == 500
    assert set(seen) == {o["id"] for o in objects}


def test_posting_the_same_envelope_twice_is_idempotent(e2e: Running) -> None:
    cid = e2e.new_collection()
    marking = mark("SECRET", "GBR,KOR", "green")
    objects = [*marking["definitions"], indicator(refs=marking["refs"]), malware(marking["refs"])]
    c = e2e.collection("gbr", cid)
    first = c.add_objects({"objects": objects})
    before = c.get_manifest(version="all")["objects"]
    second = c.add_objects({"objects": objects})
    assert first.id != second.id
    for status in (first, second):
        assert (status.success_count, status.failure_count, status.total_count) == (4, 0, 4)
    assert {s["id"] for s in second.successes} == {o["id"] for o in objects}
    after = c.get_manifest(version="all")["objects"]
    assert after == before
    assert len({e["id"] for e in after}) == len(after) == 4


def test_custom_objects_round_trip_unchanged(e2e: Running) -> None:
    cid = e2e.new_collection()
    marking = mark("SECRET", "GBR,KOR")
    tactic = {
        "type": "x-mitre-tactic",
        "spec_version": "2.1",
        "id": f"x-mitre-tactic--{uuid.uuid4()}",
        "created": "2024-02-01T10:00:00.000Z",
        "modified": "2024-02-01T10:00:00.000Z",
        "name": "Initial Access",
        "x_mitre_shortname": "initial-access",
        "x_mitre_domains": ["enterprise-attack"],
        "external_references": [{"source_name": "mitre-attack", "external_id": "TA0001"}],
        "object_marking_refs": marking["refs"],
    }
    custom_props = indicator(
        refs=marking["refs"],
        x_relto_score=87,
        x_relto_ratio=0.25,
        x_relto_nested={"list": [1, "two", None, True], "unicode": "Zürich \u2013 서울"},
    )
    status = e2e.collection("gbr", cid).add_objects({"objects": [*marking["definitions"], tactic, custom_props]})
    assert status.success_count == 3, status.failures
    for who in ("gbr", "kor"):
        c = e2e.collection(who, cid)
        assert c.get_object(tactic["id"])["objects"] == [tactic]
        assert c.get_object(custom_props["id"])["objects"] == [custom_props]
        assert c.get_objects(type="x-mitre-tactic")["objects"] == [tactic]


# -- authentication and authorisation ---------------------------------------------------------------------


def test_401_without_credentials(e2e: Running) -> None:
    with Server(f"{e2e.url}/taxii2/") as anonymous, pytest.raises(requests.HTTPError) as exc:
        _ = anonymous.title
    assert http_status(exc) == 401
    for path in ("/taxii2/", "/api/", "/api/collections/"):
        r = e2e.get(None, path)
        assert_taxii_error(r, 401)
        assert "WWW-Authenticate" in r.headers


def test_401_with_a_wrong_token(e2e: Running) -> None:
    real = e2e.tokens["kor"]
    wrong_secret = real[: real.rindex("_") + 1] + "not-the-secret"
    for token in (wrong_secret, "rt_0123456789abcdef_nope", "garbage"):
        with ApiRoot(f"{e2e.url}/api/", user=USER, password=token) as root, pytest.raises(requests.HTTPError) as exc:
            _ = root.title
        assert http_status(exc) == 401
        r = httpx.get(f"{e2e.url}/api/", auth=(USER, token), headers={"Accept": TAXII})
        assert_taxii_error(r, 401)


def test_read_only_token_is_forbidden_to_post(e2e: Running) -> None:
    cid = e2e.new_collection()
    obj = indicator()
    c = e2e.collection("gbr_ro", cid)
    assert c.can_read and not c.can_write
    with pytest.raises(AccessError):
        c.add_objects({"objects": [obj]})  # taxii2-client trusts can_write and does not send
    assert_taxii_error(e2e.post("gbr_ro", cid, {"objects": [obj]}), 403)
    assert "objects" not in c.get_objects()  # nothing was stored, and reading is allowed
    e2e.collection("gbr", cid).add_objects({"objects": [obj]})
    r = httpx.delete(
        f"{e2e.url}/api/collections/{cid}/objects/{obj['id']}/",
        auth=(USER, e2e.tokens["gbr_ro"]),
        headers={"Accept": TAXII},
    )
    assert_taxii_error(r, 403)
    assert ids_of(c.get_objects()) == [obj["id"]]
