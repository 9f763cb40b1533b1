"""`relto preview --file`: what a nation would receive of a draft before it is shared, and why."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from relto import admin
from relto.cli import main
from relto.domain.tearline import mark_objects

TS = "2024-10-19T08:00:00.000Z"
IDENTITY = "identity--00000000-0000-4000-8000-000000000002"
REPORT = "report--00000000-0000-4000-8000-000000000001"


def run(*args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), input=stdin)
    return result.exit_code, result.stdout, result.stderr


def draft() -> list[dict[str, Any]]:
    """A report REL TO GBR, KOR, UKR naming one identity REL TO GBR, KOR; its description for GBR alone."""
    identity = {
        "type": "identity",
        "spec_version": "2.1",
        "id": IDENTITY,
        "created": TS,
        "modified": TS,
        "name": "a GBR source",
    }
    report = {
        "type": "report",
        "spec_version": "2.1",
        "id": REPORT,
        "created": TS,
        "modified": TS,
        "name": "DPRK forces in Russia's Far East (fictional)",
        "published": TS,
        "object_refs": [IDENTITY],
        "description": "the body",
    }
    who = mark_objects([identity], classification="SECRET", rel_to=["GBR", "KOR"])
    what = mark_objects(
        [report], classification="SECRET", rel_to=["GBR", "KOR", "UKR"], fields={"description": ("SECRET", ["GBR"])}
    )
    return [*who.envelope()["objects"], *what.envelope()["objects"]]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    code, _, err = run("init", "--data", str(tmp_path), "--nation", "GBR")
    assert code == 0, err
    (tmp_path / "draft.json").write_bytes(orjson.dumps({"objects": draft()}))
    return tmp_path


def test_a_withheld_report_explains_its_object_ref(data: Path) -> None:
    code, out, err = run("preview", "--file", str(data / "draft.json"), "--as", "UKR", "--data", str(data))
    assert code == 0, err
    assert out.startswith(
        "Preview as UKR at TOP SECRET (the top of this node's ladder; --clearance to change), of a draft published "
        "by GBR (this node's nation)"
    )
    assert f"{REPORT}: withheld" in out and f"{IDENTITY}: withheld" in out
    assert f"UKR would receive nothing of {IDENTITY}: its marking SECRET REL TO GBR, KOR does not include UKR" in out
    assert (
        f"UKR would receive nothing of {REPORT}: its only object_ref {IDENTITY} is not releasable to UKR, and a "
        "report must name at least one object"
    ) in out


def test_a_tearlined_field_is_named(data: Path) -> None:
    code, out, err = run("preview", "--file", str(data / "draft.json"), "--as", "kor", "--data", str(data))
    assert code == 0, err
    assert f"{REPORT}: cut" in out and f"{IDENTITY}: released whole" in out
    assert "the field description is marked SECRET REL TO GBR, which does not include KOR" in out
    assert '"description"' not in out and '"object_refs"' in out


def test_json_from_stdin_and_a_stated_clearance(data: Path) -> None:
    stdin = orjson.dumps(draft())  # a plain list of objects
    code, out, err = run(
        "preview",
        "--file",
        "-",
        "--as",
        "KOR",
        "--clearance",
        "CONFIDENTIAL",
        "--json",
        "--data",
        str(data),
        stdin=stdin,
    )
    assert code == 0, err
    doc = orjson.loads(out)
    assert doc["nation"] == "KOR" and doc["clearance"] == "CONFIDENTIAL" and doc["clearance_default"] is False
    assert doc["publisher"] == "GBR"
    assert [o["id"] for o in doc["objects"]] == [IDENTITY, REPORT]
    assert all(o["released"] is None for o in doc["objects"])
    assert doc["objects"][1]["reasons"] == [
        f"KOR would receive nothing of {REPORT}: its marking SECRET REL TO GBR, KOR, UKR is above KOR's clearance "
        "CONFIDENTIAL"
    ]


def test_a_wrong_nation_code_says_which_was_meant(data: Path) -> None:
    code, _, err = run("preview", "--file", str(data / "draft.json"), "--as", "GER", "--data", str(data))
    assert code == 2
    assert "did you mean DEU" in err


def test_bad_drafts_and_arguments_are_explained(data: Path) -> None:
    (data / "bad.json").write_bytes(b"{not json")
    code, _, err = run("preview", "--file", str(data / "bad.json"), "--as", "KOR", "--data", str(data))
    assert code == 2 and "is not JSON" in err
    code, _, err = run("preview", "--file", "-", "--as", "KOR", "--data", str(data), stdin=b"[1]")
    assert code == 2 and "'type' and 'id'" in err
    code, _, err = run("preview", "--as", "KOR", "--data", str(data))
    assert code == 2 and "OBJECT_ID" in err


def test_a_stored_object_preview_states_the_clearance_and_the_reasons(data: Path) -> None:
    with closing(admin.open_node(data, None)) as node:
        token = admin.issue_token(node.store, nation="GBR", clearance="SECRET", organisation="", name="w")
        collection = node.add_collection("intel").id
        status = node.publish(node.authenticate(token), collection, draft())
        assert status["success_count"] == 5, status
    code, out, err = run("preview", REPORT, "--as", "KOR", "--data", str(data))
    assert code == 0, err
    assert "Preview as KOR at TOP SECRET (the top of this node's ladder; --clearance to change)." in err
    doc = orjson.loads(out)
    assert doc["released"] is True and "description" not in doc["objects"][0]
    assert doc["reasons"] == ["the field description is marked SECRET REL TO GBR, which does not include KOR"]
    code, out, err = run("preview", REPORT, "--as", "UKR", "--clearance", "SECRET", "--data", str(data))
    assert code == 0, err
    assert "Preview as UKR at SECRET." in err
    doc = orjson.loads(out)
    assert doc["released"] is False
    assert doc["reasons"] == [
        f"UKR would receive nothing of {REPORT}: its only object_ref {IDENTITY} is not releasable to UKR, and a "
        "report must name at least one object"
    ]
