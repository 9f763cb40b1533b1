"""The examples in docs/ work as the docs say."""

from __future__ import annotations

from pathlib import Path

import orjson

from relto.domain.levels import Ladder
from relto.domain.markings import releasability_marking, tlp_definition
from tests.conftest import Harness

DOCS = Path(__file__).resolve().parents[1] / "docs"


def json_block(name: str) -> dict[str, object]:
    text = (DOCS / name).read_text()
    block = text.split("```json\n", 1)[1].split("```", 1)[0]
    doc: dict[str, object] = orjson.loads(block)
    return doc


def test_markings_example_bundle_reaches_exactly_who_the_doc_says(harness: Harness) -> None:
    bundle = json_block("markings.md")
    objects = bundle["objects"]
    assert isinstance(objects, list)
    # The definitions in the doc are exactly what `relto mark` makes today.
    assert objects[:2] == [releasability_marking("SECRET", ["GBR", "KOR", "NATO"], Ladder()), tlp_definition("amber")]
    coll = harness.collection()
    assert harness.post(harness.token("GBR"), coll, objects)["success_count"] == 3
    indicator = objects[2]["id"]

    def sees(nation: str, clearance: str = "SECRET") -> bool:
        r = harness.get(harness.token(nation, clearance), f"/api/collections/{coll}/objects/{indicator}/")
        return r.status_code == 200

    assert sees("GBR") and sees("KOR") and sees("FRA") and sees("USA")
    assert not sees("UKR")
    assert not sees("KOR", "CONFIDENTIAL")
