"""Classes 6 and 7: deletion events and nested references do not name what is hidden from the reader."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from tests.attacks.conftest import EPOCH, Node, identity, indicator, is_deleted, is_object, marking, sdo

pytestmark = pytest.mark.slow


def test_deletion_events_go_only_to_parties_released_that_version(node: Node) -> None:
    """Class 6 (stream): GBR's relationship R (REL TO GBR, KOR) points at GBR's GBR-only identity I, so R is withheld
    from KOR; a KOR subscriber must not learn of R from the `deleted` event when GBR deletes it."""
    gbr_only = marking("UNCLASSIFIED", "GBR")
    shared = marking("UNCLASSIFIED", "GBR", "KOR")
    i = identity([gbr_only], name="GBR's source")
    n = indicator([shared], name="shared indicator")
    r = sdo("relationship", [shared], relationship_type="attributed-to", source_ref=n["id"], target_ref=i["id"])
    fence = indicator([shared], name="published after R")
    cid = node.new_collection()
    status = node.post("GBR", cid, [gbr_only, shared, i, n, r])
    assert not status.raw.get("failures"), status.raw

    with node.stream("KOR", cid, {"added_after": EPOCH}) as events:
        node.post("GBR", cid, [fence])
        before = events.until(is_object(fence["id"]), "for the object published after R")
        assert node.delete("GBR", cid, r["id"]).status_code == 200
        assert node.delete("GBR", cid, n["id"]).status_code == 200
        after = events.until(is_deleted(n["id"]), "deleting N (GBR's deletion of an object KOR received)")

    received = {e.data["id"] for e in before if e.event == "object"}
    assert n["id"] in received
    assert i["id"] not in received and r["id"] not in received
    leaked = [e for e in before + after if is_deleted(r["id"])(e)]
    assert leaked == [], f"KOR was told of the deletion of a relationship it never received: {leaked}"


def _hiding_place(kind: str, target: str, marking_id: str) -> dict[str, Any]:
    """Properties that hide a reference below the top level, with a top-level `marking_ref` key and a granular
    marking, so that the serialised body holds as many `_ref":`/`_refs":` keys as the top level accounts for."""
    props: dict[str, Any] = {
        "description": "tool notes",
        "marking_ref": "not a marking",
        "granular_markings": [{"selectors": ["description"], "marking_ref": marking_id}],
    }
    if kind == "extension":
        props["extensions"] = {
            f"extension-definition--{uuid.uuid4()}": {"extension_type": "property-extension", "x_target_ref": target}
        }
    else:
        props["x_parts"] = [{"x_holder_ref": target}]
    return props


def test_a_nested_reference_cannot_hide_from_the_scan(node: Node) -> None:
    """Class 7 (reference scan): GBR's tools (REL TO GBR, KOR) name GBR's GBR-only identity I inside an extension and
    inside a list of objects, with top-level keys crafted to make the reference scan skip the walk below the top
    level; KOR must not find I's id in what it receives."""
    gbr_only = marking("UNCLASSIFIED", "GBR")
    shared = marking("UNCLASSIFIED", "GBR", "KOR")
    i = identity([gbr_only], name="GBR's source")
    tools = [
        sdo("tool", [shared], name=f"tool hiding I in {kind}", **_hiding_place(kind, i["id"], shared["id"]))
        for kind in ("extension", "list")
    ]
    cid = node.new_collection()
    status = node.post("GBR", cid, [gbr_only, shared, i, *tools])
    assert not status.raw.get("failures"), status.raw

    with node.stream("KOR", cid, {"added_after": EPOCH, "match[type]": "tool"}) as events:
        events.until(is_object(tools[-1]["id"]), "for the last tool")
    streamed = {e.data["id"]: e.data for e in events.seen if e.event == "object"}
    for tool in tools:
        assert i["id"] in json.dumps(node.get_object("GBR", cid, tool["id"]))  # GBR's own view keeps it
        by_id = node.get_object("KOR", cid, tool["id"])
        listed = node.read_id("KOR", cid, tool["id"])
        assert len(by_id) == len(listed) == 1 and tool["id"] in streamed, "KOR should receive the tool"
        for where, body in (("objects/{id}/", by_id), ("objects/", listed), ("stream", streamed[tool["id"]])):
            assert i["id"] not in json.dumps(body), f"{tool['name']}: KOR sees the hidden id through {where}"
