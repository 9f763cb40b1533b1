"""The worked example of docs/tearlines.md ("Publishing a tearline"), run as the doc tells it.

The `relto mark --apply` command is taken from the doc and run as a real process; the envelope it prints is
posted to a real `relto serve`; then GBR, KOR, UKR, a NATO member and JPN read the report back, and each must
receive exactly the JSON the doc shows for it (or nothing, for JPN). Preview, over HTTP and from the command
line, shows the same views ("## Preview").
"""

from __future__ import annotations

import re
import shlex
from typing import Any

import httpx
import orjson
import pytest

from relto.api.marking import parse_mark_request
from relto.domain.tearline import mark_objects
from tests.conftest import ROOT, TAXII, Server, relto

DOC = ROOT / "docs" / "tearlines.md"
EXAMPLE = ROOT / "docs" / "examples" / "tearline-report.json"
REPORT_ID = "report--31a4b4ed-76be-480e-930b-81aef64f8d33"
PLACEHOLDER = "{ ...the report of docs/examples/tearline-report.json... }"
# (nation, clearance) of each reader, and which of the doc's blocks it must receive (None: nothing at all).
READERS: dict[str, tuple[str, str, str | None]] = {
    "gbr": ("GBR", "SECRET", "GBR"),
    "kor": ("KOR", "SECRET", "KOR"),
    "kor_confidential": ("KOR", "CONFIDENTIAL", "UKR"),
    "ukr": ("UKR", "SECRET", "UKR"),
    "fra": ("FRA", "SECRET", "UKR"),
    "jpn": ("JPN", "SECRET", None),
}


def publishing_section() -> str:
    text = DOC.read_text()
    start = text.index("## Publishing a tearline")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def shell_commands(section: str) -> list[list[str]]:
    """Each command of the section's ```sh blocks, continuation lines joined, split as the shell would."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", section, re.DOTALL):
        commands.append(shlex.split(block.replace("\\\n", " ")))
    return commands


def shown(section: str) -> dict[str, str]:
    """The blocks the doc labels `<!-- tearline-example: NAME -->`, by name."""
    return dict(re.findall(r"<!-- tearline-example: (\S+) -->\n```(?:json)?\n(.*?)```", section, re.DOTALL))


def mark_command(section: str) -> list[str]:
    """The doc's `relto mark` command, without `relto` and the redirect, with the example's absolute path."""
    [command] = [c for c in shell_commands(section) if c[:2] == ["relto", "mark"]]
    assert command[-2:] == [">", "marked.json"], command
    args = command[1:-2]
    return [str(ROOT / a) if a.startswith("docs/") else a for a in args]


def mark_request(section: str) -> dict[str, Any]:
    block = shown(section)["mark-request"]
    assert PLACEHOLDER in block
    doc: dict[str, Any] = orjson.loads(block.replace(PLACEHOLDER, EXAMPLE.read_text()))
    return doc


# The doc agrees with itself (no server) ---------------------------------------------------------------------
def test_the_doc_shows_what_relto_mark_prints() -> None:
    section = publishing_section()
    envelope = orjson.loads(relto(*mark_command(section)))
    *definitions, report = envelope["objects"]
    assert [d["name"] for d in definitions] == [
        "UNCLASSIFIED REL TO GBR, KOR, NATO, UKR",
        "SECRET REL TO GBR",
        "SECRET REL TO GBR, KOR",
    ]
    assert report == orjson.loads(shown(section)["GBR"])
    unmarked = {k: v for k, v in report.items() if k not in ("object_marking_refs", "granular_markings")}
    assert unmarked == orjson.loads(EXAMPLE.read_bytes())
    assert report["id"] == REPORT_ID

    # The API's request in the doc says the same as the command.
    request = parse_mark_request(mark_request(section))
    marked = mark_objects(
        request.objects, classification=request.classification, rel_to=request.rel_to, fields=request.fields
    )
    assert marked.envelope() == envelope
    assert marked.warnings == ()


def test_the_doc_posts_the_envelope_to_a_collection() -> None:
    [curl] = [c for c in shell_commands(publishing_section()) if c[0] == "curl"]
    assert curl[curl.index("-X") + 1] == "POST"
    assert "$NODE/api/collections/$COLLECTION/objects/" in curl
    assert "Authorization: Bearer $GBR_TOKEN" in curl
    assert f"Content-Type: {TAXII}" in curl and f"Accept: {TAXII}" in curl
    assert curl[curl.index("--data-binary") + 1] == "@marked.json"


# The doc's example against a real server -------------------------------------------------------------------
@pytest.mark.slow
def test_each_party_receives_what_the_doc_shows(server: Server) -> None:
    section = publishing_section()
    blocks = shown(section)
    tokens = {
        who: relto("token", "issue", *server.db.args, "--nation", nation, "--clearance", clearance)
        for who, (nation, clearance, _) in READERS.items()
    }
    collection = relto("collection", "add", *server.db.args, "October 2024")
    envelope = orjson.loads(relto(*mark_command(section)))

    def headers(who: str, content_type: str = TAXII) -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens[who]}", "Accept": TAXII, "Content-Type": content_type}

    with httpx.Client(base_url=server.url, timeout=30) as http:
        # POST /api/mark/ on the node answers what the command printed.
        r = http.post(
            "/api/mark/", content=orjson.dumps(mark_request(section)), headers=headers("gbr", "application/json")
        )
        assert r.status_code == 200, r.text
        assert r.json() == {**envelope, "warnings": []}

        r = http.post(f"/api/collections/{collection}/objects/", content=orjson.dumps(envelope), headers=headers("gbr"))
        assert r.status_code == 202, r.text
        status = r.json()
        assert (status["success_count"], status["failure_count"]) == (4, 0), status

        definitions = {d["name"]: d["id"] for d in envelope["objects"][:-1]}
        wide, secret_gbr, secret_gbr_kor = definitions.values()
        listed = {
            "GBR": {wide, secret_gbr, secret_gbr_kor, REPORT_ID},
            "KOR": {wide, secret_gbr_kor, REPORT_ID},
            "UKR": {wide, REPORT_ID},
        }
        for who, (nation, clearance, block) in READERS.items():
            r = http.get(f"/api/collections/{collection}/objects/{REPORT_ID}/", headers=headers(who))
            everything = http.get(f"/api/collections/{collection}/objects/", headers=headers(who))
            assert everything.status_code == 200, everything.text
            ids = {o["id"] for o in everything.json().get("objects", [])}
            if block is None:
                assert r.status_code == 404, (nation, clearance, r.text)
                assert ids == set(), (nation, clearance)
                continue
            assert r.status_code == 200, (nation, clearance, r.text)
            [received] = r.json()["objects"]
            assert received == orjson.loads(blocks[block]), (nation, clearance)
            # Listing the collection releases the same portion, and the definitions its own markings admit.
            [listed_report] = [o for o in everything.json()["objects"] if o["id"] == REPORT_ID]
            assert listed_report == received, (nation, clearance)
            if who in ("gbr", "kor", "ukr"):
                assert ids == listed[nation], (nation, clearance)

        # Preview ("## Preview"): the originator's writers see each party's view; others may not look.
        def preview(who: str, query: str) -> httpx.Response:
            return http.get(f"/api/collections/{collection}/objects/{REPORT_ID}/preview/?{query}", headers=headers(who))

        r = preview("gbr", "nation=KOR&clearance=SECRET")
        assert r.status_code == 200, r.text
        assert r.json() == {
            "id": REPORT_ID,
            "nation": "KOR",
            "clearance": "SECRET",
            "released": True,
            "reasons": [cut(f, "KOR") for f in ("description", "x_source_detail", "object_refs.[2]")],
            "objects": [orjson.loads(blocks["KOR"])],
        }
        r = preview("gbr", "nation=JPN")
        assert r.status_code == 200, r.text
        assert (r.json()["clearance"], r.json()["released"], r.json()["objects"]) == ("TOP SECRET", False, [])
        assert preview("kor", "nation=UKR").status_code == 403
        assert preview("jpn", "nation=UKR").status_code == 404

    # The command prints one document per collection holding the object: here, one.
    view = orjson.loads(relto("preview", REPORT_ID, "--as", "UKR", *server.db.args))
    assert view == {
        "collection": collection,
        "id": REPORT_ID,
        "nation": "UKR",
        "clearance": "TOP SECRET",
        "released": True,
        "reasons": [
            *(cut(f, "UKR") for f in ("description", "x_source_detail", "object_refs.[2]")),
            cut("object_refs.[3]", "UKR", "GBR, KOR"),
        ],
        "objects": [orjson.loads(blocks["UKR"])],
    }


def cut(field: str, nation: str, rel_to: str = "GBR") -> str:
    """The reason preview gives for a field the nation does not receive."""
    return f"the field {field} is marked SECRET REL TO {rel_to}, which does not include {nation}"


@pytest.mark.parametrize("who", ["KOR", "UKR"])
def test_the_doc_shows_no_trace_of_what_was_removed(who: str) -> None:
    """What the doc says KOR and UKR receive names neither the removed fields nor their marking."""
    section = publishing_section()
    text = shown(section)[who]
    gbr = orjson.loads(shown(section)["GBR"])
    secret_gbr = gbr["granular_markings"][0]["marking_ref"]
    for gone in ("description", "x_source_detail", "note--", secret_gbr):
        assert gone not in text
