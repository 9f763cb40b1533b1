"""Lists of versions come in version order, and paging through them neither skips nor repeats.

Versions can arrive out of order (a backfill, a second source). `versions/`, one object's `match[version]=all`
(stix2's `all_versions`) and the manifest list each object's versions oldest first. Between objects the
order stays date_added order (TAXII 2.1 section 3.3), and the cursor stays a sequence, so a page holds exactly
the versions it held before, only listed in version order.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.conftest import Harness

V1, V2, V3, V4 = (f"2024-0{m}-01T00:00:00.000Z" for m in (1, 2, 3, 4))


def indicator(id_: str, modified: str) -> dict[str, Any]:
    return {
        "type": "indicator",
        "spec_version": "2.1",
        "id": id_,
        "created": V1,
        "modified": modified,
        "name": "bad domain",
        "pattern": "[domain-name:value = 'evil.example']",
        "pattern_type": "stix",
        "valid_from": V1,
    }


def ok(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def posted_out_of_order(h: Harness) -> tuple[str, str, str, str]:
    """(token, collection, A, B): A's versions arrive as V3, V1, then B, then V4, V2."""
    token, coll = h.token("GBR"), h.collection()
    a, b = f"indicator--{uuid.uuid4()}", f"indicator--{uuid.uuid4()}"
    for obj in (indicator(a, V3), indicator(a, V1), indicator(b, V1), indicator(a, V4), indicator(a, V2)):
        h.post(token, coll, [obj])  # one POST each: arrival order is this order
    return token, coll, a, b


def test_versions_endpoint_lists_versions_in_version_order(harness: Harness) -> None:
    token, coll, a, _ = posted_out_of_order(harness)
    got = ok(harness.get(token, f"/api/collections/{coll}/objects/{a}/versions/"))
    assert got == {"more": False, "versions": [V1, V2, V3, V4]}


def test_all_versions_of_one_object_come_in_version_order(harness: Harness) -> None:
    token, coll, a, _ = posted_out_of_order(harness)
    base = f"/api/collections/{coll}"
    one = ok(harness.get(token, f"{base}/objects/{a}/", **{"match[version]": "all"}))
    assert [o["modified"] for o in one["objects"]] == [V1, V2, V3, V4]
    # stix2's TAXIICollectionSource.all_versions asks the collection with match[id].
    query = {"match[id]": a, "match[version]": "all"}
    listed = ok(harness.get(token, f"{base}/objects/", **query))
    assert [o["modified"] for o in listed["objects"]] == [V1, V2, V3, V4]
    manifest = ok(harness.get(token, f"{base}/manifest/", **query))
    assert [e["version"] for e in manifest["objects"]] == [V1, V2, V3, V4]
    picked = ok(harness.get(token, f"{base}/objects/{a}/", **{"match[version]": f"{V4},first,{V2}"}))
    assert [o["modified"] for o in picked["objects"]] == [V1, V2, V4]


def test_each_object_keeps_its_place_and_its_versions_are_ordered(harness: Harness) -> None:
    """Objects stay in date_added order (by their first version on the page); the date_added headers give
    the page's earliest and latest, so added_after paging from the last one skips nothing."""
    token, coll, a, b = posted_out_of_order(harness)
    base = f"/api/collections/{coll}"
    r = harness.get(token, f"{base}/objects/", **{"match[version]": "all"})
    listed = [(o["id"], o["modified"]) for o in ok(r)["objects"]]
    assert listed == [(a, V1), (a, V2), (b, V1), (a, V3), (a, V4)]
    entries = ok(harness.get(token, f"{base}/manifest/", **{"match[version]": "all"}))["objects"]
    assert [(e["id"], e["version"]) for e in entries] == listed
    added = sorted(e["date_added"] for e in entries)
    assert r.headers["X-TAXII-Date-Added-First"] == added[0]
    assert r.headers["X-TAXII-Date-Added-Last"] == added[-1]
    later = harness.get(token, f"{base}/objects/", **{"match[version]": "all", "added_after": added[-1]})
    assert "objects" not in ok(later)


def test_paging_versions_neither_skips_nor_repeats(harness: Harness) -> None:
    token, coll, a, _ = posted_out_of_order(harness)
    base = f"/api/collections/{coll}"
    cases: list[tuple[str, dict[str, str], str]] = [
        (f"{base}/objects/{a}/versions/", {}, "versions"),
        (f"{base}/objects/{a}/", {"match[version]": "all"}, "objects"),
        (f"{base}/objects/", {"match[version]": "all"}, "objects"),
        (f"{base}/manifest/", {"match[version]": "all"}, "objects"),
    ]
    for path, params, key in cases:
        for limit in (1, 2, 3):
            seen: list[Any] = []
            cursor: str | None = None
            for _ in range(10):
                page = ok(harness.get(token, path, limit=limit, **params, **({"next": cursor} if cursor else {})))
                items = page.get(key, [])
                assert len(items) <= limit
                listed = [
                    (a, item) if key == "versions" else (item["id"], item.get("modified", item.get("version")))
                    for item in items
                ]
                for object_id in {i for i, _ in listed}:
                    own = [v for i, v in listed if i == object_id]
                    assert own == sorted(own), (path, limit, listed)  # each page lists versions in order
                seen += listed
                if not page["more"]:
                    break
                cursor = page["next"]
            expected = 4 if key == "versions" or "/objects/indicator" in path else 5
            assert len(seen) == len(set(seen)) == expected, (path, limit, seen)
