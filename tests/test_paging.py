"""Paging never stalls (issue 10, item 1), through the real server with taxii2-client and an added_after loop.

A collection where long runs of versions are withheld from the reader (relationships whose endpoint is hidden
from it: their marking set admits it, the release step withholds them) used to answer empty pages with
`more: true` and no X-TAXII-Date-Added-* headers: taxii2-client's as_pages then asked for `limit=0`, and an
`added_after` client asked for the same page forever. A re-post under other markings (item 7) is a failure.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from taxii2client.v21 import Collection, as_pages

from relto.domain.levels import Ladder
from relto.domain.markings import releasability_marking
from tests.conftest import TAXII, Database, Server, relto, start_server

pytestmark = pytest.mark.slow

GBR_ONLY = releasability_marking("UNCLASSIFIED", ["GBR"], Ladder())
GBR_KOR = releasability_marking("UNCLASSIFIED", ["GBR", "KOR"], Ladder())
STAMP = "2024-10-18T09:00:00.000Z"


def sdo(type_: str, marking: dict[str, Any], **props: Any) -> dict[str, Any]:
    return {
        "type": type_,
        "spec_version": "2.1",
        "id": f"{type_}--{uuid.uuid4()}",
        "created": STAMP,
        "modified": STAMP,
        "object_marking_refs": [marking["id"]],
        **props,
    }


def indicator(n: int) -> dict[str, Any]:
    return sdo("indicator", GBR_KOR, name=f"seen {n}", pattern="[x:y = 'z']", pattern_type="stix", valid_from=STAMP)


@pytest.fixture
def running(database: Database, tmp_path: Path) -> Iterator[tuple[Server, str, str, str]]:
    admin = relto("init", *database.args, "--nation", "GBR")
    gbr = relto("token", "issue", *database.args, "--nation", "GBR", "--clearance", "SECRET")
    kor = relto("token", "issue", *database.args, "--nation", "KOR", "--clearance", "SECRET")
    coll = relto("collection", "add", *database.args, "paging").split()[0]
    server = start_server(database, admin, logs=tmp_path)
    try:
        yield server, coll, gbr, kor
    finally:
        server.stop()


def post(server: Server, coll: str, token: str, objects: list[dict[str, Any]]) -> dict[str, Any]:
    r = httpx.post(
        f"{server.url}/api/collections/{coll}/objects/",
        json={"objects": objects},
        headers={"Authorization": f"Bearer {token}", "Accept": TAXII, "Content-Type": TAXII},
        timeout=60,
    )
    assert r.status_code == 202, r.text
    return r.json()  # type: ignore[no-any-return]


def test_pages_never_stall_on_withheld_runs(running: tuple[Server, str, str, str]) -> None:
    server, coll, gbr, kor = running
    hidden = sdo("identity", GBR_ONLY, name="a GBR-only source", identity_class="individual")
    post(server, coll, gbr, [GBR_ONLY, GBR_KOR, hidden])
    visible: list[str] = []
    for run in (2, 30, 70, 3):  # runs of withheld versions, longer than ten pages of 5 at the end
        shown = [indicator(len(visible) + i) for i in range(3)]
        visible += [o["id"] for o in shown]
        withheld = [
            sdo("relationship", GBR_KOR, relationship_type="attributed-to", source_ref=o["id"], target_ref=hidden["id"])
            for o in shown[:1]
            for _ in range(run)
        ]
        post(server, coll, gbr, [*shown, *withheld])

    # taxii2-client, as an integrator would page: every visible indicator, no empty page with more to come.
    collection = Collection(f"{server.url}/api/collections/{coll}/", user="kor", password=kor)
    got: list[str] = []
    for envelope in as_pages(collection.get_objects, per_request=5):
        objects = envelope.get("objects", [])
        assert objects or not envelope.get("more"), "an empty page with more to come"
        got += [o["id"] for o in objects if o["type"] == "indicator"]
    assert sorted(got) == sorted(visible)

    # An added_after loop (OpenCTI's way) moves on by the headers and ends.
    after, seen, requests = None, [], 0
    while True:
        requests += 1
        assert requests < 100, "the added_after loop does not end"
        params = {"limit": "5", **({"added_after": after} if after else {})}
        r = httpx.get(
            f"{server.url}/api/collections/{coll}/objects/",
            params=params,
            headers={"Authorization": f"Bearer {kor}", "Accept": TAXII},
        )
        assert r.status_code == 200, r.text
        body = r.json()
        seen += [o["id"] for o in body.get("objects", []) if o["type"] == "indicator"]
        if not body.get("objects"):
            break
        assert "X-TAXII-Date-Added-Last" in r.headers
        after = r.headers["X-TAXII-Date-Added-Last"]
    assert sorted(seen) == sorted(visible)


def test_a_repost_under_other_markings_says_a_new_version_is_needed(running: tuple[Server, str, str, str]) -> None:
    """Item 7: reposting the same (id, version) with new markings used to answer "already stored: a no-op"."""
    server, coll, gbr, _ = running
    first = indicator(0)
    post(server, coll, gbr, [GBR_ONLY, GBR_KOR, first])
    status = post(server, coll, gbr, [{**first, "object_marking_refs": [GBR_ONLY["id"]]}])
    assert status["failure_count"] == 1 and status["success_count"] == 0
    assert "new version" in status["failures"][0]["message"]
    assert post(server, coll, gbr, [first])["successes"][0]["message"] == "already stored: a no-op"
