"""Tearlines from the command line (`relto mark --apply`) and over HTTP (`POST /api/mark/`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from relto.cli import main
from relto.domain.levels import Ladder
from relto.domain.markings import releasability_marking
from relto.domain.tearline import mark_objects
from tests.api.test_bad_input import assert_taxii_error
from tests.conftest import TAXII, Harness

TS = "2024-10-19T08:00:00.000Z"
WIDE = ["--classification", "UNCLASSIFIED", "--rel-to", "GBR,KOR,NATO,UKR"]


def report(n: int = 1, **over: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "type": "report",
        "spec_version": "2.1",
        "id": f"report--00000000-0000-4000-8000-{n:012d}",
        "created": TS,
        "modified": TS,
        "name": "DPRK forces in Russia's Far East (fictional)",
        "published": TS,
        "object_refs": [
            "location--00000000-0000-4000-8000-000000000002",
            "note--00000000-0000-4000-8000-000000000003",
        ],
        "description": "the body",
    }
    obj.update(over)
    return obj


def run(*args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["mark", *args], input=stdin)
    return result.exit_code, result.stdout, result.stderr


def expected(objects: list[Any], **fields: tuple[str, list[str]]) -> dict[str, Any]:
    marked = mark_objects(objects, classification="UNCLASSIFIED", rel_to=["GBR", "KOR", "NATO", "UKR"], fields=fields)
    return marked.envelope()


# relto mark --apply ----------------------------------------------------------------------------------------
def test_apply_a_file(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    path.write_bytes(orjson.dumps(report()))
    code, out, err = run(
        *WIDE, "--field", "description=SECRET:GBR", "--field", "object_refs.[1]=S:gbr,kor", "--apply", str(path)
    )
    assert code == 0, err
    assert err == ""
    envelope = orjson.loads(out)
    assert envelope == expected(
        [report()], description=("SECRET", ["GBR"]), **{"object_refs.[1]": ("SECRET", ["GBR", "KOR"])}
    )
    assert [o["type"] for o in envelope["objects"]] == ["marking-definition"] * 3 + ["report"]


def test_apply_a_bundle_from_stdin() -> None:
    bundle = {"type": "bundle", "id": "bundle--00000000-0000-4000-8000-000000000000", "objects": [report(1), report(2)]}
    code, out, err = run(*WIDE, "--field", "description=SECRET:GBR", "--apply", "-", stdin=orjson.dumps(bundle))
    assert code == 0, err
    assert orjson.loads(out) == expected([report(1), report(2)], description=("SECRET", ["GBR"]))


def test_without_fields_only_the_whole_is_marked() -> None:
    code, out, _ = run(*WIDE, "--tlp", "green", "--apply", "-", stdin=orjson.dumps({"objects": [report()]}))
    assert code == 0
    [whole, tlp, obj] = orjson.loads(out)["objects"]
    assert obj["object_marking_refs"] == [whole["id"], tlp["id"]]
    assert "granular_markings" not in obj


def test_warnings_go_to_stderr_and_do_not_stop() -> None:
    code, out, err = run(*WIDE, "--field", "description=UNCLASSIFIED:NATO,GBR,KOR,UKR,JPN", "--apply", "-",
                         stdin=orjson.dumps(report()))  # fmt: skip
    assert code == 0
    assert err.startswith("Warning: UNCLASSIFIED REL TO GBR, JPN, KOR, NATO, UKR on 'description' is not narrower")
    assert orjson.loads(out)["objects"][-1]["granular_markings"]


def test_the_nodes_ladder_and_communities(tmp_path: Path) -> None:
    data = str(tmp_path / "node")
    assert (
        CliRunner().invoke(main, ["init", "--data", data, "--nation", "DEU", "--levels", "OFFEN,GEHEIM"]).exit_code == 0
    )
    assert CliRunner().invoke(main, ["community", "join", "--data", data, "QUINT", "DEU"]).exit_code == 0
    stdin = orjson.dumps(report())
    code, out, err = run("--classification", "OFFEN", "--rel-to", "DEU,QUINT", "--field", "description=GEHEIM:DEU",
                         "--data", data, "--apply", "-", stdin=stdin)  # fmt: skip
    assert code == 0, err
    assert [o.get("name") for o in orjson.loads(out)["objects"][:2]] == ["OFFEN REL TO DEU, QUINT", "GEHEIM REL TO DEU"]
    code, _, err = run(*WIDE, "--data", data, "--apply", "-", stdin=stdin)
    assert code == 2 and "OFFEN, GEHEIM" in err


def test_the_nodes_ladder_and_communities_by_database_url(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'node.db'}"
    assert (
        CliRunner().invoke(main, ["init", "--database", url, "--nation", "DEU", "--levels", "OFFEN,GEHEIM"]).exit_code
        == 0
    )
    assert CliRunner().invoke(main, ["community", "join", "--database", url, "QUINT", "DEU"]).exit_code == 0
    code, out, err = run("--classification", "OFFEN", "--rel-to", "DEU,QUINT", "--database", url)
    assert code == 0, err
    assert orjson.loads(out)["definitions"][0]["name"] == "OFFEN REL TO DEU, QUINT"
    code, _, err = run("--classification", "SECRET", "--rel-to", "DEU", "--database", url)
    assert code == 2 and "OFFEN, GEHEIM" in err


def test_replace(tmp_path: Path) -> None:
    marked = releasability_marking("SECRET", ["GBR"], Ladder())
    stdin = orjson.dumps(report(object_marking_refs=[marked["id"]]))
    code, _, err = run(*WIDE, "--apply", "-", stdin=stdin)
    assert code == 2 and "already carries markings" in err and "--replace" in err
    code, out, err = run(*WIDE, "--replace", "--apply", "-", stdin=stdin)
    assert code == 0, err
    assert marked["id"] not in orjson.loads(out)["objects"][-1]["object_marking_refs"]


BAD_WHOLE = ["--classification", "COSMIC", "--rel-to", "GBR"]
BAD_REL_TO = ["--classification", "SECRET", "--rel-to", "GBR,ATLANTIS"]


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        ([*WIDE, "--field", "descripton=SECRET:GBR"], report(), "(did you mean 'description'?)"),
        ([*WIDE, "--field", "object_refs.[2]=SECRET:GBR"], report(), "'object_refs' has 2 elements, [0] to [1]"),
        ([*WIDE, "--field", "object_refs[1]=SECRET:GBR"], report(), "not a list index"),
        ([*WIDE, "--field", "id=SECRET:GBR"], report(), "identifies the object"),
        ([*WIDE, "--field", "description=COSMIC:GBR"], report(), "field 'description': unknown classification"),
        ([*WIDE, "--field", "description=SECRET:Britain"], report(), "'BRITAIN' is neither a nation code"),
        ([*WIDE, "--field", "description=SECRET"], report(), "SELECTOR=CLASSIFICATION:REL,TO"),
        ([*WIDE, "--field", "description"], report(), "SELECTOR=CLASSIFICATION:REL,TO"),
        (BAD_WHOLE, report(), "unknown classification 'COSMIC'"),
        (BAD_REL_TO, report(), "'ATLANTIS' is neither a nation code"),
        (WIDE, b"{not json", "stdin is not JSON"),
        (WIDE, [report()], "not a JSON list"),
        (WIDE, {"objects": "x"}, 'no "objects" list'),
        (WIDE, 5, "not a JSON number"),
        (WIDE, report(modified="yesterday"), "report--00000000-0000-4000-8000-000000000001: 'modified'"),
    ],
)
def test_bad_input_is_explained(args: list[str], stdin: Any, message: str) -> None:
    raw = stdin if isinstance(stdin, bytes) else orjson.dumps(stdin)
    code, out, err = run(*args, "--apply", "-", stdin=raw)
    assert code == 2, (out, err)
    assert out == ""
    assert err.startswith("Error: ") and message in err, err


def test_field_without_apply_is_explained() -> None:
    code, _, err = run(*WIDE, "--field", "description=SECRET:GBR")
    assert code == 2 and "add --apply FILE" in err


def test_a_missing_file_is_explained(tmp_path: Path) -> None:
    code, _, err = run(*WIDE, "--apply", str(tmp_path / "nope.json"))
    assert code == 2 and "No such file" in err


def test_mark_without_apply_is_unchanged() -> None:
    code, out, _ = run("--classification", "SECRET", "--rel-to", "GBR,KOR,NATO", "--tlp", "amber")
    assert code == 0
    doc = orjson.loads(out)
    assert set(doc) == {"refs", "definitions"}
    assert doc["refs"] == [d["id"] for d in doc["definitions"]]


# POST /api/mark/ -------------------------------------------------------------------------------------------
FIELDS = {
    "description": {"classification": "SECRET", "rel_to": ["GBR"]},
    "object_refs.[1]": {"classification": "SECRET", "rel_to": ["GBR", "KOR"]},
}


def mark_body(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "object": report(),
        "classification": "UNCLASSIFIED",
        "rel_to": ["GBR", "KOR", "NATO", "UKR"],
    }
    body["fields"] = FIELDS
    body.update(over)
    return body


def post_mark(h: Harness, body: Any, **headers: str) -> Any:
    hdrs = h.headers(h.token("GBR"))
    hdrs["Content-Type"] = "application/json"
    hdrs.update(headers)
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return h.client.post("/api/mark/", content=content, headers=hdrs)


def test_api_mark_answers_the_envelope_and_it_can_be_posted(harness: Harness) -> None:
    r = post_mark(harness, mark_body())
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == TAXII
    doc = r.json()
    assert doc == {
        **expected([report()], description=("SECRET", ["GBR"]), **{"object_refs.[1]": ("SECRET", ["GBR", "KOR"])}),
        "warnings": [],
    }
    # The answer is an envelope to POST as it is.
    coll = harness.collection()
    status = harness.post(harness.token("GBR"), coll, doc["objects"])
    assert status["success_count"] == len(doc["objects"]) and status["failure_count"] == 0


def test_api_mark_takes_taxii_json_several_objects_and_says_its_warnings(harness: Harness) -> None:
    body = mark_body(objects=[report(1), report(2)], tlp="amber", fields={"description": FIELDS["description"]})
    del body["object"]
    r = post_mark(harness, body, **{"Content-Type": TAXII})
    assert r.status_code == 200, r.text
    assert [o["id"] for o in r.json()["objects"][3:]] == [report(1)["id"], report(2)["id"]]
    r = post_mark(harness, mark_body(fields={"name": {"classification": "SECRET", "rel_to": ["GBR"]}}))
    assert r.status_code == 200
    [warning] = r.json()["warnings"]
    assert "'name' is required for a report" in warning


def test_api_mark_stores_nothing(harness: Harness) -> None:
    doc = post_mark(harness, mark_body()).json()
    coll = harness.collection()
    status = harness.post(harness.token("GBR"), coll, [doc["objects"][-1]])
    assert status["failure_count"] == 1
    assert "unknown marking-definition" in status["failures"][0]["message"]


def test_api_mark_uses_the_nodes_communities(harness: Harness) -> None:
    r = post_mark(harness, mark_body(rel_to=["GBR", "ATLANTIS"]))
    assert_taxii_error(r, 400, "'ATLANTIS' is neither a nation code", "NATO")


@pytest.mark.parametrize(
    ("body", "status", "mention"),
    [
        (b"{not json", 400, "JSON"),
        ([], 400, "JSON object"),
        ({"classification": "U", "rel_to": ["GBR"]}, 400, '"object"'),
        (mark_body(classification="COSMIC"), 400, "unknown classification 'COSMIC'"),
        (mark_body(rel_to="GBR"), 400, '"rel_to" must be'),
        (mark_body(tlp="purple"), 400, "unknown TLP"),
        (mark_body(fields={"descripton": FIELDS["description"]}), 400, "did you mean 'description'"),
        (mark_body(fields={"object_refs.[7]": FIELDS["description"]}), 400, "'object_refs' has 2 elements"),
        (mark_body(fields={"granular_markings": FIELDS["description"]}), 400, "markings themselves"),
        (mark_body(fields={"a": {"classification": "SECRET", "rel_to": [5]}}), 400, "rel_to"),
        (mark_body(object=5), 400, "not a JSON number"),
        (mark_body(object={"type": "report"}), 400, "'type' and 'id'"),
        (mark_body(object=report(id="report--nope")), 400, "'id' must be"),
        (mark_body(object=report(object_marking_refs=["x"])), 400, "already carries markings"),
        (mark_body(replace=1), 400, '"replace" must be'),
    ],
)
def test_api_mark_bad_input_is_4xx(harness: Harness, body: Any, status: int, mention: str) -> None:
    assert_taxii_error(post_mark(harness, body), status, mention)


def test_api_mark_needs_a_token_and_json(harness: Harness) -> None:
    r = harness.client.post(
        "/api/mark/", content=orjson.dumps(mark_body()), headers={"Content-Type": "application/json"}
    )
    assert_taxii_error(r, 401)
    assert_taxii_error(post_mark(harness, mark_body(), **{"Content-Type": "text/plain"}), 415, "application/json")
    assert_taxii_error(post_mark(harness, mark_body(), Accept="text/html"), 406)


def test_apply_warns_when_a_party_of_rel_to_would_receive_nothing(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    path.write_bytes(orjson.dumps(report(object_refs=["location--00000000-0000-4000-8000-000000000002"])))
    code, out, err = run(*WIDE, "--field", "object_refs.[0]=SECRET:GBR,KOR", "--apply", str(path))
    assert code == 0, err
    assert orjson.loads(out)["objects"][-1]["id"] == report()["id"]  # the envelope is still written
    shut = [line for line in err.splitlines() if "would receive nothing" in line]
    assert shut == [
        f"Warning: {party} would receive nothing of {report()['id']}: the field object_refs.[0] is marked "
        f"SECRET REL TO GBR, KOR, which does not include {party}"
        for party in ("NATO", "UKR")
    ]


def test_apply_warns_when_a_required_reference_is_withheld(tmp_path: Path) -> None:
    note = {
        "type": "note",
        "spec_version": "2.1",
        "id": "note--00000000-0000-4000-8000-000000000003",
        "created": TS,
        "modified": TS,
        "content": "from a GBR source",
        "object_refs": ["location--00000000-0000-4000-8000-000000000002"],
    }
    only = report(object_refs=[note["id"]])
    # A note's content is required: marked for GBR alone, the note is withheld from the others, and so is the
    # report whose only object it is.
    code, out, err = run(
        *WIDE, "--field", "content=SECRET:GBR", "--apply", "-", stdin=orjson.dumps({"objects": [note, only]})
    )
    assert code == 0, err
    assert len(orjson.loads(out)["objects"]) == 4
    lines = err.splitlines()
    assert (
        f"Warning: UKR would receive nothing of {note['id']}: its marking SECRET REL TO GBR does not include UKR"
    ) in lines
    assert (
        f"Warning: UKR would receive nothing of {only['id']}: its only object_ref {note['id']} is not "
        "releasable to UKR, and a report must name at least one object"
    ) in lines
    assert not any("GBR would receive" in line for line in lines)
