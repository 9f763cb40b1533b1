"""The federation feed and receive path in process: what a node token reads, and what the following node stores."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from relto.admin import issue_token
from relto.domain.audit import verify
from relto.domain.errors import Forbidden, InvalidRequest
from relto.domain.levels import DEFAULT_LEVELS, Ladder
from relto.domain.markings import TLP_IDS, releasability_marking
from relto.domain.parties import Party
from relto.domain.timestamps import now_micros
from relto.node import Node
from relto.store.base import PeerRecord
from relto.taxii.filters import Filters
from tests.conftest import Database, make_node

LADDER = Ladder.of(DEFAULT_LEVELS)
T0, T1 = "2024-10-18T09:00:00.000Z", "2024-10-19T09:00:00.000Z"


def report(name: str, *markings: str, modified: str = T0, **extra: Any) -> dict[str, Any]:
    return {
        "type": "report",
        "spec_version": "2.1",
        "id": f"report--{uuid.uuid4()}",
        "created": T0,
        "modified": modified,
        "name": name,
        "published": T0,
        "object_refs": [f"identity--{uuid.uuid4()}"],
        "object_marking_refs": list(markings),
        **extra,
    }


def mark(classification: str, *rel_to: str) -> dict[str, Any]:
    return releasability_marking(classification, rel_to, LADDER)


def writer(node: Node, nation: str) -> Party:
    return Party(token_id=1, nation=nation, clearance=len(DEFAULT_LEVELS) - 1)


def node_party(node: Node, nation: str, *, relay_for: str = "") -> Party:
    token = issue_token(
        node.store,
        nation=nation,
        clearance="SECRET",
        organisation="",
        name="peer",
        kind="relay" if relay_for else "peer",
        relay_for=relay_for,
    )
    return node.authenticate(token)


def follow(upstream: Node, downstream: Node, party: Party, name: str = "up", speaks_for: str = "") -> PeerRecord:
    """Pull everything `party` may read on `upstream` into `downstream`, batch by batch; the peer as it ends."""
    if downstream.store.peer(name) is None:
        downstream.store.add_peer(
            PeerRecord(name=name, url="http://upstream.invalid", token="rt_x", speaks_for=speaks_for, created=1)
        )
    while True:
        peer = downstream.store.peer(name)
        assert peer is not None
        batch = upstream.federation.feed(party, peer.cursor or None, 3, downstream.info.node_id)
        downstream.federation.receive(peer, orjson.loads(batch.body))
        if not batch.more:
            final = downstream.store.peer(name)
            assert final is not None
            return final


def everything(node: Node, collection: str, nation: str) -> dict[str, Any]:
    party = Party(token_id=0, nation=nation, clearance=len(DEFAULT_LEVELS) - 1)
    page = node.read(party, collection, Filters(limit=1000), versions=("all",))
    return {(r.stix_id, r.version_text): orjson.loads(b) for r, b in zip(page.rows, page.bodies, strict=True)}


@pytest.fixture
def pair(database: Database, tmp_path: Path) -> Any:
    """GBR's node (every back-end) and KOR's node (SQLite)."""
    up = make_node(database, "GBR", node_id=str(uuid.uuid4()))
    (tmp_path / "kor").mkdir(mode=0o700)
    down = make_node(tmp_path / "kor", "KOR", node_id=str(uuid.uuid4()))
    yield up, down
    up.close()
    down.close()


def test_peer_receives_exactly_what_its_nation_may(pair: Any) -> None:
    up, down = pair
    col = up.add_collection("intel").id
    rel_kor, rel_fvey = mark("SECRET", "KOR", "GBR"), mark("SECRET", "FVEY")
    mine = report("for KOR", rel_kor["id"])
    theirs = report("for FVEY", rel_fvey["id"])
    red = report("red", rel_kor["id"], TLP_IDS["red"])
    strict = report("amber strict", rel_kor["id"], TLP_IDS["amber+strict"])
    amber = report("amber", rel_kor["id"], TLP_IDS["amber"])
    status = up.publish(writer(up, "GBR"), col, [rel_kor, rel_fvey, mine, theirs, red, strict, amber])
    assert status["failure_count"] == 0
    peer = follow(up, down, node_party(up, "KOR"))
    got = everything(down, col, "KOR")
    names = {b.get("name") for b in got.values() if b["type"] == "report"}
    assert names == {"for KOR", "amber"}  # neither FVEY's, nor TLP:RED, nor TLP:AMBER+STRICT
    assert got[(mine["id"], T0)] == mine  # JSON-equal after travel
    assert peer.received == 3  # the two reports and the one definition KOR may see
    # Stored in GBR's copy, with its path: the originator keeps ownership on the new node.
    rows = down.store.read(
        down._query(Party(token_id=0, nation="GBR", clearance=3), col, Filters(limit=10), ids=(mine["id"],))
    )
    assert [r.originator for r in rows] == ["GBR"]
    # Every release recorded, on both sides, each by reference to its own node's version rows.
    up.decisions.flush()
    sent = [d for d in up.store.decisions(limit=100) if d.path == "federation"]
    assert sent and all(d.refs and 0 not in d.refs for d in sent)
    down.decisions.flush()
    received = [d for d in down.store.decisions(limit=100) if d.path == "federation.receive"]
    assert {i for d in received for i, _ in d.items} == {o["id"] for o in (rel_kor, mine, amber)}
    assert all(d.refs and 0 not in d.refs for d in received) and verify(down.store.decisions(limit=100)).ok


def test_relay_reads_union_and_people_are_refused(pair: Any) -> None:
    up, down = pair
    col = up.add_collection("intel").id
    to_kor, to_ukr, to_fra = mark("SECRET", "KOR"), mark("SECRET", "UKR"), mark("SECRET", "FRA")
    objs = [report("kor", to_kor["id"]), report("ukr", to_ukr["id"]), report("fra", to_fra["id"])]
    up.publish(writer(up, "GBR"), col, [to_kor, to_ukr, to_fra, *objs])
    follow(up, down, node_party(up, "BEL", relay_for="KOR,UKR"), speaks_for="GBR")
    assert {b.get("name") for b in everything(down, col, "GBR").values() if b["type"] == "report"} == {"kor", "ukr"}
    # The hub's own nation (KOR here) still sees only what is releasable to it.
    assert {b.get("name") for b in everything(down, col, "KOR").values() if b["type"] == "report"} == {"kor"}
    with pytest.raises(Forbidden):
        up.federation.feed(writer(up, "KOR"), None, 10)


def test_speaks_for_refuses_other_originators(pair: Any) -> None:
    up, down = pair
    col = up.add_collection("intel").id
    to_kor = mark("SECRET", "KOR")
    up.publish(writer(up, "GBR"), col, [to_kor, report("gbr", to_kor["id"])])
    up.publish(writer(up, "FRA"), col, [to_kor, report("fra", to_kor["id"])])
    peer = follow(up, down, node_party(up, "KOR"))  # speaks for the peer's nation: GBR
    assert {b.get("name") for b in everything(down, col, "KOR").values() if b["type"] == "report"} == {"gbr"}
    assert peer.refused == 2 and "FRA" in peer.last_refusal


def test_owner_deletion_travels_and_admin_deletion_does_not(pair: Any) -> None:
    up, down = pair
    col = up.add_collection("intel").id
    to_kor = mark("SECRET", "KOR", "FRA")
    a, b = report("a", to_kor["id"]), report("b", to_kor["id"])
    up.publish(writer(up, "GBR"), col, [to_kor, a, b])
    party = node_party(up, "KOR")
    follow(up, down, party)
    up.delete_object(writer(up, "GBR"), col, a["id"], Filters(limit=10))
    admin = Party(token_id=9, nation="FRA", clearance=3, admin=True)
    assert up.delete_object(admin, col, b["id"], Filters(limit=10)) == 1
    follow(up, down, party)
    names = {x.get("name") for x in everything(down, col, "KOR").values() if x["type"] == "report"}
    assert names == {"b"}


def test_cursor_resumes_and_repeats_are_noops(pair: Any) -> None:
    up, down = pair
    col = up.add_collection("intel").id
    to_kor = mark("SECRET", "KOR")
    up.publish(writer(up, "GBR"), col, [to_kor, *(report(f"r{i}", to_kor["id"]) for i in range(7))])
    party = node_party(up, "KOR")
    first = follow(up, down, party)
    up.publish(writer(up, "GBR"), col, [report("late", to_kor["id"])])
    second = follow(up, down, party)
    assert second.received == first.received + 1  # only the new one was read and stored
    # Replaying the first batch again (a crash before the cursor was kept would do this) stores nothing new.
    again = orjson.loads(up.federation.feed(party, None, 100, down.info.node_id).body)
    peer = down.store.peer("up")
    assert peer is not None
    outcome, _, _ = down.federation.receive(peer, again)
    assert outcome.received == 0 and outcome.refused == 0
    assert len(everything(down, col, "KOR")) == 9


def test_versions_from_a_ring_are_not_stored_twice(pair: Any) -> None:
    up, down = pair
    col = up.add_collection("intel").id
    to_kor = mark("SECRET", "KOR", "GBR")
    up.publish(writer(up, "GBR"), col, [to_kor, report("x", to_kor["id"])])
    follow(up, down, node_party(up, "KOR"))
    # Back up the other way: nothing GBR's node sent comes back to it.
    back = orjson.loads(down.federation.feed(node_party(down, "GBR"), None, 100, up.info.node_id).body)
    assert back["events"] == []
    # And a node that receives its own version back (a ring) does not store it again.
    back = orjson.loads(down.federation.feed(node_party(down, "GBR"), None, 100, "someone-else").body)
    assert back["events"]
    up.store.add_peer(
        PeerRecord(name="kor", url="http://kor.invalid", token="rt_x", speaks_for="GBR", created=now_micros())
    )
    peer = up.store.peer("kor")
    assert peer is not None
    outcome, _, _ = up.federation.receive(peer, back)
    assert outcome.received == 0 and outcome.looped >= 1


def pump(links: list[tuple[Node, Node, Party, str]], rounds: int = 20) -> int:
    """Follow every link (upstream, downstream, token, peer name) until a whole round receives nothing; the
    number of rounds it took. Fails if the federation does not quiesce."""
    for n in range(rounds):
        received = 0
        for up, down, party, name in links:
            before = down.store.peer(name)
            assert before is not None
            after = follow(up, down, party, name)
            received += after.received - before.received
        if not received:
            return n
    raise AssertionError(f"still receiving after {rounds} rounds: the federation does not quiesce")


@pytest.mark.parametrize("shape", ["ring", "mesh"])
def test_ring_and_mesh_converge_and_quiesce(tmp_path: Path, shape: str) -> None:
    nations = ("GBR", "KOR", "USA")
    nodes = {}
    for nation in nations:
        (tmp_path / nation).mkdir(mode=0o700)
        nodes[nation] = make_node(tmp_path / nation, nation, node_id=str(uuid.uuid4()))
    try:
        col = nodes["GBR"].add_collection("intel").id
        for node in nodes.values():  # the same collection everywhere before anyone publishes
            if node.store.collection(col) is None:
                node.store.add_collection(nodes["GBR"].collection(col))
        everyone = mark("SECRET", *nations)
        published = {}
        for nation, node in nodes.items():
            objs = [report(f"{nation} {i}", everyone["id"]) for i in range(5)]
            node.publish(writer(node, nation), col, [everyone, *objs])
            published[nation] = objs
        if shape == "ring":  # GBR -> KOR -> USA -> GBR
            pairs = [("GBR", "KOR"), ("KOR", "USA"), ("USA", "GBR")]
        else:
            pairs = [(a, b) for a in nations for b in nations if a != b]
        links = []
        for up, down in pairs:
            token = node_party(nodes[up], "BEL", relay_for=",".join(nations))
            name = f"from-{up.lower()}"
            nodes[down].store.add_peer(
                PeerRecord(name=name, url="http://x.invalid", token="rt_x", speaks_for=",".join(nations), created=1)
            )
            links.append((nodes[up], nodes[down], token, name))
        pump(links)
        every_report = {o["id"] for objs in published.values() for o in objs}
        for nation, node in nodes.items():
            rows = node.store.read(
                node._query(Party(token_id=0, nation="GBR", clearance=4), col, Filters(limit=1000), versions=("all",))
            )
            reports = [(r.stix_id, r.version_text, r.originator) for r in rows if r.type == "report"]
            assert len(reports) == len(set(reports)) == len(every_report), nation  # each (id, version) once
            assert {r[0] for r in reports} == every_report
            # Each report kept its originator wherever it travelled.
            origin = {o["id"]: n for n, objs in published.items() for o in objs}
            assert all(origin[i] == o for i, _, o in reports)
    finally:
        for node in nodes.values():
            node.close()


def test_revocation_travels_and_only_the_owner_revokes(pair: Any) -> None:
    up, down = pair
    col = up.add_collection("intel").id
    to_kor = mark("SECRET", "KOR", "GBR")
    first = report("v1", to_kor["id"])
    second = {**first, "modified": T1, "name": "v2"}
    up.publish(writer(up, "GBR"), col, [to_kor, first, second])
    party = node_party(up, "KOR")
    follow(up, down, party)
    assert {k[1] for k in everything(down, col, "KOR") if k[0] == first["id"]} == {T0, T1}
    revoked = {**second, "modified": "2024-10-20T09:00:00.000Z", "revoked": True}
    up.publish(writer(up, "GBR"), col, [revoked])
    follow(up, down, party)
    left = {k[1]: v for k, v in everything(down, col, "KOR").items() if k[0] == first["id"]}
    assert list(left) == ["2024-10-20T09:00:00.000Z"] and left["2024-10-20T09:00:00.000Z"]["revoked"] is True
    # KOR's own writers on KOR's node cannot add to GBR's object (ownership holds across nodes).
    status = down.publish(writer(down, "KOR"), col, [{**first, "modified": "2024-10-21T09:00:00.000Z"}])
    assert status["failure_count"] == 1 and "belongs to GBR" in status["failures"][0]["message"]


def test_a_nation_joining_a_community_gets_the_backfill_over_federation(pair: Any) -> None:
    """What a nation may read grows (it joins a community): its node receives what is already there, as a TAXII
    read would show it, not only what is written from then on."""
    from datetime import date

    from relto.admin import join_community

    up, down = pair
    col = up.add_collection("intel").id
    ip4 = mark("SECRET", "IP4")
    for_ip4 = report("already there", ip4["id"])
    up.publish(writer(up, "GBR"), col, [ip4, for_ip4])
    party = node_party(up, "CAN")  # CAN's node: not in IP4
    follow(up, down, party, speaks_for="GBR")
    assert not [k for k in everything(down, col, "GBR") if k[0] == for_ip4["id"]]
    join_community(up, "IP4", "CAN", date(2020, 1, 1))
    later = report("written after", ip4["id"])
    up.publish(writer(up, "GBR"), col, [later])
    peer = follow(up, down, party, speaks_for="GBR")
    got = {k[0] for k in everything(down, col, "GBR")}
    assert {for_ip4["id"], later["id"]} <= got
    # Each once: the backfill does not come round again.
    again = follow(up, down, party, speaks_for="GBR")
    assert again.received == peer.received
    # A cursor that is not a federation cursor is refused, not a 500.
    with pytest.raises(InvalidRequest):
        up.federation.feed(party, up.cursors.seal(5, "federation"), 10)


def test_followers_of_a_restored_node_miss_nothing_written_after_the_restore(tmp_path: Path) -> None:
    """A node restored from an older backup has a clock behind its followers' cursors: its feed starts them over
    (a new epoch), so what is written after the restore reaches them, and what they had is a no-op."""
    from relto.store.backup import Target, backup, restore

    for name in ("up", "down"):
        (tmp_path / name).mkdir(mode=0o700)
    up = make_node(tmp_path / "up", "GBR", node_id=str(uuid.uuid4()))
    down = make_node(tmp_path / "down", "KOR", node_id=str(uuid.uuid4()))
    to_kor = mark("SECRET", "KOR", "GBR")
    col = up.add_collection("intel").id
    up.publish(writer(up, "GBR"), col, [to_kor, report("before the backup", to_kor["id"])])
    token = issue_token(up.store, nation="KOR", clearance="SECRET", organisation="", name="p", kind="peer")
    follow(up, down, up.authenticate(token))
    backup(Target(sqlite=tmp_path / "up" / "relto.db"), tmp_path / "up.backup")
    up.publish(writer(up, "GBR"), col, [report(f"lost {i}", to_kor["id"]) for i in range(5)])
    follow(up, down, up.authenticate(token))  # KOR's cursor is now past what the backup holds
    up.close()
    restore(tmp_path / "up.backup", Target(sqlite=tmp_path / "up" / "relto.db"), force=True)
    up = make_node_again(tmp_path / "up")
    try:
        after = report("after the restore", to_kor["id"])
        up.publish(writer(up, "GBR"), col, [after])
        follow(up, down, up.authenticate(token))
        assert after["id"] in {k[0] for k in everything(down, col, "KOR")}
    finally:
        up.close()
        down.close()


def make_node_again(folder: Path) -> Node:
    from relto.store import open_store

    return Node(open_store(data=folder))
