"""POST /api/preview/: what a nation would receive of the token's nation's draft, and why; nothing stored."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.api.test_bad_input import assert_taxii_error
from tests.conftest import Harness
from tests.test_preview_cli import IDENTITY, REPORT, draft


def post(h: Harness, body: Any, token: str | None = None) -> Any:
    hdrs = h.headers(token or h.token("GBR"))
    hdrs["Content-Type"] = "application/json"
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return h.client.post("/api/preview/", content=content, headers=hdrs)


def test_preview_explains_and_records(harness: Harness) -> None:
    r = post(harness, {"objects": draft(), "nation": "UKR"})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["nation"] == "UKR" and doc["clearance"] == "TOP SECRET" and doc["clearance_default"] is True
    assert doc["publisher"] == "GBR"
    identity, report = doc["objects"]
    assert identity["id"] == IDENTITY and identity["released"] is None
    assert report["id"] == REPORT and report["released"] is None
    assert report["reasons"] == [
        f"UKR would receive nothing of {REPORT}: its only object_ref {IDENTITY} is not releasable to UKR, and a "
        "report must name at least one object"
    ]
    harness.node.decisions.flush()
    assert [d.path for d in harness.node.store.decisions(0, 10)] == ["preview.draft"]


def test_preview_names_the_tearlined_field(harness: Harness) -> None:
    doc = post(harness, {"objects": draft(), "nation": "KOR", "clearance": "SECRET"}).json()
    assert doc["clearance"] == "SECRET" and doc["clearance_default"] is False
    identity, report = doc["objects"]
    assert identity["released"]["id"] == IDENTITY and identity["reasons"] == []
    assert "description" not in report["released"] and report["released"]["object_refs"] == [IDENTITY]
    assert report["reasons"] == ["the field description is marked SECRET REL TO GBR, which does not include KOR"]


def test_preview_publishes_as_the_tokens_nation(harness: Harness) -> None:
    # The same draft from a KOR writer is published by KOR, and a publisher receives all of its own objects.
    doc = post(harness, {"objects": draft(), "nation": "KOR"}, harness.token("KOR")).json()
    assert doc["publisher"] == "KOR"
    assert doc["objects"][1]["reasons"] == []  # KOR, the publisher, receives all of its own draft


def test_preview_is_for_writers(harness: Harness) -> None:
    r = post(harness, {"objects": draft(), "nation": "KOR"}, harness.token("GBR", can_write=False))
    assert_taxii_error(r, 403, "may read but not publish")
    harness.node.decisions.flush()
    assert [d.path for d in harness.node.store.decisions(0, 10)] == ["refused.preview.draft"]


@pytest.mark.parametrize(
    ("body", "status", "mention"),
    [
        (b"{nope", 400, "not valid JSON"),
        ([], 400, "the body must be"),
        ({"objects": [], "nation": "KOR"}, 400, "nothing to preview"),
        ({"objects": draft()}, 400, "nation"),
        ({"objects": draft(), "nation": "GER"}, 400, "did you mean DEU"),
        ({"objects": draft(), "nation": "KOR", "clearance": "MEGA"}, 400, "MEGA"),
        ({"objects": draft(), "nation": "KOR", "clearance": 3}, 400, "clearance"),
        ({"objects": {"a": 1}, "nation": "KOR"}, 400, "objects"),
        ({"objects": [{"type": "report"}], "nation": "KOR"}, 400, "'type' and 'id'"),
        ({"objects": draft(), "nation": "KOR", "extra": 1}, 400, "the body must be"),
    ],
)
def test_preview_bad_input_is_4xx(harness: Harness, body: Any, status: int, mention: str) -> None:
    assert_taxii_error(post(harness, body), status, mention)
