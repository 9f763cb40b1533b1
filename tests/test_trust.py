"""Trust rules that are easiest to see in process (the attack suite, tests/attacks/, tries them through the
real server): bounded caches, sealed cursors, copies."""

from __future__ import annotations

import secrets

import pytest

import relto.node.authenticator
from relto.domain.errors import InvalidRequest, Unauthenticated
from relto.taxii.cursors import Cursors, new_key
from tests.conftest import Harness


def test_unknown_token_ids_do_not_grow_memory(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 9, class 9: every unknown key id used to stay in the token cache forever."""
    monkeypatch.setattr(relto.node.authenticator, "_TOKEN_CACHE", 50)
    for _ in range(300):
        with pytest.raises(Unauthenticated):
            harness.node.authenticate(f"rt_{secrets.token_hex(8)}_{secrets.token_urlsafe(32)}")
    assert len(harness.node.authenticator) <= 50
    good = harness.token("GBR")
    assert harness.node.authenticate(good).nation == "GBR"


def test_cursors_are_sealed_and_bound_to_their_collection() -> None:
    cursors = Cursors(new_key())
    sealed = cursors.seal(12345, "coll-a")
    assert "12345" not in sealed and cursors.open(sealed, "coll-a") == 12345
    assert cursors.seal(12345, "coll-a") != sealed  # a fresh nonce each time: equal cursors look unrelated
    with pytest.raises(InvalidRequest, match="cursor"):
        cursors.open(sealed, "coll-b")
    tampered = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    with pytest.raises(InvalidRequest):
        cursors.open(tampered, "coll-a")
    with pytest.raises(InvalidRequest):
        Cursors(new_key()).open(sealed, "coll-a")


def test_the_cursor_key_is_kept_by_the_node(harness: Harness) -> None:
    """Cursors survive a restart: the key lives in the database, made once."""
    first = harness.node.store.secret("cursor", new_key)
    assert harness.node.store.secret("cursor", new_key) == first
    assert harness.node.cursors.open(Cursors(first).seal(7, "c"), "c") == 7


def test_a_nation_keeps_versioning_its_own_copy_once_another_becomes_visible(harness: Harness) -> None:
    """GBR's copy was made while USA's was hidden from GBR, and USA may see GBR's: USA, which has a copy of its
    own, may still add versions to it (found by the policy property test)."""
    from relto.domain.markings import releasability_marking

    coll = harness.collection()
    both = releasability_marking("UNCLASSIFIED", ["GBR", "USA"], harness.node.ladder)
    stamp = "2024-10-18T09:{:02d}:00.000Z"

    def ind(minute: int, marks: list[str]) -> dict[str, object]:
        return {
            "type": "indicator",
            "spec_version": "2.1",
            "id": "indicator--308a4870-d91f-4200-8b45-2b563393a3c5",
            "created": stamp.format(0),
            "modified": stamp.format(minute),
            "pattern": "[x:y = 'z']",
            "pattern_type": "stix",
            "valid_from": stamp.format(0),
            **({"object_marking_refs": marks} if marks else {}),
        }

    assert harness.post(harness.token("USA"), coll, [ind(0, [])])["success_count"] == 1  # USA only
    assert harness.post(harness.token("GBR"), coll, [both, ind(0, [both["id"]])])["success_count"] == 2
    status = harness.post(harness.token("USA"), coll, [ind(5, [])])
    assert status["success_count"] == 1, status
