"""The whole MITRE ATT&CK Enterprise corpus in through TAXII POST, every object out JSON-equal."""

from __future__ import annotations

import gzip
from typing import Any

import httpx
import orjson

from tests.conftest import TAXII, Server, relto, shared_data


def corpus(name: str) -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = orjson.loads(gzip.decompress(shared_data(name).read_bytes()))["objects"]
    return objects


def test_attack_enterprise_round_trip(server: Server) -> None:
    objects = corpus("enterprise-attack-18.1-stix21.json.gz")
    assert len(objects) == 24_771
    coll = relto("collection", "add", *server.db.args, "ATT&CK")
    headers = {"Authorization": f"Bearer {server.admin}", "Accept": TAXII, "Content-Type": TAXII}
    base = f"{server.url}/api/collections/{coll}/objects/"
    # The marking definition must be known before the objects that reference it: send it first.
    ordered = sorted(objects, key=lambda o: o["type"] != "marking-definition")
    with httpx.Client(headers=headers, timeout=120) as client:
        for i in range(0, len(ordered), 1000):
            status = client.post(base, content=orjson.dumps({"objects": ordered[i : i + 1000]})).json()
            assert status["failure_count"] == 0, status["failures"][:3]
            assert status["success_count"] == len(ordered[i : i + 1000])
        received: list[dict[str, Any]] = []
        params: dict[str, Any] = {"limit": 1000}
        while True:
            page = orjson.loads(client.get(base, params=params).content)
            received.extend(page.get("objects", []))
            if not page["more"]:
                break
            params["next"] = page["next"]
    by_id = {o["id"]: o for o in objects}
    assert len(received) == len(by_id)
    assert {o["id"] for o in received} == set(by_id)
    assert all(o == by_id[o["id"]] for o in received)


def test_ics_and_mobile_corpora_round_trip(harness: Any) -> None:
    token = harness.token("USA")
    for name in ("ics-attack-18.1.json.gz", "mobile-attack-17.1.json.gz"):
        objects = corpus(name)
        coll = harness.collection(name)
        ordered = sorted(objects, key=lambda o: o["type"] != "marking-definition")
        for i in range(0, len(ordered), 1000):
            assert harness.post(token, coll, ordered[i : i + 1000])["failure_count"] == 0
        out = harness.get(token, f"/api/collections/{coll}/objects/", limit=10_000).json()["objects"]
        # These corpora repeat some ids with several versions: each id comes back at its newest.
        newest: dict[str, dict[str, Any]] = {}
        for o in objects:
            key = o.get("modified", o.get("created", ""))
            if o["id"] not in newest or key > newest[o["id"]].get("modified", newest[o["id"]].get("created", "")):
                newest[o["id"]] = o
        assert {o["id"]: o for o in out} == newest
