"""Class 8: the decision log records what a writer tried and was refused, its no-ops, and every preview."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.attacks.conftest import T1, Node, indicator, marking

pytestmark = pytest.mark.slow


def names(record: dict[str, Any], stix_id: str) -> bool:
    return any(item[0] == stix_id for item in record["items"])


def test_refusals_noops_and_previews_are_in_the_decision_log(node: Node) -> None:
    """Class 8 (decision log): KOR tries to take over GBR's object, reposts its own object, tries to DELETE GBR's
    object and to preview it for UKR; each attempt must leave a record, so an auditor sees the probing."""
    shared = marking("UNCLASSIFIED", "GBR", "KOR")
    kor_only = marking("UNCLASSIFIED", "KOR")
    x = indicator([shared], name="GBR's indicator")
    own = indicator([kor_only], name="KOR's indicator")
    cid = node.new_collection()
    assert node.post("GBR", cid, [shared, x]).stored(x["id"])
    assert node.post("KOR", cid, [kor_only, own]).stored(own["id"])

    assert node.delete("KOR", cid, x["id"]).status_code == 403  # (iii)
    preview = node.get("KOR", f"/api/collections/{cid}/objects/{x['id']}/preview/", {"nation": "UKR"})
    assert preview.status_code in (403, 404), preview.text  # (iv)
    node.post("KOR", cid, [{**x, "modified": T1, "name": "KOR's takeover"}])  # (i) refused: X is GBR's
    node.post("KOR", cid, [own])  # (ii) a no-op
    time.sleep(1.0)  # the log is written every 200 ms

    records = [r for r in node.audit("--nation", "KOR", "--limit", "1000") if r["collection"] == cid]
    paths = sorted({r["path"] for r in records})
    assert any(r["path"] == "publish.refused" and names(r, x["id"]) for r in records), paths
    assert any(r["path"] == "publish.noop" for r in records), paths
    assert any(r["path"] == "refused.delete" for r in records), paths
    assert any(r["path"] in ("preview", "refused.preview") and names(r, x["id"]) for r in records), paths
