"""Observables (SCOs) through the API: custom observable types, and the one notion of an SCO's version.

An SCO has no `modified` or `created`; TAXII 2.1 section 3.4.1 (match `version`) leaves its version to the
server ("a value for the version that is consistent to the server"). relto's is the version's `date_added`,
and every place that shows or takes a version agrees on it: the manifest, `versions/`, the status of the
POST that stored it, and `match[version]` (docs/interop.md).
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest
import stix2

from relto.domain.levels import DEFAULT_LEVELS, Ladder
from relto.domain.markings import releasability_marking
from tests.conftest import Harness
from tests.stix_types import OPENCTI, AcmeSensor, observable

TO_KOR = releasability_marking("SECRET", ["GBR", "KOR"], Ladder.of(DEFAULT_LEVELS))


def as_dict(obj: Any) -> dict[str, Any]:
    return orjson.loads(obj.serialize())  # type: ignore[no-any-return]


def manifest(h: Harness, token: str, coll: str, **params: Any) -> list[dict[str, Any]]:
    r = h.get(token, f"/api/collections/{coll}/manifest/", **params)
    assert r.status_code == 200, r.text
    return r.json().get("objects", [])  # type: ignore[no-any-return]


def objects(h: Harness, token: str, path: str, **params: Any) -> list[dict[str, Any]]:
    r = h.get(token, path, **params)
    assert r.status_code == 200, r.text
    return r.json().get("objects", [])  # type: ignore[no-any-return]


# custom observable types -----------------------------------------------------------------------------------
def test_opencti_and_stix2_custom_observables_are_stored_and_served_unchanged(harness: Harness) -> None:
    coll = harness.collection()
    gbr, kor = harness.token("GBR"), harness.token("KOR")
    refs = [TO_KOR["id"]]
    made = [as_dict(observable(t, f"{t} value", object_marking_refs=refs)) for t in OPENCTI]
    made.append(as_dict(AcmeSensor(name="border router", serial="RTR-0042", object_marking_refs=refs)))
    made.append({"type": "x-acme-sensor", "id": f"x-acme-sensor--{uuid.uuid4()}", "name": "no spec_version"})
    status = harness.post(gbr, coll, [TO_KOR, *made])
    assert status["failures"] == [] and status["success_count"] == len(made) + 1
    served = {o["id"]: o for o in objects(harness, gbr, f"/api/collections/{coll}/objects/")}
    for obj in made:
        assert served[obj["id"]] == obj
    to_kor = {o["id"] for o in objects(harness, kor, f"/api/collections/{coll}/objects/")}
    assert to_kor == {TO_KOR["id"], *(o["id"] for o in made[:-1])}  # the unmarked one stays with GBR
    hostname = made[0]["id"]
    assert objects(harness, kor, f"/api/collections/{coll}/objects/{hostname}/") == [made[0]]
    assert [o["id"] for o in objects(harness, kor, f"/api/collections/{coll}/objects/", **{"match[type]": "text"})] == [
        made[1]["id"]
    ]


def test_a_known_sdo_without_timestamps_is_still_refused(harness: Harness) -> None:
    coll = harness.collection()
    bad = {"type": "malware", "spec_version": "2.1", "id": f"malware--{uuid.uuid4()}", "name": "x", "is_family": True}
    status = harness.post(harness.token("GBR"), coll, [bad])
    assert status["success_count"] == 0
    assert "created" in status["failures"][0]["message"]


# one version for an SCO everywhere -------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["ipv4-addr", "hostname"])
def test_an_scos_version_is_its_date_added_in_manifest_versions_status_and_match(harness: Harness, kind: str) -> None:
    coll = harness.collection()
    gbr = harness.token("GBR")
    if kind == "hostname":
        sco = as_dict(observable("hostname", "c2.example"))
    else:
        sco = as_dict(stix2.IPv4Address(value="198.51.100.7"))
    status = harness.post(gbr, coll, [sco])
    [entry] = manifest(harness, gbr, coll)
    version = entry["version"]
    assert version == entry["date_added"]
    assert status["successes"] == [{"id": sco["id"], "version": version, "message": "stored"}]
    base = f"/api/collections/{coll}/objects/"
    r = harness.get(gbr, f"{base}{sco['id']}/versions/")
    assert r.json() == {"more": False, "versions": [version]}
    for path in (base, f"{base}{sco['id']}/"):
        assert objects(harness, gbr, path, **{"match[version]": version}) == [sco]
        assert objects(harness, gbr, path, **{"match[version]": f"first,{version}"}) == [sco]
    assert objects(harness, gbr, base, **{"match[version]": "2024-01-01T00:00:00.000Z"}) == []
    assert manifest(harness, gbr, coll, **{"match[version]": version}) == [entry]
    # Posting it again is a no-op, and its status names the version already stored.
    again = harness.post(gbr, coll, [sco])
    assert again["successes"] == [{"id": sco["id"], "version": version, "message": "already stored: a no-op"}]
    # DELETE takes the same version.
    headers = harness.headers(gbr)
    deleted = harness.client.delete(f"{base}{sco['id']}/", params={"match[version]": version}, headers=headers)
    assert deleted.status_code == 200, deleted.text
    assert manifest(harness, gbr, coll) == []


def test_an_sco_that_carries_created_keeps_created_as_its_version(harness: Harness) -> None:
    coll = harness.collection()
    gbr = harness.token("GBR")
    created = "2024-03-01T10:00:00.000Z"
    sco = {"type": "ipv4-addr", "spec_version": "2.1", "id": f"ipv4-addr--{uuid.uuid4()}", "value": "198.51.100.9"}
    sco["created"] = created
    status = harness.post(gbr, coll, [sco])
    assert status["successes"] == [{"id": sco["id"], "version": created, "message": "stored"}]
    assert [e["version"] for e in manifest(harness, gbr, coll)] == [created]
    assert objects(harness, gbr, f"/api/collections/{coll}/objects/", **{"match[version]": created}) == [sco]
