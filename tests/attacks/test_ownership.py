"""Classes 2 and 3: an object belongs to the nation that published it first; an observable's id is its value."""

from __future__ import annotations

import random

import pytest

from tests.attacks.conftest import (
    COMMUNITIES,
    T1,
    T2,
    Node,
    indicator,
    ipv4,
    marking,
    observable_id,
    without,
)

pytestmark = pytest.mark.slow

T3 = "2024-10-21T09:00:00.000Z"


def test_a_writer_cannot_version_revoke_or_delete_another_nations_object(node: Node) -> None:
    """Class 2 (ownership): KOR posts a newer version of GBR's indicator X (REL TO GBR, KOR) marked UNCLASSIFIED REL TO
    every community and UKR, then a revocation of X, then DELETEs X; X must stay GBR's, as GBR published it."""
    shared = marking("UNCLASSIFIED", "GBR", "KOR")
    everyone = marking("UNCLASSIFIED", *COMMUNITIES, "UKR")
    x = indicator([shared], name="GBR's indicator")
    cid = node.new_collection()
    published = node.post("GBR", cid, [shared, x])
    assert published.stored(x["id"]), published.raw

    takeover = {**x, "modified": T1, "name": "KOR's version", "object_marking_refs": [everyone["id"]]}
    took = node.post("KOR", cid, [everyone, takeover])
    revoked = node.post("KOR", cid, [{**x, "modified": T2, "revoked": True}])
    deleted = node.delete("KOR", cid, x["id"])

    assert node.read_id("UKR", cid, x["id"], versions="all") == [], "UKR received KOR's version of GBR's object"
    assert node.get_object("UKR", cid, x["id"]) == []
    for who in ("GBR", "KOR"):
        assert node.read_id(who, cid, x["id"], versions="all") == [x], f"{who} does not read GBR's X alone"
        assert node.get_object(who, cid, x["id"]) == [x]
    assert deleted.status_code == 403, deleted.text
    assert "belongs to gbr" in took.failure(x["id"])["message"].lower()
    assert revoked.failure(x["id"])  # KOR may not revoke it either

    # The owner still may revoke and delete its object.
    own = node.post("GBR", cid, [{**x, "modified": T3, "revoked": True}])
    assert own.stored(x["id"]), own.raw
    assert node.delete("GBR", cid, x["id"]).status_code == 200
    assert node.read_id("GBR", cid, x["id"], versions="all") == []


def _fresh_address() -> str:
    return f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"


def test_an_observable_hidden_from_a_writer_answers_and_reads_like_a_fresh_one(node: Node) -> None:
    """Class 3a (observables): GBR holds ipv4-addr 203.0.113.5 REL TO GBR only; KOR posts the same observable REL TO
    KOR, UKR. The answer must not tell KOR that GBR holds it, and KOR's copy must reach exactly whom KOR named."""
    gbr_only = marking("UNCLASSIFIED", "GBR")
    kor_ukr = marking("UNCLASSIFIED", "KOR", "UKR")
    gbrs = ipv4("203.0.113.5", [gbr_only])
    assert gbrs["id"] == "ipv4-addr--826fe3cb-56b0-5620-9d30-4c17ed7b24e3"  # STIX's UUIDv5 of the value
    cid = node.new_collection()
    held = node.post("GBR", cid, [gbr_only, gbrs])
    assert held.stored(gbrs["id"]), held.raw

    kors = ipv4("203.0.113.5", [kor_ukr])
    fresh = ipv4(_fresh_address(), [kor_ukr])
    answer = node.post("KOR", cid, [kor_ukr, kors])
    control = node.post("KOR", cid, [fresh])

    key = gbrs["id"]
    assert node.read_id("KOR", cid, key) == [kors], "KOR does not read back its own observable"
    assert node.get_object("KOR", cid, key) == [kors]
    assert node.read_id("UKR", cid, key) == [kors], "UKR does not receive KOR's copy"
    assert node.get_object("UKR", cid, key) == [kors]
    assert node.read_id("FRA", cid, key) == [] and node.get_object("FRA", cid, key) == []
    assert node.read_id("GBR", cid, key) == [gbrs] and node.get_object("GBR", cid, key) == [gbrs]
    # An observable's version is its date_added (docs/interop.md), different for every post: compare the rest.
    mine, theirs = answer.success(key), control.success(fresh["id"])
    assert mine is not None and theirs is not None
    assert without({**mine, "version": ""}, key) == without({**theirs, "version": ""}, fresh["id"]), (
        "KOR's answer differs from the one for a value nobody holds"
    )


def test_an_observable_id_must_match_its_value(node: Node) -> None:
    """Class 3b (observables): KOR squats the id that ipv4-addr 203.0.113.9 will have by posting 198.51.100.7 under
    it; refused, nothing stored, and GBR's real 203.0.113.9 later reaches whom GBR named."""
    kor_ukr = marking("UNCLASSIFIED", "KOR", "UKR")
    gbr_ukr = marking("UNCLASSIFIED", "GBR", "UKR")
    squatted_id = observable_id("ipv4-addr", {"value": "203.0.113.9"})
    squat = ipv4("198.51.100.7", [kor_ukr], id_=squatted_id)
    cid = node.new_collection()
    answer = node.post("KOR", cid, [kor_ukr, squat])
    real = ipv4("203.0.113.9", [gbr_ukr])
    gbr = node.post("GBR", cid, [gbr_ukr, real])

    for who in ("KOR", "UKR"):
        assert squat not in node.read_id(who, cid, squatted_id), f"{who} reads the squatted observable"
    assert node.read_id("UKR", cid, squatted_id) == [real]
    assert node.get_object("GBR", cid, squatted_id) == [real]
    assert gbr.stored(squatted_id), gbr.raw
    assert answer.failure(squatted_id)  # refused
