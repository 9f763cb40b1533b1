"""Class 7 (federation), through the real server: another nation's node token reads the federation feed; people's
tokens try it too. A node token must receive exactly what its nation (or, for a relay, the nations it relays for)
may receive, never TLP:RED or TLP:AMBER+STRICT, never publish or delete, and its cursor must not be forged.

The feed spans every collection of the (shared) node: each test publishes in a collection of its own and looks
at the events of that collection, and at every byte the feed sent.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from relto.domain.markings import TLP_IDS
from tests.attacks.conftest import Node, identity, indicator, marking, relto_many, sdo, tampered
from tests.conftest import TAXII

pytestmark = pytest.mark.slow

FEED = "/relto/v1/federation/events/"
INFO = "/relto/v1/federation/"
PEER, RELAY, READER, TOP = "KOR-peer", "KOR+UKR-relay", "KOR-read-only", "GBR-top-secret"


@pytest.fixture(scope="module")
def fed(node: Node) -> Iterator[Node]:
    """The package's node with node tokens (a KOR peer, a hub's relay for KOR and UKR, both SECRET), a read-only
    person of KOR and a TOP SECRET writer of GBR, issued by `relto token issue`."""
    if PEER not in node.tokens:
        args = node.db.args
        issued = relto_many(
            ["token", "issue", *args, "--nation", "KOR", "--clearance", "SECRET", "--peer"],
            ["token", "issue", *args, "--nation", "BEL", "--clearance", "SECRET", "--relay-for", "KOR,UKR"],
            ["token", "issue", *args, "--nation", "KOR", "--clearance", "SECRET", "--read-only"],
            ["token", "issue", *args, "--nation", "GBR", "--clearance", "TOP SECRET"],
        )
        node.tokens.update(zip((PEER, RELAY, READER, TOP), issued, strict=True))
    yield node


def feed(node: Node, who: str, params: dict[str, str] | None = None, path: str = FEED) -> httpx.Response:
    return httpx.get(
        f"{node.url}{path}",
        params=params,
        headers={"Authorization": f"Bearer {node.tokens[who]}", "Accept": "application/json"},
        timeout=30,
    )


@dataclass
class Received:
    """Everything a node token read from the feed, from the beginning to the head."""

    raw: bytes = b""
    events: list[dict[str, Any]] = field(default_factory=list)
    cursor: str = ""

    def in_collection(self, collection: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("c") == collection]

    def names(self, collection: str) -> set[str]:
        objects = [e["obj"] for e in self.in_collection(collection) if "obj" in e]
        return {o.get("name", "") for o in objects if o["type"] != "marking-definition"}

    def ids(self, collection: str) -> set[str]:
        return {e["id"] for e in self.in_collection(collection)}


def read_feed(node: Node, who: str) -> Received:
    got = Received()
    params = {"limit": "5000"}
    while True:
        r = feed(node, who, params)
        assert r.status_code == 200, r.text
        got.raw += r.content
        doc = r.json()
        got.events += doc["events"]
        got.cursor = params["next"] = doc["next"]
        if not doc["more"]:
            return got


def refusal_keys(r: httpx.Response) -> set[str]:
    try:
        body = r.json()
    except json.JSONDecodeError:
        return set()
    return set(body) if isinstance(body, dict) else {"<not an object>"}


def test_people_are_refused_the_federation_endpoints_and_learn_nothing(fed: Node) -> None:
    """A person's token (writer, read-only, admin; any nation) asks for the feed, with and without a cursor a node
    token was given: 403 with the same body every time (no counts, no cursor, no node id)."""
    cid = fed.new_collection()
    to_kor = marking("SECRET", "GBR", "KOR")
    fed.post("GBR", cid, [to_kor, indicator([to_kor])])
    cursor = read_feed(fed, PEER).cursor
    for who in ("GBR", "KOR", "UKR", READER, TOP, "admin"):
        answers = [
            feed(fed, who),
            feed(fed, who, {"next": cursor}),
            feed(fed, who, {"next": cursor, "limit": "1", "wait": "0"}),
            feed(fed, who, {"next": "forged"}),
            feed(fed, who, path=INFO),
        ]
        assert [a.status_code for a in answers] == [403] * len(answers), (who, [a.text for a in answers])
        bodies = {a.content for a in answers[:4]}
        assert len(bodies) == 1, f"{who}: the refusal depends on the cursor: {bodies}"
        for a in answers:
            assert not refusal_keys(a) & {"events", "next", "more", "count", "node", "id", "collections"}, a.text
            assert cursor not in a.text and "nation" not in refusal_keys(a)
    anonymous = httpx.get(f"{fed.url}{FEED}", timeout=30)
    assert anonymous.status_code == 401, anonymous.text


def test_a_node_token_can_neither_publish_nor_delete(fed: Node) -> None:
    """KOR's node (peer token) and a hub (relay token) POST objects and DELETE GBR's indicator: 403, nothing changes."""
    cid = fed.new_collection()
    to_kor = marking("SECRET", "GBR", "KOR")
    x = indicator([to_kor], name="GBR's")
    fed.post("GBR", cid, [to_kor, x])
    for who in (PEER, RELAY):
        own = indicator([to_kor], name=f"{who}'s")
        takeover = {**x, "modified": "2024-10-19T09:00:00.000Z", "name": "taken over"}
        posted = httpx.post(
            f"{fed.url}/api/collections/{cid}/objects/",
            content=json.dumps({"objects": [to_kor, own, takeover]}),
            headers=fed.headers(who),
            timeout=30,
        )
        assert posted.status_code == 403, posted.text
        deleted = fed.delete(who, cid, x["id"])
        assert deleted.status_code == 403, deleted.text
    stored = fed.read("GBR", cid, {"match[version]": "all"})
    assert sorted(o["id"] for o in stored) == sorted([to_kor["id"], x["id"]]), stored
    assert fed.get_object("GBR", cid, x["id"]) == [x]


def test_a_kor_peer_receives_only_what_kor_may(fed: Node) -> None:
    """GBR publishes, in one collection, what KOR may see and what it may not: GBR-only, TLP:RED and
    TLP:AMBER+STRICT (REL TO KOR), TOP SECRET REL TO KOR, a description tearlined to GBR, a report naming a
    GBR-only identity, a relationship to it. KOR's peer token must receive the first kind only, trimmed, and none
    of the rest may appear anywhere in the bytes it was sent."""
    cid = fed.new_collection()
    to_kor, gbr_only = marking("SECRET", "GBR", "KOR"), marking("SECRET", "GBR")
    top = marking("TOP SECRET", "GBR", "KOR")
    secret_text = f"GBR's source {uuid.uuid4()} for GBR alone"
    shared = indicator([to_kor], name="for KOR")
    hidden = indicator([gbr_only], name="GBR only")
    red = indicator([to_kor], name="red")
    red["object_marking_refs"].append(TLP_IDS["red"])
    strict = indicator([to_kor], name="amber strict")
    strict["object_marking_refs"].append(TLP_IDS["amber+strict"])
    amber = indicator([to_kor], name="amber")
    amber["object_marking_refs"].append(TLP_IDS["amber"])
    above = indicator([top], name="top secret")
    tearline = indicator(
        [to_kor],
        name="tearline",
        description=secret_text,
        granular_markings=[{"selectors": ["description"], "marking_ref": gbr_only["id"]}],
    )
    source = identity([gbr_only], name="GBR's source")
    seen = identity([to_kor], name="a source KOR may know")
    rep = sdo(
        "report", [to_kor], name="report", published="2024-10-18T09:00:00Z", object_refs=[source["id"], seen["id"]]
    )
    rel = sdo(
        "relationship", [to_kor], relationship_type="attributed-to", source_ref=shared["id"], target_ref=source["id"]
    )
    everything = [to_kor, gbr_only, top, shared, hidden, red, strict, amber, above, tearline, source, seen, rep, rel]
    status = fed.post(TOP, cid, everything)
    assert all(status.stored(o["id"]) for o in everything), status.raw

    got = read_feed(fed, PEER)
    assert got.names(cid) == {"for KOR", "amber", "tearline", "a source KOR may know", "report"}
    assert got.ids(cid) == {to_kor["id"], shared["id"], amber["id"], tearline["id"], seen["id"], rep["id"]}
    for secret in (gbr_only, top, hidden, red, strict, above, source, rel):
        assert secret["id"].encode() not in got.raw, f"{secret.get('name', secret['id'])} appears in KOR's feed"
    assert secret_text.encode() not in got.raw
    objects = {e["id"]: e["obj"] for e in got.in_collection(cid)}
    assert "description" not in objects[tearline["id"]] and "granular_markings" not in objects[tearline["id"]]
    assert objects[rep["id"]]["object_refs"] == [seen["id"]]
    assert objects[shared["id"]] == shared  # what KOR may see travels unchanged
    assert all(e["o"] == "GBR" for e in got.in_collection(cid))


def test_a_relay_receives_the_union_of_its_nations_and_nothing_else(fed: Node) -> None:
    """A hub's relay token for KOR,UKR: what KOR or UKR may see (directly or as IP4's member), nothing REL TO FRA
    or NATO alone (neither is a member), and never TLP:RED or TLP:AMBER+STRICT."""
    cid = fed.new_collection()
    m = {k: marking("SECRET", *k.split("+")) for k in ("GBR+KOR", "UKR", "FRA", "NATO", "IP4", "KOR+UKR")}
    made = {
        "kor": indicator([m["GBR+KOR"]], name="kor"),
        "ukr": indicator([m["UKR"]], name="ukr"),
        "ip4": indicator([m["IP4"]], name="ip4"),
        "fra": indicator([m["FRA"]], name="fra"),
        "nato": indicator([m["NATO"]], name="nato"),
        "red": indicator([m["KOR+UKR"]], name="red"),
        "strict": indicator([m["KOR+UKR"]], name="strict"),
        "amber": indicator([m["KOR+UKR"]], name="amber"),
    }
    made["red"]["object_marking_refs"].append(TLP_IDS["red"])
    made["strict"]["object_marking_refs"].append(TLP_IDS["amber+strict"])
    made["amber"]["object_marking_refs"].append(TLP_IDS["amber"])
    status = fed.post("GBR", cid, [*m.values(), *made.values()])
    assert all(status.stored(o["id"]) for o in made.values()), status.raw

    got = read_feed(fed, RELAY)
    assert got.names(cid) == {"kor", "ukr", "ip4", "amber"}
    for name in ("fra", "nato", "red", "strict"):
        assert made[name]["id"].encode() not in got.raw, f"the relay received {name}"
    for never in (TLP_IDS["red"], TLP_IDS["amber+strict"]):
        assert all(never not in json.dumps(e) for e in got.events), "a relay received TLP:RED or TLP:AMBER+STRICT"
    # And the KOR peer, for comparison, gets KOR's part alone.
    assert read_feed(fed, PEER).names(cid) == {"kor", "ip4", "amber"}


def test_forged_tampered_and_foreign_cursors_are_refused(fed: Node) -> None:
    """A node token walks the feed with cursors of its own making: changed characters, garbage, a TAXII `next`
    of a collection (sealed for that collection, not for federation); and a person uses a federation cursor as a
    TAXII `next`. All 4xx, never a 500."""
    cid = fed.new_collection()
    to_kor = marking("SECRET", "GBR", "KOR")
    fed.post("GBR", cid, [to_kor, *(indicator([to_kor]) for _ in range(3))])
    first = feed(fed, PEER, {"limit": "1"})
    assert first.status_code == 200
    cursor = first.json()["next"]
    assert feed(fed, PEER, {"next": cursor, "limit": "1"}).status_code == 200  # the cursor as issued works

    taxii_next = fed.page("KOR", cid, {"limit": "1"})["next"]
    forged = [
        *tampered(cursor),
        taxii_next,
        "x",
        "AAAA",
        "=" * 8,
        base64.urlsafe_b64encode(b"0").decode(),
        base64.urlsafe_b64encode(b"\x00" * 64).decode(),
        cursor + "A",
        cursor[:-1],
        cursor[::-1],
        "A" * 20000,
        "%00",
        "\u00e9\u00e9",
    ]
    for who in (PEER, RELAY):
        answers = {f: feed(fed, who, {"next": f}).status_code for f in forged}
        bad = {f[:40]: s for f, s in answers.items() if not 400 <= s < 500}
        assert bad == {}, f"{who}: forged cursors answered {bad}"
    as_taxii = fed.get("KOR", f"/api/collections/{cid}/objects/", {"limit": "1", "next": cursor})
    assert 400 <= as_taxii.status_code < 500, as_taxii.text


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"limit": "abc"}, "4xx"),
        ({"limit": "1e3"}, "4xx"),
        ({"limit": "9" * 5000}, "4xx"),
        ({"limit": ""}, "4xx"),
        ({"limit": "-1"}, "ok"),
        ({"limit": "0"}, "ok"),
        ({"limit": str(10**12)}, "ok"),
        ({"wait": "abc"}, "4xx"),
        ({"wait": "-1"}, "ok"),
        ({"wait": "inf"}, "ok"),
        ({"wait": "1e308"}, "ok"),
        ({"from": "x" * 5000}, "ok"),
    ],
    ids=lambda v: str(v)[:30] if not isinstance(v, str) else v,
)
def test_bad_parameters_are_refused_or_clamped(fed: Node, params: dict[str, str], expected: str) -> None:
    r = feed(fed, PEER, params)
    if expected == "ok":
        assert r.status_code == 200, r.text
        assert len(r.json()["events"]) <= 5000
    else:
        assert 400 <= r.status_code < 500, r.text


@pytest.mark.parametrize("wait", ["nan", "NaN", "-nan"])
def test_a_wait_that_is_not_a_number_does_not_hold_the_request(fed: Node, wait: str) -> None:
    """At the head, with a cursor, `wait` NaN: refused or answered at once, never held open for ever."""
    head = read_feed(fed, PEER).cursor
    try:
        r = httpx.get(
            f"{fed.url}{FEED}",
            params={"next": head, "wait": wait},
            headers={"Authorization": f"Bearer {fed.tokens[PEER]}"},
            timeout=httpx.Timeout(10.0),
        )
    except httpx.ReadTimeout:
        pytest.fail(f"wait={wait} held the request open")
    assert r.status_code == 200 or 400 <= r.status_code < 500, r.text


def test_the_feed_answers_json_to_a_taxii_accept(fed: Node) -> None:
    """Content negotiation is not a way around the refusal: a person asking with TAXII's media type still gets 403."""
    r = httpx.get(f"{fed.url}{FEED}", headers={**fed.headers("KOR"), "Accept": TAXII}, timeout=30)
    assert r.status_code == 403, r.text
