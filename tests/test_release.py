"""Field markings, tearlines and referential hiding through the TAXII API and the stream (docs/tearlines.md)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import orjson
import pytest

from relto.domain.levels import DEFAULT_LEVELS, Ladder
from relto.domain.markings import releasability_marking
from relto.taxii.media import TAXII
from tests.conftest import Harness, Server, relto

LADDER = Ladder.of(DEFAULT_LEVELS)
WIDE = releasability_marking("UNCLASSIFIED", ["GBR", "KOR", "UKR", "USA"], LADDER)
NARROW = releasability_marking("SECRET", ["GBR"], LADDER)
FVEY_ONLY = releasability_marking("SECRET", ["USA"], LADDER)
T0 = "2024-10-18T09:00:00.000Z"
T1 = "2024-10-19T09:00:00.000Z"


def sid(type_: str) -> str:
    return f"{type_}--{uuid.uuid4()}"


def sdo(type_: str, marking: dict[str, Any] = WIDE, modified: str = T0, **props: Any) -> dict[str, Any]:
    obj = {
        "type": type_,
        "spec_version": "2.1",
        "id": props.pop("id", None) or sid(type_),
        "created": T0,
        "modified": modified,
        "object_marking_refs": [marking["id"]],
    }
    obj.update(props)
    return obj


def objects(h: Harness, token: str, coll: str, **params: Any) -> dict[str, dict[str, Any]]:
    r = h.get(token, f"/api/collections/{coll}/objects/", **params)
    assert r.status_code == 200, r.text
    return {o["id"]: o for o in r.json().get("objects", [])}


@pytest.fixture
def world(harness: Harness) -> tuple[Harness, str, dict[str, str]]:
    coll = harness.collection()
    tokens = {n: harness.token(n) for n in ("GBR", "KOR", "USA", "FRA")}
    harness.post(tokens["GBR"], coll, [WIDE, NARROW])
    harness.post(tokens["USA"], coll, [FVEY_ONLY])
    return harness, coll, tokens


def test_tearline_fields_are_removed_for_parties_outside_them(world: tuple[Harness, str, dict[str, str]]) -> None:
    h, coll, t = world
    unit = sdo("threat-actor", name="KPA 11th Corps element", description="moved by sea to Vladivostok")
    report = sdo(
        "report",
        name="DPRK troops in Russia",
        published=T0,
        description="sources and methods",
        labels=["deployment", "secret-source", "kursk"],
        object_refs=[unit["id"]],
        x_collection_notes="HUMINT",
        granular_markings=[
            {"selectors": ["description", "labels.[1]", "x_collection_notes"], "marking_ref": NARROW["id"]},
            {"selectors": ["labels.[2]"], "lang": "en"},
        ],
    )
    h.post(t["GBR"], coll, [unit, report])

    for_gbr = objects(h, t["GBR"], coll)[report["id"]]
    assert for_gbr == report

    for_kor = objects(h, t["KOR"], coll)[report["id"]]
    expected = {k: v for k, v in report.items() if k not in ("description", "x_collection_notes")}
    expected["labels"] = ["deployment", "kursk"]
    expected["granular_markings"] = [{"selectors": ["labels.[1]"], "lang": "en"}]
    assert for_kor == expected

    # FRA is outside the whole: nothing at all, and the object answers 404 like a missing one.
    assert report["id"] not in objects(h, t["FRA"], coll)
    r = h.get(t["FRA"], f"/api/collections/{coll}/objects/{report['id']}/")
    assert r.status_code == 404


def test_a_marking_on_a_required_property_restricts_the_whole_version(
    world: tuple[Harness, str, dict[str, str]],
) -> None:
    h, coll, t = world
    first = sdo("report", name="Open title", published=T0, object_refs=[sid("identity")])
    second = dict(first, modified=T1, name="Codeword title")
    second["granular_markings"] = [{"selectors": ["name"], "marking_ref": NARROW["id"]}]
    h.post(t["GBR"], coll, [first, second])
    assert objects(h, t["GBR"], coll)[first["id"]]["name"] == "Codeword title"
    # KOR is judged on its newest admitted version: the first.
    assert objects(h, t["KOR"], coll)[first["id"]] == first
    versions = h.get(t["KOR"], f"/api/collections/{coll}/objects/{first['id']}/versions/").json()
    assert versions["versions"] == [T0]


def test_references_to_hidden_objects_are_removed_and_relationships_hidden(
    world: tuple[Harness, str, dict[str, str]],
) -> None:
    h, coll, t = world
    secret_source = sdo("identity", marking=NARROW, name="a source GBR protects")
    actor = sdo("threat-actor", name="KPA unit", created_by_ref=secret_source["id"])
    missile = sdo("malware", is_family=False, name="KN-23 guidance software")
    uses = sdo(
        "relationship", relationship_type="attributed-to", source_ref=actor["id"], target_ref=secret_source["id"]
    )
    plain = sdo("relationship", relationship_type="uses", source_ref=actor["id"], target_ref=missile["id"])
    not_held = sid("identity")
    report = sdo(
        "report",
        name="Sightings",
        published=T0,
        object_refs=[secret_source["id"], actor["id"], uses["id"], not_held, missile["id"]],
        granular_markings=[{"selectors": ["object_refs.[4]"], "marking_ref": NARROW["id"]}],
    )
    only_hidden = sdo("report", name="Source report", published=T0, object_refs=[secret_source["id"]])
    sighting = sdo("sighting", sighting_of_ref=secret_source["id"])
    h.post(t["GBR"], coll, [secret_source, actor, missile, uses, plain, report, only_hidden, sighting])

    gbr = objects(h, t["GBR"], coll)
    assert gbr[report["id"]] == report and gbr[actor["id"]] == actor and uses["id"] in gbr

    kor = objects(h, t["KOR"], coll)
    assert secret_source["id"] not in kor
    assert "created_by_ref" not in kor[actor["id"]]
    assert uses["id"] not in kor and sighting["id"] not in kor and only_hidden["id"] not in kor
    assert kor[plain["id"]] == plain
    # The hidden source, the relationship naming it (rule 2) and the narrow element go; the rest stay and the
    # selector of the element that moved is dropped with it.
    assert kor[report["id"]]["object_refs"] == [actor["id"], not_held]
    assert "granular_markings" not in kor[report["id"]]

    manifest = h.get(t["KOR"], f"/api/collections/{coll}/manifest/").json()
    assert {m["id"] for m in manifest["objects"]} == set(kor)
    for hidden in (uses["id"], sighting["id"], only_hidden["id"]):
        r = h.get(t["KOR"], f"/api/collections/{coll}/objects/{hidden}/")
        assert r.status_code == 404, hidden

    # Deleting the hidden endpoint: the node no longer holds it, so nothing names a hidden object any more.
    admin = h.token("GBR", admin=True)
    r = h.client.delete(f"/api/collections/{coll}/objects/{secret_source['id']}/", headers=h.headers(admin))
    assert r.status_code == 200
    kor = objects(h, t["KOR"], coll)
    assert kor[uses["id"]] == uses and kor[actor["id"]] == actor


def test_pages_count_stored_versions_and_say_more_when_some_are_withheld(
    world: tuple[Harness, str, dict[str, str]],
) -> None:
    h, coll, t = world
    hidden = sdo("identity", marking=NARROW, name="hidden")
    rels = [sdo("relationship", relationship_type="related-to", source_ref=hidden["id"], target_ref=sid("tool"))]
    tools = [sdo("tool", name=f"tool {i}") for i in range(3)]
    h.post(t["GBR"], coll, [hidden, *rels, *tools])
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 2}
    while True:
        r = h.get(t["KOR"], f"/api/collections/{coll}/objects/", **params)
        body = r.json()
        seen += [o["id"] for o in body.get("objects", [])]
        if not body["more"]:
            break
        params["next"] = body["next"]
    # The marking definitions are public vocabulary; of the objects, only the tools are released to KOR.
    assert [i for i in seen if not i.startswith("marking-definition--")] == [o["id"] for o in tools]


def test_the_stream_releases_the_same_bodies(world: tuple[Harness, str, dict[str, str]]) -> None:
    h, coll, t = world
    hidden = sdo("identity", marking=NARROW, name="hidden")
    actor = sdo("threat-actor", name="unit", created_by_ref=hidden["id"], description="x")
    actor["granular_markings"] = [{"selectors": ["description"], "marking_ref": NARROW["id"]}]
    rel = sdo("relationship", relationship_type="related-to", source_ref=actor["id"], target_ref=hidden["id"])
    h.post(t["GBR"], coll, [hidden, actor, rel])
    taxii = objects(h, t["KOR"], coll)
    with h.client.stream(
        "GET",
        f"/api/collections/{coll}/stream/",
        params={"added_after": "2000-01-01T00:00:00Z"},
        headers={"Authorization": f"Bearer {t['KOR']}", "Accept": "text/event-stream"},
    ) as r:
        got: dict[str, Any] = {}
        buffer = ""
        for chunk in r.iter_text():
            buffer += chunk
            if actor["id"] in buffer:
                break
    for block in buffer.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if lines.get("event") == "object":
            obj = orjson.loads(lines["data"])
            got[obj["id"]] = obj
    assert got[actor["id"]] == taxii[actor["id"]]
    assert "description" not in got[actor["id"]] and "created_by_ref" not in got[actor["id"]]
    assert hidden["id"] not in got and rel["id"] not in got


def test_bad_selectors_are_rejected_with_a_message(world: tuple[Harness, str, dict[str, str]]) -> None:
    h, coll, t = world
    cases = {
        "descriptoin": "names nothing",
        "labels.[5]": "names nothing",
        "labels[0]": "is not a selector",
        "granular_markings.[0]": "cannot mark the markings",
        "[0]": "must start with a property name",
    }
    for selector, message in cases.items():
        obj = sdo("tool", name="t", labels=["a"], description="d")
        obj["granular_markings"] = [{"selectors": [selector], "marking_ref": NARROW["id"]}]
        r = h.client.post(
            f"/api/collections/{coll}/objects/",
            content=orjson.dumps({"objects": [obj]}),
            headers=h.headers(t["GBR"]),
        )
        status = r.json()
        assert status["failure_count"] == 1, selector
        assert message in status["failures"][0]["message"], (selector, status)


def test_preview_shows_a_nation_its_view_for_authors_and_admins_only(
    world: tuple[Harness, str, dict[str, str]],
) -> None:
    h, coll, t = world
    actor = sdo("threat-actor", name="unit", description="secret detail")
    actor["granular_markings"] = [{"selectors": ["description"], "marking_ref": NARROW["id"]}]
    h.post(t["GBR"], coll, [actor])
    path = f"/api/collections/{coll}/objects/{actor['id']}/preview/"

    kor = h.get(t["GBR"], path, nation="KOR", clearance="SECRET").json()
    assert kor["released"] is True and kor["nation"] == "KOR" and kor["clearance"] == "SECRET"
    assert kor["objects"] == [{k: v for k, v in actor.items() if k not in ("description", "granular_markings")}]
    fra = h.get(t["GBR"], path, nation="FRA").json()
    assert fra["released"] is False and fra["objects"] == [] and fra["clearance"] == "TOP SECRET"
    low = h.get(t["GBR"], path, nation="GBR", clearance="RESTRICTED").json()
    assert low["objects"][0] == {k: v for k, v in actor.items() if k not in ("description", "granular_markings")}
    admin = h.token("USA", admin=True, clearance="TOP SECRET")
    assert h.get(admin, path, nation="UKR").json()["released"] is True

    assert h.get(t["KOR"], path, nation="KOR").status_code == 403  # can see it, did not write it
    assert h.get(t["FRA"], path, nation="KOR").status_code == 404  # cannot see it at all
    for bad in ({"nation": "KOREA"}, {"nation": "KOR", "clearance": "ULTRA"}, {}, {"x": "1"}):
        r = h.get(t["GBR"], path, **bad)
        assert r.status_code == 400 and r.json()["description"], bad


def test_every_release_and_write_is_in_the_decision_log(world: tuple[Harness, str, dict[str, str]]) -> None:
    h, coll, t = world
    actor = sdo("threat-actor", name="unit")
    h.post(t["GBR"], coll, [actor])
    objects(h, t["KOR"], coll)
    h.get(t["KOR"], f"/api/collections/{coll}/objects/{actor['id']}/")
    h.get(t["KOR"], f"/api/collections/{coll}/manifest/")
    h.get(t["KOR"], f"/api/collections/{coll}/objects/{actor['id']}/versions/")
    h.get(t["GBR"], f"/api/collections/{coll}/objects/{actor['id']}/preview/", nation="KOR")
    h.node.decisions.flush()
    records = h.node.store.decisions(limit=100)
    mine = [(r.nation, r.path) for r in records if (actor["id"], T0) in r.items]
    assert mine == [
        ("GBR", "publish"),
        ("KOR", "taxii.objects"),
        ("KOR", "taxii.object"),
        ("KOR", "taxii.manifest"),
        ("KOR", "taxii.versions"),
        ("GBR", "preview"),
    ]
    assert {r.collection for r in records if (actor["id"], T0) in r.items} == {coll}


def test_end_to_end_a_tearline_through_the_real_server_and_the_preview_command(server: Server) -> None:
    db = server.db.args
    coll = relto("collection", "add", *db, "reports")
    kor = relto("token", "issue", *db, "--nation", "KOR", "--clearance", "SECRET")
    actor = sdo("threat-actor", name="unit", description="secret detail", aliases=["a", "b"])
    actor["granular_markings"] = [{"selectors": ["description", "aliases.[1]"], "marking_ref": NARROW["id"]}]
    headers = {"Authorization": f"Bearer {server.admin}", "Accept": TAXII, "Content-Type": TAXII}
    r = httpx.post(
        f"{server.url}/api/collections/{coll}/objects/",
        content=orjson.dumps({"objects": [WIDE, NARROW, actor]}),
        headers=headers,
    )
    assert r.json()["success_count"] == 3, r.text
    wide_view = {k: v for k, v in actor.items() if k not in ("description", "granular_markings")}
    wide_view["aliases"] = ["a"]
    r = httpx.get(
        f"{server.url}/api/collections/{coll}/objects/{actor['id']}/",
        headers={**headers, "Authorization": f"Bearer {kor}"},
    )
    assert r.json()["objects"] == [wide_view]
    shown = orjson.loads(relto("preview", actor["id"], "--as", "KOR", *db))
    assert shown == {
        "collection": coll,
        "id": actor["id"],
        "nation": "KOR",
        "clearance": "TOP SECRET",
        "released": True,
        "reasons": [
            f"the field {field} is marked SECRET REL TO GBR, which does not include KOR"
            for field in ("description", "aliases.[1]")
        ],
        "objects": [wide_view],
    }
    gbr = orjson.loads(relto("preview", actor["id"], "--as", "gbr", "--clearance", "SECRET", "--collection", coll, *db))
    assert gbr["objects"] == [actor] and gbr["reasons"] == []


def stream_events(h: Harness, token: str, coll: str, until: str) -> list[tuple[str, dict[str, Any]]]:
    """The stream from the start, read until a frame containing `until` arrives (or a heartbeat after 5 s)."""
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
    buffer = ""
    url = f"/api/collections/{coll}/stream/"
    deadline = time.monotonic() + 5
    with h.client.stream("GET", url, params={"added_after": "2000-01-01T00:00:00Z"}, headers=headers) as r:
        for chunk in r.iter_text():
            buffer += chunk
            if (until in buffer and buffer.endswith("\n\n")) or time.monotonic() > deadline:
                break
    events = []
    for block in buffer.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if lines.get("event") in ("object", "deleted"):
            events.append((lines["event"], orjson.loads(lines["data"])))
    return events


def test_a_revocation_removes_the_older_versions_for_everyone(world: tuple[Harness, str, dict[str, str]]) -> None:
    h, coll, t = world
    old = sdo("indicator", pattern="[ipv4-addr:value = '203.0.113.9']", pattern_type="stix", valid_from=T0)
    revoked = dict(old, modified=T1, revoked=True, object_marking_refs=[NARROW["id"]])
    h.post(t["GBR"], coll, [old])
    assert old["id"] in objects(h, t["KOR"], coll)
    status = h.post(t["GBR"], coll, [revoked])
    assert status["success_count"] == 1

    # GBR sees the revocation; KOR, who may not see it, no longer sees the old content either.
    assert objects(h, t["GBR"], coll)[old["id"]] == revoked
    assert old["id"] not in objects(h, t["KOR"], coll)
    assert h.get(t["KOR"], f"/api/collections/{coll}/objects/{old['id']}/").status_code == 404
    versions = h.get(t["GBR"], f"/api/collections/{coll}/objects/{old['id']}/versions/").json()
    assert versions["versions"] == [T1]
    # The stream tells KOR the version it had is gone.
    kor_events = [(kind, doc["id"]) for kind, doc in stream_events(h, t["KOR"], coll, "event: deleted")]
    assert ("deleted", old["id"]) in kor_events and ("object", old["id"]) not in kor_events

    # Nothing brings it back: neither the old version nor a new one.
    again = h.post(t["GBR"], coll, [old, dict(old, modified="2024-10-20T09:00:00.000Z")])
    assert again["failure_count"] == 2
    assert all("revoked" in f["message"] for f in again["failures"])
    assert h.post(t["GBR"], coll, [revoked])["successes"][0]["message"] == "already stored: a no-op"


def test_only_the_publishing_nation_may_revoke(world: tuple[Harness, str, dict[str, str]]) -> None:
    """STIX 2.1: only an object's creator versions it; an admin of another nation may delete, not revoke."""
    h, coll, t = world
    actor = sdo("threat-actor", name="unit")
    h.post(t["GBR"], coll, [actor])
    hijack = dict(actor, modified=T1, revoked=True)
    for token in (t["USA"], h.token("USA", admin=True)):
        status = h.post(token, coll, [hijack])
        assert status["failure_count"] == 1 and "belongs to GBR" in status["failures"][0]["message"]
    assert objects(h, t["KOR"], coll)[actor["id"]] == actor
    assert h.post(t["GBR"], coll, [hijack])["success_count"] == 1
    assert objects(h, t["GBR"], coll)[actor["id"]] == hijack


def test_preview_never_shows_the_requester_more_than_its_own_view(
    world: tuple[Harness, str, dict[str, str]],
) -> None:
    h, coll, t = world
    usa_only = sdo("identity", marking=FVEY_ONLY, name="a USA source")
    h.post(t["USA"], coll, [usa_only])
    writer = h.token("GBR", clearance="CONFIDENTIAL")
    both = releasability_marking("SECRET", ["GBR", "USA"], LADDER)
    h.post(t["GBR"], coll, [both])
    actor = sdo("threat-actor", name="unit", description="secret", created_by_ref=usa_only["id"])
    actor["granular_markings"] = [{"selectors": ["description"], "marking_ref": both["id"]}]
    h.post(writer, coll, [actor])
    path = f"/api/collections/{coll}/objects/{actor['id']}/preview/"
    # USA would receive everything, but the CONFIDENTIAL GBR writer does not see the SECRET field, so the preview
    # leaves it out and says so. The reference to the USA-only source stays: GBR wrote it (docs/security.md, a
    # nation's own versions are never reference-trimmed for it).
    shown = h.get(writer, path, nation="USA").json()
    assert shown["released"] is True and "above your own view" in shown["note"]
    assert shown["objects"] == [{k: v for k, v in actor.items() if k not in ("description", "granular_markings")}]
    full = h.get(t["GBR"], path, nation="USA").json()
    assert full["objects"][0]["created_by_ref"] == usa_only["id"] and full["objects"][0]["description"] == "secret"
    # KOR, which the source is hidden from, would receive the actor without it.
    kor = h.get(t["GBR"], path, nation="KOR").json()
    assert "created_by_ref" not in kor["objects"][0]
    assert any("the field description is marked" in r for r in kor["reasons"])
    assert any(f"created_by_ref {usa_only['id']} is not releasable to KOR" in r for r in kor["reasons"])
    # The reasons are told within the requester's own view: the CONFIDENTIAL writer is not told of the field.
    told = h.get(writer, path, nation="KOR").json()
    assert told["released"] is True and not any("description" in r for r in told["reasons"])
