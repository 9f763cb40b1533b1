"""Observables (SCOs) through the API: custom observable types (OpenCTI's, stix2's CustomObservable)."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import stix2
from stix2.properties import StringProperty

from relto.domain.levels import DEFAULT_LEVELS, Ladder
from relto.domain.markings import releasability_marking
from tests.conftest import Harness
from tests.opencti_types import TYPES, observable

TO_KOR = releasability_marking("SECRET", ["GBR", "KOR"], Ladder.of(DEFAULT_LEVELS))


@stix2.CustomObservable(
    "x-acme-sensor", [("name", StringProperty(required=True)), ("serial", StringProperty())], ["serial"]
)
class AcmeSensor:
    """A custom observable of an integrator's own, declared with stix2."""


def as_dict(obj: Any) -> dict[str, Any]:
    return orjson.loads(obj.serialize())  # type: ignore[no-any-return]


def objects(h: Harness, token: str, path: str, **params: Any) -> list[dict[str, Any]]:
    r = h.get(token, path, **params)
    assert r.status_code == 200, r.text
    return r.json().get("objects", [])  # type: ignore[no-any-return]


# custom observable types -----------------------------------------------------------------------------------
def test_opencti_and_stix2_custom_observables_are_stored_and_served_unchanged(harness: Harness) -> None:
    coll = harness.collection()
    gbr, kor = harness.token("GBR"), harness.token("KOR")
    refs = [TO_KOR["id"]]
    made = [as_dict(observable(t, f"{t} value", object_marking_refs=refs)) for t in TYPES]
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
