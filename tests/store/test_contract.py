"""The storage contract: every Store method, on every back-end (the `database` fixture is parametrized)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import pytest

from relto.domain.communities import Community, Membership, default_communities
from relto.domain.errors import ConfigurationError
from relto.domain.levels import DEFAULT_LEVELS
from relto.domain.markings import MarkingSet
from relto.store import Store
from relto.store.base import CollectionRecord, NewVersion, NodeInfo, StatusRow, TokenRecord, VersionQuery
from tests.conftest import Database

C = "11111111-1111-4111-8111-111111111111"


@pytest.fixture
def store(database: Database) -> Iterator[Store]:
    s = database.open()
    s.initialise(NodeInfo(node_id="n", nation="GBR", levels=DEFAULT_LEVELS, title="t"), default_communities())
    s.add_collection(CollectionRecord(id=C, title="c", description="", created=1))
    yield s
    s.close()


def version(
    stix_id: str, v: int, marking_set: int = 1, type_: str = "indicator", originator: str = "GBR"
) -> NewVersion:
    body = f'{{"id":"{stix_id}","v":{v}}}'.encode()
    return NewVersion(stix_id, type_, "2.1", v, f"v{v}", marking_set, body, originator=originator)


def ids(rows: list) -> list[tuple[str, int]]:  # type: ignore[type-arg]
    return [(r.stix_id, r.version) for r in rows]


def test_initialise_once(store: Store) -> None:
    assert store.initialised()
    assert store.node_info().nation == "GBR"
    with pytest.raises(ConfigurationError):
        store.initialise(NodeInfo(node_id="x", nation="USA", levels=DEFAULT_LEVELS, title="x"), [])


def test_tokens(store: Store) -> None:
    rec = TokenRecord(
        id=0,
        key_id="a" * 16,
        secret_hash="h" * 64,
        nation="KOR",
        organisation="o",
        name="n",
        clearance="SECRET",
        admin=False,
        can_write=True,
        created=5,
        revoked=None,
    )
    token_id = store.add_token(rec)
    got = store.token("a" * 16)
    assert got is not None and got.id == token_id and got.nation == "KOR" and got.revoked is None
    assert store.token("b" * 16) is None
    assert store.revoke_token("a" * 16, 9) and not store.revoke_token("a" * 16, 10)
    assert store.token("a" * 16).revoked == 9  # type: ignore[union-attr]
    assert [t.key_id for t in store.tokens()] == ["a" * 16]


def test_communities_and_generation(store: Store) -> None:
    assert {c.name for c in store.communities()} == {"NATO", "EU", "FVEY", "IP4"}
    before = store.policy_generation()
    store.put_community(
        Community("AUKUS", "", (Membership("AUS", date(2021, 9, 15)), Membership("GBR", date(2021, 9, 15))))
    )
    after = store.policy_generation()
    assert after[1] > before[1]
    aukus = {c.name: c for c in store.communities()}["AUKUS"]
    assert aukus.members_on(date(2024, 1, 1)) == {"AUS", "GBR"}


def test_collections_sorted_by_id(store: Store) -> None:
    store.add_collection(
        CollectionRecord(id="00000000-0000-4000-8000-000000000000", title="z", description="d", created=2)
    )
    assert [c.id for c in store.collections()] == ["00000000-0000-4000-8000-000000000000", C]
    assert store.collection(C) is not None and store.collection("nope") is None


def test_marking_sets_are_unique_by_key(store: Store) -> None:
    template = MarkingSet(0, "GBR", 3, (("KOR", "NATO"),), "amber")
    a = store.marking_set_id("k1", template)
    assert store.marking_set_id("k1", template) == a
    b = store.marking_set_id("k2", MarkingSet(0, "USA", 0, None))
    assert b != a
    sets = {s.id: s for s in store.marking_sets()}
    assert sets[a] == MarkingSet(a, "GBR", 3, (("KOR", "NATO"),), "amber")
    assert sets[b].rel_to is None
    assert [s.id for s in store.marking_sets(after_id=a)] == [b]
    assert store.policy_generation()[0] == max(a, b)


def test_append_is_idempotent_and_orders_date_added(store: Store) -> None:
    first = store.append(C, [version("indicator--a", 1), version("indicator--b", 1), version("indicator--a", 1)])
    assert list(first.stored) == [True, True, False]
    again = store.append(C, [version("indicator--a", 1), version("indicator--a", 2)])
    assert list(again.stored) == [False, True]
    rows = store.read(VersionQuery(collection=C, visible=frozenset({1}), versions=("all",)))
    assert ids(rows) == [("indicator--a", 1), ("indicator--b", 1), ("indicator--a", 2)]
    added = [r.date_added for r in rows]
    assert added == sorted(added) and len(set(added)) == 3
    assert [r.seq for r in rows] == sorted(r.seq for r in rows)


def test_status_commits_with_the_versions(store: Store) -> None:
    store.append(
        C, [version("indicator--a", 1)], lambda outcome: StatusRow("s1", 7, 100, repr(list(outcome.stored)).encode())
    )
    assert store.status("s1") == (7, b"[True]")
    assert store.status("s2") is None
    assert store.purge_statuses(older_than=101) == 1 and store.status("s1") is None


def test_last_and_first_are_judged_among_visible_versions(store: Store) -> None:
    store.append(C, [version("indicator--a", 1, 1), version("indicator--a", 2, 2), version("indicator--a", 3, 1)])

    def q(visible: set[int], versions: tuple[str | int, ...]) -> list[tuple[str, int]]:
        return ids(store.read(VersionQuery(collection=C, visible=frozenset(visible), versions=versions)))

    assert q({1, 2}, ("last",)) == [("indicator--a", 3)]
    assert q({2}, ("last",)) == [("indicator--a", 2)]
    assert q({1}, ("first",)) == [("indicator--a", 1)]
    assert q({2}, ("first",)) == [("indicator--a", 2)]
    assert q({1}, (2,)) == []
    assert q({1, 2}, (2, "first")) == [("indicator--a", 1), ("indicator--a", 2)]
    assert q(set(), ("all",)) == []


def test_an_older_version_posted_later_does_not_hide_the_newer(store: Store) -> None:
    store.append(C, [version("indicator--a", 5)])
    store.append(C, [version("indicator--a", 3)])
    rows = store.read(VersionQuery(collection=C, visible=frozenset({1})))
    assert ids(rows) == [("indicator--a", 5)]


def test_filters_and_paging(store: Store) -> None:
    store.append(C, [version(f"indicator--{i}", 1) for i in range(5)] + [version("malware--m", 1, type_="malware")])
    page = store.read(VersionQuery(collection=C, visible=frozenset({1}), limit=2))
    assert len(page) == 2
    rest = store.read(VersionQuery(collection=C, visible=frozenset({1}), after_seq=page[-1].seq))
    assert len(rest) == 4
    assert ids(store.read(VersionQuery(collection=C, visible=frozenset({1}), types=["malware"]))) == [("malware--m", 1)]
    assert (
        len(store.read(VersionQuery(collection=C, visible=frozenset({1}), ids=["indicator--1", "indicator--3"]))) == 2
    )
    after = store.read(VersionQuery(collection=C, visible=frozenset({1}), added_after=page[-1].date_added))
    assert ids(after) == ids(rest)
    assert store.read(VersionQuery(collection=C, visible=frozenset({1}), spec_versions=["2.0"])) == []


def test_rows_of_unknown_marking_sets_come_back_when_asked(store: Store) -> None:
    store.append(C, [version("indicator--a", 1, 1), version("indicator--b", 1, 9)])
    plain = store.read(VersionQuery(collection=C, visible=frozenset({1})))
    assert ids(plain) == [("indicator--a", 1)]
    flagged = store.read(VersionQuery(collection=C, visible=frozenset({1}), known_max_set=5))
    assert [r.marking_set for r in flagged] == [1, 9]


def test_delete_restores_the_previous_version(store: Store) -> None:
    store.append(C, [version("indicator--a", 1), version("indicator--a", 2)])
    n = store.delete(VersionQuery(collection=C, visible=frozenset({1}), ids=["indicator--a"], versions=("last",)))
    assert n == 1
    assert ids(store.read(VersionQuery(collection=C, visible=frozenset({1})))) == [("indicator--a", 1)]
    assert (
        store.delete(VersionQuery(collection=C, visible=frozenset({1}), ids=["indicator--a"], versions=("all",))) == 1
    )
    assert store.read(VersionQuery(collection=C, visible=frozenset({1}), versions=("all",))) == []


def test_marking_definitions_are_kept_per_publisher(store: Store) -> None:
    md = version("marking-definition--1", 1, type_="marking-definition")
    theirs = version("marking-definition--1", 1, marking_set=2, type_="marking-definition", originator="KOR")
    store.append(C, [md])
    store.append(C, [theirs])
    found = {(d.id, d.originator): (d.marking_set, d.body) for d in store.definitions(["marking-definition--1"])}
    assert found == {("marking-definition--1", "GBR"): (1, md.body), ("marking-definition--1", "KOR"): (2, theirs.body)}
    assert store.definitions(["marking-definition--2"]) == []


def test_each_nation_has_its_own_copy(store: Store) -> None:
    """Versions are ordered within a copy: KOR's newer version does not supersede GBR's."""
    store.append(C, [version("indicator--a", 1)])
    store.append(C, [version("indicator--a", 2, marking_set=2, originator="KOR")])
    rows = store.read(VersionQuery(collection=C, visible=frozenset({1, 2})))
    assert sorted((r.originator, r.version, r.shared) for r in rows) == [("GBR", 1, True), ("KOR", 2, True)]
    assert [r.copy_rank < s.copy_rank for r, s in [sorted(rows, key=lambda r: r.originator)]] == [True]
    only_kor = store.read(VersionQuery(collection=C, visible=frozenset({1, 2}), originator="KOR", versions=("all",)))
    assert [(r.originator, r.version) for r in only_kor] == [("KOR", 2)]


def test_the_gate_sees_other_nations_holdings_and_may_refuse(store: Store) -> None:
    store.append(C, [version("indicator--a", 1)])
    asked = []

    def gate(v: NewVersion, holdings: list) -> str | None:  # type: ignore[type-arg]
        asked.append((v.originator, sorted(h.originator for h in holdings)))
        return "no"

    out = store.append(C, [version("indicator--a", 2, originator="KOR"), version("indicator--b", 1)], gate=gate)
    assert out.stored == [False, True] and out.refused == {0: "no"}
    assert asked == [("KOR", ["GBR"])]
    store.append(C, [version("indicator--a", 1, originator="KOR")], gate=lambda v, hs: None)
    store.append(C, [version("indicator--a", 3, originator="KOR")], gate=gate)
    assert asked[-1] == ("KOR", ["GBR", "KOR"])  # the publisher's own versions are shown too


def test_a_repost_under_other_markings_is_refused(store: Store) -> None:
    store.append(C, [version("indicator--a", 1)])
    out = store.append(C, [version("indicator--a", 1, marking_set=2)])
    assert out.stored == [False] and "new version" in out.refused[0]
    assert store.append(C, [version("indicator--a", 1)]).refused == {}


def test_secrets_are_made_once_and_kept(store: Store) -> None:
    first = store.secret("x", lambda: b"\x01" * 32)
    assert store.secret("x", lambda: b"\x02" * 32) == first == b"\x01" * 32


def test_marking_sets_per_originator_are_limited(store: Store) -> None:
    assert store.marking_set_id("a", MarkingSet(0, "KOR", 0, None), limit=1) is not None
    assert store.marking_set_id("b", MarkingSet(0, "KOR", 0, None), limit=1) is None
    assert store.marking_set_id("a", MarkingSet(0, "KOR", 0, None), limit=1) is not None  # existing: found
    assert store.marking_set_id("c", MarkingSet(0, "GBR", 0, None), limit=1) is not None
