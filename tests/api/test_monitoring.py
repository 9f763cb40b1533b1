"""/healthz, /readyz and /metrics (docs/operations.md#monitoring): who may see what, and what the metrics count."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from relto.api import create_app
from relto.domain.levels import DEFAULT_LEVELS, Ladder
from relto.domain.markings import releasability_marking
from relto.store.base import PeerRecord
from relto.store.migrate import head_revision
from tests.conftest import Harness

TS = "2024-01-01T00:00:00.000Z"
MARKING = releasability_marking("SECRET", ["GBR", "KOR"], Ladder.of(DEFAULT_LEVELS))
PEER_TOKEN = "rt_" + "a" * 16 + "_" + "b" * 43


def indicator() -> dict[str, Any]:
    return {
        "type": "indicator",
        "spec_version": "2.1",
        "id": f"indicator--{uuid.uuid4()}",
        "created": TS,
        "modified": TS,
        "name": "bad domain",
        "pattern": "[domain-name:value = 'evil.example']",
        "pattern_type": "stix",
        "valid_from": TS,
        "object_marking_refs": [MARKING["id"]],
    }


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def scrape(h: Harness) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The admin's scrape of /metrics as {(sample name, sorted labels): value}."""
    r = h.client.get("/metrics", headers=bearer(h.token("GBR", admin=True)))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def test_healthz_needs_no_token_and_says_only_ok(harness: Harness) -> None:
    r = harness.client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_readyz_tells_anyone_ready_and_an_admin_why(harness: Harness) -> None:
    assert harness.client.get("/readyz").json() == {"status": "ready"}
    reader = harness.client.get("/readyz", headers=bearer(harness.token("GBR")))
    assert reader.status_code == 200 and reader.json() == {"status": "ready"}
    assert harness.client.get("/readyz", headers=bearer("rt_nonsense")).json() == {"status": "ready"}
    harness.node.store.add_peer(PeerRecord(name="kor", url="http://kor.example", token=PEER_TOKEN))
    r = harness.client.get("/readyz", headers=bearer(harness.token("GBR", admin=True)))
    doc = r.json()
    assert r.status_code == 200 and doc["status"] == "ready" and doc["database"] == "reachable"
    assert doc["schema"] == {"revision": head_revision(), "head": head_revision()} and doc["initialised"] is True
    assert doc["peers"] == [{"name": "kor", "state": "new", "lag_seconds": 0.0, "last_error": ""}]
    assert doc["decision_log_pending"] >= 0
    assert PEER_TOKEN not in r.text


def test_readyz_is_503_behind_the_schema_head_or_without_the_database(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = bearer(harness.token("GBR", admin=True))
    monkeypatch.setattr(harness.node.store, "schema_revision", lambda: "0001_old")
    r = harness.client.get("/readyz")
    assert r.status_code == 503 and r.json() == {"status": "not ready"}
    detail = harness.client.get("/readyz", headers=admin).json()
    assert detail["schema"] == {"revision": "0001_old", "head": head_revision()}

    def down() -> str:
        raise OSError("connection refused")

    monkeypatch.setattr(harness.node.store, "schema_revision", down)
    assert harness.client.get("/readyz").status_code == 503
    detail = harness.client.get("/readyz", headers=admin).json()
    assert detail["database"] == "unreachable" and detail["database_error"] == "OSError"


def test_metrics_are_for_admin_tokens(harness: Harness) -> None:
    assert harness.client.get("/metrics").status_code == 401
    assert harness.client.get("/metrics", headers=bearer(harness.token("GBR"))).status_code == 403


def test_metrics_count_publishing_reading_and_requests_by_route(harness: Harness) -> None:
    token, coll = harness.token("GBR"), harness.collection()
    before = scrape(harness)
    published = [indicator() for _ in range(5)]
    status = harness.post(token, coll, [MARKING, *published])
    assert status["success_count"] >= 5
    page = harness.get(token, f"/api/collections/{coll}/objects/").json()["objects"]
    one = harness.get(token, f"/api/collections/{coll}/objects/{published[0]['id']}/")
    assert one.status_code == 200
    after = scrape(harness)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after[key] - before.get(key, 0.0)

    assert delta("relto_objects_published_total", exit="local") == status["success_count"]
    assert delta("relto_objects_published_total", exit="federation") == 0
    assert delta("relto_versions_released_total", exit="taxii") == len(page) + 1
    assert delta("relto_versions_released_total", exit="stream") == 0
    assert delta("relto_decisions_total", path="taxii.objects") == 1
    assert delta("relto_decisions_total", path="taxii.object") == 1
    objects = "/api/collections/{collection_id}/objects/"
    assert delta("relto_http_requests_total", method="POST", route=objects, status="202") == 1
    assert delta("relto_http_requests_total", method="GET", route=objects, status="200") == 1
    assert delta("relto_http_request_duration_seconds_count", method="GET", route=objects) == 1
    assert after[("relto_http_requests_total", (("method", "GET"), ("route", "/metrics"), ("status", "200")))] >= 1
    # Route templates, never ids: no label names a collection or an object.
    assert not any(coll in v or "indicator--" in v for _, labels in after for _, v in labels)
    assert after[("relto_authenticator_cache_entries", ())] >= 2
    assert after[("relto_policy_compiled_entries", ())] >= 1
    assert after[("relto_policy_marking_sets", ())] >= 1
    assert ("relto_decision_log_pending", ()) in after
    assert after[("relto_stream_subscribers", ())] == 0


def test_metrics_of_peers_are_read_from_the_store_at_scrape_time(harness: Harness) -> None:
    harness.node.store.add_peer(PeerRecord(name="kor", url="http://kor.example", token=PEER_TOKEN))
    got = scrape(harness)
    assert got[("relto_peer_state", (("peer", "kor"), ("state", "new")))] == 1
    assert got[("relto_peer_state", (("peer", "kor"), ("state", "failing")))] == 0
    assert got[("relto_peer_lag_seconds", (("peer", "kor"),))] == 0
    assert got[("relto_peer_received_total", (("peer", "kor"),))] == 0
    assert got[("relto_peer_refused_total", (("peer", "kor"),))] == 0


def test_each_app_has_its_own_registry(harness: Harness) -> None:
    with TestClient(create_app(harness.node)) as other:
        r = other.get("/metrics", headers=bearer(harness.token("GBR", admin=True)))
    assert r.status_code == 200
    assert other.app.state.metrics.registry is not harness.client.app.state.metrics.registry  # type: ignore[attr-defined]
