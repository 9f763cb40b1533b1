"""Node.preview_draft: what a nation would receive of a draft, with nothing stored."""

from __future__ import annotations

from typing import Any

import pytest

from relto.admin import issue_token
from relto.domain.errors import Forbidden, InvalidRequest
from relto.domain.tearline import mark_objects
from relto.node import Node

NOW = "2026-01-01T00:00:00.000Z"


def indicator(**extra: Any) -> dict[str, Any]:
    return {
        "type": "indicator",
        "spec_version": "2.1",
        "id": "indicator--4a2b6e1c-6c56-4a0e-9d0f-3d1b2b6f0a11",
        "created": NOW,
        "modified": NOW,
        "name": "C2 server",
        "description": "seen by a GBR source",
        "pattern": "[ipv4-addr:value = '198.51.100.7']",
        "pattern_type": "stix",
        "valid_from": NOW,
        **extra,
    }


def draft(obj: dict[str, Any]) -> list[dict[str, Any]]:
    marked = mark_objects(
        [obj],
        classification="CONFIDENTIAL",
        rel_to=["GBR", "KOR", "UKR"],
        tlp="amber",
        fields={"description": ("CONFIDENTIAL", ["GBR", "KOR"])},
    )
    return [*marked.definitions, *marked.objects]


def party(node: Node, nation: str = "GBR", **kw: Any) -> Any:
    token = issue_token(node.store, nation=nation, clearance="SECRET", organisation="", name="t", **kw)
    return node.authenticate(token)


def test_view_as_cuts_the_tearline_and_stores_nothing(node: Node) -> None:
    gbr = party(node)
    sets_before = node.store.marking_sets()
    [ukr] = node.preview_draft(gbr, draft(indicator()), "UKR")
    [kor] = node.preview_draft(gbr, draft(indicator()), "KOR")
    assert ukr is not None and "description" not in ukr and ukr["name"] == "C2 server"
    assert "granular_markings" not in ukr
    assert kor is not None and kor["description"] == "seen by a GBR source"
    assert node.store.marking_sets() == sets_before  # not even a marking set was made


def test_view_as_withholds_what_a_nation_may_not_receive(node: Node) -> None:
    gbr = party(node)
    assert node.preview_draft(gbr, draft(indicator()), "JPN") == [None]
    assert node.preview_draft(gbr, draft(indicator()), "KOR", "RESTRICTED") == [None]


def test_view_as_is_recorded_and_checks_its_input(node: Node) -> None:
    gbr = party(node)
    node.preview_draft(gbr, draft(indicator()), "KOR")
    node.decisions.flush()
    assert [d.path for d in node.store.decisions(0, 10)] == ["preview.draft"]
    with pytest.raises(InvalidRequest):
        node.preview_draft(gbr, draft(indicator()), "Korea")
    with pytest.raises(Forbidden):
        node.preview_draft(party(node, "KOR", can_write=False), draft(indicator()), "GBR")
