"""Third-party software against the real `relto serve`, as integrators use it (docs/interop.md).

- taxii2-client: every call of its v21 API, with HTTP Basic and with its TokenAuth, and `as_pages`;
- stix2: a TAXIICollectionStore over a collection answers add, get, all_versions, query, relationships and
  related_to as a MemoryStore holding the same data does (each nation's store: only what it may see);
- stix2-validator: everything served validates with no error;
- misp-stix: a MISP event exported to STIX 2.1, published, read back and imported again is the same event.

One server per back-end serves the module (it starts in about a second); the corpus is published once.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import stix2
from stix2.datastore.filters import Filter
from stix2validator import ValidationOptions, validate_instance
from taxii2client.common import TokenAuth
from taxii2client.v21 import ApiRoot, Collection, Server, Status, as_pages

from relto.admin import issue_token
from relto.domain.levels import DEFAULT_LEVELS, Ladder
from relto.domain.markings import releasability_marking
from relto.node import Node as ReltoNode
from tests.conftest import BACKENDS, TAXII, PostgresDatabases, new_database, relto, start_server
from tests.conftest import Server as RunningServer
from tests.stix_types import AcmeSensor, observable

pytestmark = pytest.mark.slow

STIX = "application/stix+json;version=2.1"
LADDER = Ladder.of(DEFAULT_LEVELS)
TO_KOR = releasability_marking("SECRET", ["GBR", "KOR"], LADDER)
GBR_ONLY = releasability_marking("SECRET", ["GBR"], LADDER)
T0 = "2024-05-01T08:00:00.000Z"
V1, V2, V3 = "2024-05-02T08:00:00.000Z", "2024-05-03T08:00:00.000Z", "2024-05-04T08:00:00.000Z"


# the running node ------------------------------------------------------------------------------------------
@dataclass
class Node:
    """The module's server, tokens by name, and the collections made for the module."""

    server: RunningServer
    tokens: dict[str, str]
    collections: dict[str, str] = field(default_factory=dict)

    @property
    def api(self) -> str:
        return f"{self.server.url}/api/"

    def collection(self, who: str, name: str, token_auth: bool = False) -> Collection:
        url = f"{self.api}collections/{self.collections[name]}/"
        if token_auth:
            return Collection(url, auth=TokenAuth(self.tokens[who]))
        return Collection(url, user=who, password=self.tokens[who])


@pytest.fixture(scope="module", params=BACKENDS)
def node(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, postgres: PostgresDatabases | None
) -> Iterator[Node]:
    folder: Path = tmp_path_factory.mktemp("interop")
    with new_database(request.param, folder, postgres) as db:
        admin = relto("init", *db.args, "--nation", "GBR")
        # Tokens and collections in process (each `relto` command costs a second); the server reads them.
        made = ReltoNode(db.open())
        tokens = {"admin": admin}
        for who in ("gbr", "kor"):
            tokens[who] = issue_token(made.store, nation=who.upper(), clearance="SECRET", organisation="", name=who)
        collections = {name: made.add_collection(name).id for name in ("corpus", "scratch", "misp")}
        made.close()
        server = start_server(db, admin, logs=folder)
        try:
            yield Node(server, tokens, collections)
        finally:
            server.stop()


# the corpus: stix2 objects, published by GBR through stix2's TAXIICollectionStore ----------------------
def marked(refs: dict[str, Any] = TO_KOR) -> dict[str, Any]:
    return {"object_marking_refs": [refs["id"]]}


@dataclass
class Corpus:
    objects: list[Any]  # every stix2 object published, every version, in the order published
    hidden_from_kor: set[str]  # ids marked GBR only
    indicator: str  # an object whose three versions arrive out of order
    malware: str
    actor: str

    def memory(self, hide: set[str] | None = None) -> stix2.MemoryStore:
        """A MemoryStore holding the same data as released to a nation from which `hide` is hidden: those
        objects left out, and references to them left out of the objects that name them (docs/tearlines.md)."""
        hidden = hide or set()
        kept = []
        for obj in self.objects:
            if obj.id in hidden:
                continue
            refs = obj.get("object_refs")
            if refs and hidden.intersection(refs):
                trimmed = {**json.loads(obj.serialize()), "object_refs": [r for r in refs if r not in hidden]}
                obj = stix2.parse(trimmed, allow_custom=True)
            kept.append(obj)
        return stix2.MemoryStore(kept, allow_custom=True)


def build_corpus() -> Corpus:
    author = stix2.Identity(name="GBR cell", identity_class="organization", created=T0, modified=T0, **marked())
    by = {"created_by_ref": author.id, "created": T0, **marked()}
    malware = stix2.Malware(name="badware", is_family=True, modified=T0, **by)
    actor = stix2.ThreatActor(name="APT Example", threat_actor_types=["nation-state"], modified=T0, **by)
    technique = stix2.AttackPattern(name="Spearphishing", modified=T0, **by)
    indicator_id = f"indicator--{uuid.uuid4()}"
    versions = [
        stix2.Indicator(
            id=indicator_id,
            name=f"c2 domain ({modified[:10]})",
            pattern="[domain-name:value = 'c2.example']",
            pattern_type="stix",
            valid_from=T0,
            modified=modified,
            **by,
        )
        for modified in (V3, V1, V2)  # the newest first: arrival order is not version order
    ]
    ip = stix2.IPv4Address(value="198.51.100.7", **marked())
    domain = stix2.DomainName(value="c2.example", resolves_to_refs=[ip.id], **marked())
    hostname = observable("hostname", "c2-host.example", **marked())
    sensor = AcmeSensor(name="border sensor", serial="S-0042", **marked())
    secret = stix2.Malware(name="gbr-only implant", is_family=False, modified=T0, **{**by, **marked(GBR_ONLY)})
    rel = {"created": T0, "modified": T0, **marked()}
    relationships = [
        stix2.Relationship(indicator_id, "indicates", malware.id, **rel),
        stix2.Relationship(actor.id, "uses", malware.id, **rel),
        stix2.Relationship(actor.id, "uses", technique.id, **rel),
        stix2.Relationship(malware.id, "uses", technique.id, **rel),
        stix2.Relationship(indicator_id, "related-to", hostname.id, **rel),
        stix2.Relationship(actor.id, "uses", secret.id, **{**rel, **marked(GBR_ONLY)}),
    ]
    sighting = stix2.Sighting(sighting_of_ref=indicator_id, count=3, modified=T0, **by)
    everything = [author, malware, actor, technique, *versions, ip, domain, hostname, sensor, secret]
    everything += [*relationships, sighting]
    report = stix2.Report(
        name="APT Example uses badware",
        published=T0,
        object_refs=[o.id for o in everything if o.type != "indicator"] + [indicator_id],
        modified=T0,
        allow_custom=True,  # it names the custom observables
        **by,
    )
    hidden = {secret.id, relationships[-1].id}
    return Corpus([*everything, report], hidden, indicator_id, malware.id, actor.id)


@pytest.fixture(scope="module")
def corpus(node: Node) -> Corpus:
    made = build_corpus()
    writer = node.collection("gbr", "corpus")
    status = writer.add_objects({"objects": [TO_KOR, GBR_ONLY]})
    assert status.success_count == 2, status.failures
    stix2.TAXIICollectionStore(writer, allow_custom=True).add(made.objects)  # one POST per object
    writer.close()
    return made


def as_dicts(objects: list[Any]) -> list[dict[str, Any]]:
    return [json.loads(o.serialize()) for o in objects]


def latest(objects: list[Any]) -> list[dict[str, Any]]:
    """The newest version of each object (a MemoryStore's query answers every version, TAXII the newest)."""
    newest: dict[str, dict[str, Any]] = {}
    for o in as_dicts(objects):
        if o["id"] not in newest or o.get("modified", "") > newest[o["id"]].get("modified", ""):
            newest[o["id"]] = o
    return sorted(newest.values(), key=lambda o: o["id"])


def by_id(objects: list[Any]) -> list[dict[str, Any]]:
    return sorted(as_dicts(objects), key=lambda o: (o["id"], o.get("modified", "")))


# stix2 ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("who", ["gbr", "kor"])
def test_stix2_taxii_store_answers_as_a_memory_store_does(node: Node, corpus: Corpus, who: str) -> None:
    collection = node.collection(who, "corpus", token_auth=who == "kor")
    served = stix2.TAXIICollectionStore(collection, allow_custom=True)
    memory = corpus.memory(hide=corpus.hidden_from_kor if who == "kor" else None)
    ids = sorted({o.id for o in corpus.objects})
    for object_id in ids:
        got, expected = served.get(object_id), memory.get(object_id)
        assert (got is None) == (expected is None), object_id
        if expected is not None:
            assert as_dicts([got]) == as_dicts([expected]), object_id
    expected_versions = sorted(as_dicts(memory.all_versions(corpus.indicator)), key=lambda o: o["modified"])
    assert as_dicts(served.all_versions(corpus.indicator)) == expected_versions  # in version order
    queries = [
        [Filter("type", "=", "indicator")],
        [Filter("type", "in", ["malware", "threat-actor"])],
        [Filter("type", "=", "relationship"), Filter("relationship_type", "=", "uses")],
        [Filter("name", "=", "badware")],
        [Filter("created_by_ref", "=", memory.get(corpus.malware).created_by_ref)],
        [Filter("modified", ">", V1)],
        [Filter("type", "=", "hostname")],
        [Filter("id", "=", corpus.actor)],
    ]
    for query in queries:
        assert latest(served.query(query)) == latest(memory.query(query)), query
    for source in (corpus.malware, corpus.actor):
        assert by_id(served.relationships(source)) == by_id(memory.relationships(source))
        for kw in ({"relationship_type": "uses"}, {"source_only": True}, {"target_only": True}):
            assert by_id(served.relationships(source, **kw)) == by_id(memory.relationships(source, **kw)), kw
        assert latest(served.related_to(source)) == latest(memory.related_to(source))
        assert latest(served.related_to(source, relationship_type="uses", source_only=True)) == latest(
            memory.related_to(source, relationship_type="uses", source_only=True)
        )
    collection.close()


# taxii2-client: every call ---------------------------------------------------------------------------------
def test_taxii2_client_discovery_api_root_and_collections(node: Node, corpus: Corpus) -> None:
    for auth in ({"user": "kor", "password": node.tokens["kor"]}, {"auth": TokenAuth(node.tokens["kor"])}):
        with Server(f"{node.server.url}/taxii2/", **auth) as server:  # type: ignore[arg-type]
            assert server.title == "relto node (GBR)"
            assert server.description and server.contact is None and server.custom_properties == {}
            assert server.default is not None and server.default.url == node.api
            assert [root.url for root in server.api_roots] == [node.api]
            server.refresh()
            root = server.default
            assert root.title and root.versions == [TAXII] and root.max_content_length > 0
            assert root.description is None and root.custom_properties == {}
            root.refresh_information()
            root.refresh_collections()
            root.refresh()
            listed = {c.id: c for c in root.collections}
            assert set(node.collections.values()) <= set(listed)
            one = listed[node.collections["corpus"]]
            assert (one.title, one.can_read, one.can_write, one.media_types) == ("corpus", True, True, [STIX])
            assert one.description == "" and one.alias is None and one.custom_properties == {}
            one.refresh()
            assert one.objects_url == f"{node.api}collections/{one.id}/objects/"


def test_taxii2_client_reads(node: Node, corpus: Corpus) -> None:
    c = node.collection("kor", "corpus", token_auth=True)
    everything = c.get_objects()
    ids = {o["id"] for o in everything["objects"]}
    assert ids == {o.id for o in corpus.objects} - corpus.hidden_from_kor | {TO_KOR["id"]}
    assert {o["id"] for o in c.get_objects(type="indicator")["objects"]} == {corpus.indicator}
    assert [o["modified"] for o in c.get_objects(id=corpus.indicator, version="all")["objects"]] == [V1, V2, V3]
    assert [o["modified"] for o in c.get_object(corpus.indicator, version="first")["objects"]] == [V1]
    assert [o["modified"] for o in c.get_object(corpus.indicator)["objects"]] == [V3]
    assert c.object_versions(corpus.indicator)["versions"] == [V1, V2, V3]
    assert c.get_objects(spec_version="2.1")["objects"] == everything["objects"]
    manifest = c.get_manifest()
    assert [e["id"] for e in manifest["objects"]] == [o["id"] for o in everything["objects"]]
    last = manifest["objects"][-1]["date_added"]
    assert "objects" not in c.get_objects(added_after=last)
    # as_pages over objects and the manifest: every version once whatever the page size (each page lists an
    # object's versions in version order; between pages the order is arrival order: docs/interop.md).
    whole = c.get_objects(version="all")["objects"]
    for per_request in (1, 4, 7):
        pages = list(as_pages(c.get_objects, per_request=per_request, version="all"))
        paged = [o for p in pages for o in p.get("objects", [])]
        key = lambda o: (o["id"], o.get("modified", ""))  # noqa: E731
        assert sorted(paged, key=key) == sorted(whole, key=key) and len(paged) == len(whole), per_request
        entries = [e for p in as_pages(c.get_manifest, per_request=per_request) for e in p.get("objects", [])]
        assert entries == manifest["objects"], per_request
    with pytest.raises(requests.HTTPError) as hidden:
        c.get_object(next(iter(corpus.hidden_from_kor)))
    assert hidden.value.response is not None and hidden.value.response.status_code == 404
    c.close()


def test_taxii2_client_writes_statuses_and_deletes(node: Node) -> None:
    c = node.collection("gbr", "scratch")
    first = stix2.Indicator(
        name="v1", pattern="[ipv4-addr:value = '203.0.113.9']", pattern_type="stix", created=T0, modified=V1, **marked()
    )
    second = stix2.new_version(first, modified=V2, name="v2")
    status = c.add_objects({"objects": [TO_KOR, json.loads(first.serialize())]})
    assert isinstance(status, Status) and bool(status) and status.status == "complete"
    assert (status.total_count, status.success_count, status.failure_count, status.pending_count) == (2, 2, 0, 0)
    assert status.pendings == [] and status.failures == []
    status.refresh()
    status.wait_until_final(poll_interval=0.1, timeout=5)
    assert status.status == "complete"
    text = json.dumps({"objects": [json.loads(second.serialize())]})
    assert c.add_objects(text).success_count == 1  # a str envelope
    again = c.add_objects(text.encode(), wait_for_completion=False)  # bytes; a re-post is a no-op
    assert [s["message"] for s in again.successes] == ["already stored: a no-op"]
    with ApiRoot(node.api, user="gbr", password=node.tokens["gbr"]) as root:
        assert root.get_status(status.id).success_count == 2
    assert c.object_versions(first.id)["versions"] == [V1, V2]
    c.delete_object(first.id, version=V1)
    assert c.object_versions(first.id)["versions"] == [V2]
    c.delete_object(first.id)
    with pytest.raises(requests.HTTPError):
        c.get_object(first.id)
    c.close()


# stix2-validator --------------------------------------------------------------------------------------------
def test_everything_served_validates(node: Node, corpus: Corpus, misp_event: dict[str, Any]) -> None:
    options = ValidationOptions(version="2.1")
    checked = 0
    for name in node.collections:
        c = node.collection("gbr", name)
        for page in as_pages(c.get_objects, per_request=100, version="all"):
            for obj in page.get("objects", []):
                result = validate_instance(obj, options)
                assert result.is_valid and not result.errors, (obj["id"], [str(e) for e in result.errors])
                checked += 1
        c.close()
    assert checked >= len(corpus.objects) + len(misp_event["exported"])


# misp-stix --------------------------------------------------------------------------------------------------
EVENT_UUID = "0f8b9d0e-3b1c-4d7a-9a4e-6f1e2d3c4b5a"
MISP_EVENT: dict[str, Any] = {
    "Event": {
        "uuid": EVENT_UUID,
        "info": "Phishing wave against coalition logistics (fictional)",
        "date": "2024-05-01",
        "timestamp": "1714550400",
        "publish_timestamp": "1714550400",
        "published": True,
        "threat_level_id": "2",
        "analysis": "1",
        "distribution": "1",
        "Orgc": {"name": "GBR CERT", "uuid": "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"},
        "Tag": [{"name": "tlp:amber"}],
        "Attribute": [
            {
                "uuid": "2a3b4c5d-6e7f-4a8b-9c0d-1e2f3a4b5c6d",
                "type": "domain",
                "category": "Network activity",
                "value": "logistics-portal.example",
                "to_ids": True,
                "timestamp": "1714550400",
            },
            {
                "uuid": "3b4c5d6e-7f8a-4b9c-8d1e-2f3a4b5c6d7e",
                "type": "ip-dst",
                "category": "Network activity",
                "value": "198.51.100.23",
                "to_ids": False,
                "timestamp": "1714550400",
            },
        ],
        "Object": [
            {
                "uuid": "4c5d6e7f-8a9b-4c0d-9e2f-3a4b5c6d7e8f",
                "name": "file",
                "meta-category": "file",
                "timestamp": "1714550400",
                "Attribute": [
                    {
                        "uuid": "5d6e7f8a-9b0c-4d1e-8f3a-4b5c6d7e8f9a",
                        "type": "filename",
                        "object_relation": "filename",
                        "category": "Payload delivery",
                        "value": "manifest.xlsm",
                        "to_ids": False,
                        "timestamp": "1714550400",
                    },
                    {
                        "uuid": "6e7f8a9b-0c1d-4e2f-9a4b-5c6d7e8f9a0b",
                        "type": "sha256",
                        "object_relation": "sha256",
                        "category": "Payload delivery",
                        "value": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                        "to_ids": True,
                        "timestamp": "1714550400",
                    },
                ],
            }
        ],
    }
}


def _misp_stix() -> Any:
    """misp-stix, imported only by the tests that use it (it brings STIX 1 libraries; pyproject.toml quiets
    the import warnings of their vendored six)."""
    import misp_stix_converter

    return misp_stix_converter


@pytest.fixture(scope="module")
def misp_event(node: Node) -> dict[str, Any]:
    """MISP_EVENT as misp-stix exports it to STIX 2.1, posted as the bundle it makes (a bundle is an envelope)."""
    converter = _misp_stix()
    parser = converter.MISPtoSTIX21Parser()
    parser.parse_misp_event(MISP_EVENT)
    bundle = parser.bundle.serialize()
    status = node.collection("gbr", "misp").add_objects(bundle)
    return {"exported": json.loads(bundle)["objects"], "status": status}


def test_a_misp_event_round_trips_through_relto(node: Node, misp_event: dict[str, Any]) -> None:
    exported, status = misp_event["exported"], misp_event["status"]
    assert status.failures == [] and status.success_count == len(exported)
    c = node.collection("gbr", "misp")
    served = [o for page in as_pages(c.get_objects, per_request=5) for o in page.get("objects", [])]
    c.close()
    assert sorted(served, key=lambda o: o["id"]) == sorted(exported, key=lambda o: o["id"])
    converter = _misp_stix()
    bundle = stix2.parse({"type": "bundle", "id": f"bundle--{uuid.uuid4()}", "objects": served}, allow_custom=True)
    parser = converter.InternalSTIX2toMISPParser()
    parser.load_stix_bundle(bundle)
    parser.parse_stix_bundle()
    event = parser.misp_event
    original = MISP_EVENT["Event"]
    assert (event.uuid, event.info) == (EVENT_UUID, original["info"])
    assert sorted((a.type, a.value) for a in event.attributes) == sorted(
        (a["type"], a["value"]) for a in original["Attribute"]
    )
    [file_object] = event.objects
    assert file_object.name == "file"
    assert sorted((a.object_relation, a.value) for a in file_object.attributes) == sorted(
        (a["object_relation"], a["value"]) for a in original["Object"][0]["Attribute"]
    )
    assert "tlp:amber" in {t.name for t in event.tags}
