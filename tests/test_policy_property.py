"""Property test: what each party reads through TAXII equals a deliberately simple reference policy.

Hypothesis draws nations, communities with dated memberships, and object versions published by different
nations with random classification / REL TO / TLP markings. For every (nation, clearance) we read through
the TAXII objects, object, versions and manifest endpoints and compare with `reference_visible`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from relto.domain import policy
from relto.domain.communities import Community, Membership
from relto.domain.levels import DEFAULT_LEVELS
from relto.domain.markings import TLP_IDS, releasability_marking, tlp_definition
from tests.conftest import Harness

NATIONS = ("GBR", "USA", "KOR", "UKR", "FRA")
COMMUNITIES = ("ALPHA", "BRAVO")


@dataclass(frozen=True)
class Marking:
    level: int
    rel_to: tuple[str, ...]


@dataclass(frozen=True)
class Version:
    object: int
    publisher: str
    markings: tuple[Marking, ...]
    tlp: str | None
    minute: int


@dataclass(frozen=True)
class Scenario:
    memberships: dict[str, tuple[tuple[str, int, int | None], ...]]  # nation, since offset, until offset (days)
    versions: tuple[Version, ...]


def today() -> date:
    return datetime.now(UTC).date()


def reference_visible(nation: str, clearance: int, v: Version, s: Scenario) -> bool:
    """The policy as a practitioner states it, written without looking at the engine."""
    if any(m.level > clearance for m in v.markings):
        return False
    if nation == v.publisher:
        return True
    if not v.markings:
        return False
    day = today()

    def member(community: str) -> bool:
        spells = {(n, since): (n, since, until) for n, since, until in s.memberships.get(community, ())}
        for n, since, until in spells.values():
            if until is not None and until <= since:
                continue
            start = day + timedelta(days=since)
            end = None if until is None else day + timedelta(days=until)
            if n == nation and start <= day and (end is None or day < end):
                return True
        return False

    return all(nation in m.rel_to or any(member(c) for c in m.rel_to if c in COMMUNITIES) for m in v.markings)


spells = st.tuples(st.sampled_from(NATIONS), st.integers(-5, 3), st.one_of(st.none(), st.integers(-3, 5)))
markings = st.builds(
    Marking,
    st.integers(0, 3),
    st.lists(st.sampled_from(NATIONS + COMMUNITIES), min_size=1, max_size=3, unique=True).map(tuple),
)
versions = st.builds(
    Version,
    st.integers(0, 2),
    st.sampled_from(NATIONS),
    st.lists(markings, max_size=2).map(tuple),
    st.one_of(st.none(), st.sampled_from(sorted(TLP_IDS))),
    st.integers(0, 5),
)
scenarios = st.builds(
    Scenario,
    st.fixed_dictionaries({c: st.lists(spells, max_size=4).map(tuple) for c in COMMUNITIES}),
    st.lists(versions, min_size=1, max_size=10).map(tuple),
)


def publish(h: Harness, s: Scenario) -> tuple[str, dict[int, str]]:
    for name, spell_list in s.memberships.items():
        day = today()
        members = tuple(
            {
                (n, a): Membership(n, day + timedelta(days=a), None if b is None else day + timedelta(days=b))
                for n, a, b in spell_list
                if b is None or b > a
            }.values()
        )
        h.node.put_community(Community(name, "", members))
    coll = h.collection()
    ids = {i: f"indicator--{uuid.uuid4()}" for i in range(3)}
    for v in s.versions:
        defs = [releasability_marking(DEFAULT_LEVELS[m.level], m.rel_to, h.node.ladder) for m in v.markings]
        if v.tlp:
            defs.append(tlp_definition(v.tlp))
        stamp = f"2024-10-18T09:{v.minute:02d}:00.000Z"
        obj = {
            "type": "indicator",
            "spec_version": "2.1",
            "id": ids[v.object],
            "created": "2024-10-18T09:00:00.000Z",
            "modified": stamp,
            "pattern": "[ipv4-addr:value = '203.0.113.1']",
            "pattern_type": "stix",
            "valid_from": "2024-10-18T09:00:00Z",
            "name": f"{v.publisher} {v.minute}",
        }
        if defs:
            obj["object_marking_refs"] = [d["id"] for d in defs]
        status = h.post(h.token(v.publisher), coll, [*defs, obj])
        refused = [f for f in status["failures"] if f["id"] == ids[v.object]]
        assert (v in stored_versions(s)[1].values()) == (v not in refusals(s)), status
        assert bool(refused) == (v in refusals(s)), status
        assert len(status["failures"]) == len(refused), status
    return coll, ids


def same_markings(a: Version, b: Version) -> bool:
    return set(a.markings) == set(b.markings) and a.tlp == b.tlp


def copies_of(s: Scenario) -> tuple[dict[tuple[int, str], dict[int, Version]], list[tuple[int, str]]]:
    """docs/security.md, "Copies": each (object, publishing nation) is a copy. A version joins its publisher's copy
    unless that copy already holds the version (the same markings: a no-op; other markings: refused), or the
    publisher has no copy and may see (at SECRET, its tokens' clearance) a version of another nation's copy
    (refused: the object belongs to that nation). Returns the copies and their order of creation (the rank)."""
    copies: dict[tuple[int, str], dict[int, Version]] = {}
    order: list[tuple[int, str]] = []
    for v in s.versions:
        key = (v.object, v.publisher)
        if key in copies:
            copies[key].setdefault(v.minute, v)
            continue
        others = [w for (o, n), vs in copies.items() if o == v.object and n != v.publisher for w in vs.values()]
        if any(reference_visible(v.publisher, 3, w, s) for w in others):
            continue
        copies[key] = {v.minute: v}
        order.append(key)
    return copies, order


def refusals(s: Scenario) -> list[Version]:
    """The posts the node answers with a failure entry."""
    copies, _ = copies_of(s)
    out = []
    for v in s.versions:
        kept = copies.get((v.object, v.publisher), {}).get(v.minute)
        if kept is None or (kept is not v and not same_markings(kept, v)):
            out.append(v)
    return out


def stored_versions(s: Scenario) -> tuple[list[tuple[int, str]], dict[tuple[int, str, int], Version]]:
    """The copies in rank order, and (object, nation, minute) -> the version the node keeps."""
    copies, order = copies_of(s)
    return order, {(o, n, m): v for (o, n), vs in copies.items() for m, v in vs.items()}


def seen_by(nation: str, clearance: int, s: Scenario) -> set[tuple[int, int]]:
    """(object, minute) of the versions a party receives: of each object, one copy (its own nation's if it may see
    a version of it, else the first created of those it may see), and of that copy the versions it may see."""
    order, kept = stored_versions(s)
    visible = {k: v for k, v in kept.items() if reference_visible(nation, clearance, v, s)}
    out: set[tuple[int, int]] = set()
    for obj in {o for o, _, _ in visible}:
        nations = [n for o, n in order if o == obj and any(k[:2] == (o, n) for k in visible)]
        chosen = nation if nation in nations else nations[0]
        out |= {(o, m) for o, n, m in visible if o == obj and n == chosen}
    return out


def read_all(h: Harness, token: str, path: str, key: str, **params: Any) -> list[Any]:
    out: list[Any] = []
    nxt = None
    while True:
        extra = {"next": nxt} if nxt else {}
        r = h.get(token, path, limit=3, **params, **extra)
        assert r.status_code == 200, r.text
        body = r.json()
        out.extend(body.get(key, []))
        if not body["more"]:
            return out
        nxt = body["next"]


def check(h: Harness, s: Scenario) -> None:
    coll, ids = publish(h, s)
    base = f"/api/collections/{coll}/"
    for nation in NATIONS:
        for clearance in range(4):
            token = h.token(nation, DEFAULT_LEVELS[clearance])
            seen = seen_by(nation, clearance, s)
            expect_last = {}
            for obj, minute in sorted(seen):
                expect_last[ids[obj]] = minute
            got = read_all(h, token, base + "objects/", "objects")
            got_last = {o["id"]: int(o["modified"][14:16]) for o in got if o["type"] == "indicator"}
            assert got_last == expect_last, (nation, clearance)
            every = read_all(
                h, token, base + "objects/", "objects", **{"match[version]": "all", "match[type]": "indicator"}
            )
            assert sorted((o["id"], o["modified"]) for o in every) == sorted(
                (ids[o], f"2024-10-18T09:{m:02d}:00.000Z") for o, m in seen
            )
            manifest = read_all(h, token, base + "manifest/", "objects", **{"match[type]": "indicator"})
            assert {m["id"]: m["version"] for m in manifest} == {
                i: f"2024-10-18T09:{m:02d}:00.000Z" for i, m in expect_last.items()
            }
            for obj, stix_id in ids.items():
                mine = sorted(m for (o, m) in seen if o == obj)
                r = h.get(token, base + f"objects/{stix_id}/versions/")
                one = h.get(token, base + f"objects/{stix_id}/")
                if not mine:
                    assert r.status_code == 404 and one.status_code == 404, (nation, clearance, stix_id)
                    continue
                # versions come in date_added order; compare them as a set of timestamps
                assert sorted(r.json()["versions"]) == [f"2024-10-18T09:{m:02d}:00.000Z" for m in mine]
                assert [o["modified"] for o in one.json()["objects"]] == [f"2024-10-18T09:{mine[-1]:02d}:00.000Z"]


def run_property(h: Harness, examples: int, shrink: bool = True) -> None:
    phases = list(Phase) if shrink else [Phase.generate]

    @settings(
        max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None, phases=phases
    )
    @given(scenarios)
    def prop(s: Scenario) -> None:
        check(h, s)

    prop()


def test_reads_equal_the_reference_policy(harness: Harness) -> None:
    run_property(harness, examples=40)


def _ignores_community_end(nation: str, ms: Any, members: Any) -> bool:
    """A one-line policy bug: any nation that ever appears in a listed community counts as a member."""
    if ms.public or nation == ms.originator:
        return True
    if ms.rel_to is None:
        return False
    return all(any(e == nation or e in ("ALPHA", "BRAVO") for e in g) for g in ms.rel_to)


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)  # the bug is in the engine, not the store
def test_the_property_catches_a_policy_bug(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(policy, "releasable_to", _ignores_community_end)
    with pytest.raises(AssertionError):
        run_property(harness, examples=200, shrink=False)
