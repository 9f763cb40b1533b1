"""Read-ahead (relto.node.readahead): a page computed ahead is served only to its reader, and only while nothing
has changed; otherwise the read is done afresh. Each test compares what was served with what a fresh read
(`Node._page`, no read-ahead) answers at the same moment."""

from __future__ import annotations

from datetime import date
from typing import Any

from relto.domain.communities import Community, Membership
from relto.domain.levels import Ladder
from relto.domain.markings import releasability_marking
from relto.domain.parties import Party
from relto.node import Node, Page
from relto.taxii.filters import Filters

LADDER = Ladder()
GBR = Party(token_id=1, nation="GBR", clearance=LADDER.rank("SECRET"), can_write=True)
KOR = Party(token_id=3, nation="KOR", clearance=LADDER.rank("SECRET"), can_write=False)
USA = Party(token_id=4, nation="USA", clearance=LADDER.rank("SECRET"), can_write=False)
WIDE = releasability_marking("UNCLASSIFIED", ["GBR", "KOR", "USA"], LADDER)
CIRCLE = releasability_marking("UNCLASSIFIED", ["GBR", "CIRCLE"], LADDER)
T0 = "2024-10-18T09:00:00.000Z"
T1 = "2024-10-19T09:00:00.000Z"


def tool(n: int, marking: dict[str, Any], modified: str = T0) -> dict[str, Any]:
    return {
        "type": "tool",
        "spec_version": "2.1",
        "id": f"tool--00000000-0000-4000-8000-{n:012d}",
        "created": T0,
        "modified": modified,
        "name": f"t{n}",
        "object_marking_refs": [marking["id"]],
    }


def ids(page: Page) -> list[str]:
    return [r.stix_id for r in page.rows]


def fresh(node: Node, party: Party, coll: str, cursor: str | None) -> Page:
    return node._page(party, coll, Filters(limit=10, next=cursor))


def first_page(node: Node, party: Party, coll: str) -> Page:
    page = node.read(party, coll, Filters(limit=10))
    assert page.more and page.next is not None
    return page


def published(node: Node, *objects: dict[str, Any]) -> str:
    coll = node.add_collection("c").id
    status = node.publish(GBR, coll, list(objects))
    assert status["failure_count"] == 0, status["failures"]
    return coll


def test_a_reader_paging_through_is_served_pages_computed_ahead(node: Node) -> None:
    coll = published(node, WIDE, *[tool(n, WIDE) for n in range(35)])
    page, served = first_page(node, KOR, coll), []
    while page.more:
        expected = fresh(node, KOR, coll, page.next)
        page = node.read(KOR, coll, Filters(limit=10, next=page.next))
        assert ids(page) == ids(expected) and page.bodies == expected.bodies and page.more == expected.more
        if page.more:  # cursors are sealed with a fresh nonce each time: compare where they point
            assert node.cursors.open(page.next, coll) == node.cursors.open(expected.next, coll)
        served += ids(page)
    assert len(served) == 26 and node.read_ahead.hits == 3 and node.read_ahead.misses == 0


def test_a_new_version_published_between_pages_is_not_missed(node: Node) -> None:
    coll = published(node, WIDE, *[tool(n, WIDE) for n in range(20)])
    page = first_page(node, KOR, coll)
    later = ids(fresh(node, KOR, coll, page.next))
    node.publish(GBR, coll, [tool(int(later[0][-12:]), WIDE, modified=T1)])  # its newer version
    served = node.read(KOR, coll, Filters(limit=10, next=page.next))
    assert later[0] not in ids(served)  # the old version is no longer the newest: a fresh read skips it
    assert ids(served) == ids(fresh(node, KOR, coll, page.next)) and node.read_ahead.misses == 1


def test_an_object_deleted_between_pages_is_not_served(node: Node) -> None:
    coll = published(node, WIDE, *[tool(n, WIDE) for n in range(20)])
    page = first_page(node, KOR, coll)
    doomed = ids(fresh(node, KOR, coll, page.next))[3]
    assert node.delete_object(GBR, coll, doomed, Filters(limit=10, versions=("all",))) == 1
    served = node.read(KOR, coll, Filters(limit=10, next=page.next))
    assert doomed not in ids(served) and ids(served) == ids(fresh(node, KOR, coll, page.next))
    assert not served.more and node.read_ahead.hits == 0


def test_a_nation_leaving_a_community_between_pages_is_not_served_its_pages(node: Node) -> None:
    today = date.today()
    node.put_community(Community("CIRCLE", members=(Membership("KOR", today),)))
    coll = published(node, CIRCLE, *[tool(n, CIRCLE) for n in range(20)])
    page = first_page(node, KOR, coll)
    assert len(fresh(node, KOR, coll, page.next).rows) == 10
    node.put_community(Community("CIRCLE", members=()))  # KOR is no longer a member
    served = node.read(KOR, coll, Filters(limit=10, next=page.next))
    assert served.rows == [] and node.read_ahead.hits == 0


def test_another_party_with_the_same_cursor_gets_its_own_read(node: Node) -> None:
    gbr_only = releasability_marking("UNCLASSIFIED", ["GBR", "KOR"], LADDER)
    coll = published(node, WIDE, gbr_only, *[tool(n, WIDE if n % 2 else gbr_only) for n in range(40)])
    page = first_page(node, KOR, coll)
    # USA replays KOR's cursor (cursors are sealed, not secret): it must get USA's page, not KOR's.
    served = node.read(USA, coll, Filters(limit=10, next=page.next))
    assert ids(served) == ids(fresh(node, USA, coll, page.next))
    assert all(int(i[-12:]) % 2 for i in ids(served)) and node.read_ahead.hits == 0
    # KOR's own next page is still served from what was computed ahead for it.
    assert ids(node.read(KOR, coll, Filters(limit=10, next=page.next))) == ids(fresh(node, KOR, coll, page.next))
    assert node.read_ahead.hits == 1


def test_pages_are_recorded_when_served_not_when_computed(node: Node) -> None:
    coll = published(node, WIDE, *[tool(n, WIDE) for n in range(20)])
    node.decisions.flush()
    before = node.decisions.pending
    page = first_page(node, KOR, coll)
    node.read_ahead.take(KOR, coll, Filters(limit=10, next=page.next))  # wait until the next page is computed
    assert node.decisions.pending == before + 1  # the first page only


def test_off_means_off(node: Node) -> None:
    node.read_ahead.enabled = False
    coll = published(node, WIDE, *[tool(n, WIDE) for n in range(20)])
    page = first_page(node, KOR, coll)
    node.read(KOR, coll, Filters(limit=10, next=page.next))
    assert node.read_ahead.hits == node.read_ahead.misses == 0 and node.read_ahead._worker is None
