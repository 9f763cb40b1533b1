"""Classes 2 (deletion across pages) and 9 (bounds), on a node with pages of 5 and 20 marking sets per nation."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.attacks.conftest import Node, indicator, marking, running_node, sid
from tests.conftest import BACKENDS, PostgresDatabases, new_database

pytestmark = pytest.mark.slow

LIMITS = {"RELTO_DEFAULT_PAGE_SIZE": "5", "RELTO_MAX_PAGE_SIZE": "5", "RELTO_MAX_MARKING_SETS_PER_NATION": "20"}
# Thirty nations to pair with the attacker in REL TO lists: thirty distinct markings.
# fmt: off
PARTNERS = (
    "AUS", "AUT", "BEL", "BRA", "CAN", "CHE", "CHL", "CZE", "DEU", "DNK", "ESP", "EST", "FIN", "FRA", "GRC",
    "HUN", "IND", "IRL", "ISL", "ISR", "ITA", "JPN", "LTU", "LVA", "MEX", "NLD", "NOR", "NZL", "POL", "PRT",
)
# fmt: on


@pytest.fixture(scope="module", params=BACKENDS)
def bounded(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, postgres: PostgresDatabases | None
) -> Iterator[Node]:
    folder = tmp_path_factory.mktemp(f"bounded-{request.param}")
    with new_database(request.param, folder, postgres) as db, running_node(db, folder, env=LIMITS, collections=3) as n:
        yield n


def test_deletion_is_authorised_against_every_version_it_removes(bounded: Node) -> None:
    """Class 2 (ownership, deletion): with pages of 5, KOR owns 6 versions of Y and GBR adds a 7th; KOR's DELETE of Y
    must not remove a version GBR was told is stored (the check once looked at the first page alone)."""
    shared = marking("UNCLASSIFIED", "GBR", "KOR")
    y = sid("indicator")
    kors = [indicator([shared], id=y, modified=f"2024-10-18T09:00:0{i}.000Z", name=f"KOR {i}") for i in range(6)]
    gbrs = indicator([shared], id=y, modified="2024-10-18T09:00:07.000Z", name="GBR's version")
    cid = bounded.new_collection()
    owner = bounded.post("KOR", cid, [shared, *kors])
    assert len(owner.raw["successes"]) == 7, owner.raw
    gbr = bounded.post("GBR", cid, [shared, gbrs])
    deleted = bounded.delete("KOR", cid, y)

    left = bounded.read_id("GBR", cid, y, versions="all")
    if gbr.stored(y):
        assert gbrs in left, f"GBR's acknowledged version was removed by KOR's DELETE ({deleted.status_code})"


def test_a_writer_cannot_exhaust_the_marking_sets(bounded: Node) -> None:
    """Class 9 (bounds): UKR publishes 30 objects, each under a relto marking of its own, to grow the node's marking
    sets (and the policy compiled from them) without end; at most 20 are accepted and GBR is not affected."""
    markings = [marking("UNCLASSIFIED", "UKR", partner) for partner in PARTNERS]
    objects = [indicator([m], name=f"UKR {m['name']}") for m in markings]
    cid = bounded.new_collection()
    status = bounded.post("UKR", cid, [*markings, *objects])

    accepted = [o for o in objects if status.stored(o["id"])]
    about_sets = [f for f in status.raw.get("failures", []) if "marking sets" in f["message"].lower()]
    assert len(accepted) <= 20, f"{len(accepted)} objects under distinct markings accepted"
    assert len(about_sets) >= len(objects) - 20, status.raw.get("failures")
    for o in objects:
        status.entry(o["id"])  # each object is answered, stored or refused

    gbr_m = marking("RESTRICTED", "GBR", "KOR", "AUS")
    gbrs = indicator([gbr_m], name="GBR after the flood")
    other = bounded.new_collection()
    assert bounded.post("GBR", other, [gbr_m, gbrs]).stored(gbrs["id"])
    assert bounded.get_object("GBR", other, gbrs["id"]) == [gbrs]
    assert bounded.get_object("KOR", other, gbrs["id"]) == [gbrs]
    assert bounded.read_id("UKR", other, gbrs["id"]) == []
