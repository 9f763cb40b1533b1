"""The UI's session, security headers and JSON API (relto.api.ui), in process."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from relto.admin import issue_token, revoke_token
from relto.api import create_app
from relto.api.ui import CSP
from relto.node import Node
from tests.conftest import make_node


class UI:
    """A node's app with helpers to sign in as a nation."""

    def __init__(self, node: Node, client: TestClient) -> None:
        self.node, self.client = node, client
        self.collection = node.add_collection("intel").id

    def token(self, nation: str, **kw: Any) -> str:
        kw.setdefault("clearance", "SECRET")
        return issue_token(self.node.store, nation=nation, organisation="", name="t", **kw)

    def sign_in(self, token: str) -> str:
        """Sign in (the real form) and return the shell's CSRF value."""
        self.client.cookies.clear()
        form = self.client.get("/").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', form)
        assert csrf is not None
        answer = self.client.post("/ui/session", data={"token": token, "csrf": csrf[1]}, follow_redirects=False)
        assert answer.status_code == 303, answer.text
        meta = re.search(r'name="csrf-token" content="([^"]+)"', self.client.get("/").text)
        assert meta is not None
        return meta[1]

    def publish(self, csrf: str, **draft: Any) -> dict[str, Any]:
        doc = {"collection": self.collection, "type": "indicator", "classification": "CONFIDENTIAL", **draft}
        doc.setdefault("pattern", "[ipv4-addr:value = '198.51.100.7']")
        answer = self.client.post("/ui/api/publish", json=doc, headers={"X-CSRF-Token": csrf})
        assert answer.status_code == 200, answer.text
        return answer.json()  # type: ignore[no-any-return]


@pytest.fixture
def ui(tmp_path: Path) -> Iterator[UI]:
    node = make_node(tmp_path / "node")
    with TestClient(create_app(node), base_url="http://127.0.0.1") as client:
        yield UI(node, client)
    node.close()


def test_without_a_session_only_the_sign_in_page_answers(ui: UI) -> None:
    page = ui.client.get("/")
    assert page.status_code == 200 and 'action="/ui/session"' in page.text and "app.js" not in page.text
    assert ui.client.get("/ui/static/ui.css").status_code == 200  # the sign-in page's own style
    for path in ("/ui/static/app.js", "/ui/api/me", f"/ui/api/feed?collection={ui.collection}", "/ui/api/admin/tokens"):
        answer = ui.client.get(path)
        assert answer.status_code == 401, path
        assert "www-authenticate" not in answer.headers  # no browser dialog
    assert ui.client.get("/ui/static/../signin.html").status_code in (401, 404)


def test_security_headers_on_every_ui_response(ui: UI) -> None:
    for answer in (ui.client.get("/"), ui.client.get("/ui/api/me"), ui.client.get("/ui/static/ui.css")):
        assert answer.headers["content-security-policy"] == CSP
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "no-referrer"
    assert ui.client.get("/ui/api/me").headers["cache-control"] == "no-store"


def test_sign_in_refuses_a_bad_token_and_a_missing_csrf_value(ui: UI) -> None:
    form = ui.client.get("/").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', form)
    assert csrf is not None
    bad = ui.client.post("/ui/session", data={"token": "rt_nope", "csrf": csrf[1]}, follow_redirects=False)
    assert bad.status_code == 401 and "refused" in bad.text and "relto_session" not in bad.headers.get("set-cookie", "")
    good = ui.token("GBR")
    forged = ui.client.post("/ui/session", data={"token": good, "csrf": "x"}, follow_redirects=False)
    assert forged.status_code == 403
    node_token = ui.token("KOR", kind="peer", can_write=False)
    assert ui.client.post("/ui/session", data={"token": node_token, "csrf": csrf[1]}).status_code == 401


def test_the_session_cookie_and_csrf(ui: UI) -> None:
    token = ui.token("GBR")
    form = ui.client.get("/").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', form)
    assert csrf is not None
    answer = ui.client.post("/ui/session", data={"token": token, "csrf": csrf[1]}, follow_redirects=False)
    cookie = answer.headers["set-cookie"]
    assert "relto_session=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert token not in cookie and answer.headers["location"] == "/"
    shell = ui.client.get("/").text
    assert 'name="csrf-token"' in shell and "<script>" not in shell and "style=" not in shell
    me = ui.client.get("/ui/api/me").json()
    assert me["nation"] == "GBR" and me["clearance"] == "SECRET" and me["can_write"] and not me["admin"]
    draft = {
        "collection": ui.collection,
        "type": "threat-actor",
        "name": "x",
        "classification": "SECRET",
        "rel_to": ["GBR"],
    }
    assert ui.client.post("/ui/api/publish", json=draft).status_code == 403
    assert ui.client.post("/ui/api/publish", json=draft, headers={"X-CSRF-Token": "0" * 64}).status_code == 403
    assert ui.client.post("/ui/logout").status_code == 403


def test_revoking_the_token_ends_the_session(ui: UI) -> None:
    token = ui.token("GBR")
    csrf = ui.sign_in(token)
    assert ui.client.get("/ui/api/me").status_code == 200
    revoke_token(ui.node.store, token.split("_")[1])
    ui.node.authenticator = type(ui.node.authenticator)(ui.node.store, ui.node.ladder)  # skip the 1 s cache
    assert ui.client.get("/ui/api/me").status_code == 401
    assert "sign" in ui.client.get("/").text.lower() and "app.js" not in ui.client.get("/").text
    assert ui.client.post("/ui/logout", headers={"X-CSRF-Token": csrf}).status_code == 200


def test_logout_clears_the_cookie(ui: UI) -> None:
    csrf = ui.sign_in(ui.token("GBR"))
    answer = ui.client.post("/ui/logout", headers={"X-CSRF-Token": csrf})
    assert answer.status_code == 200 and 'relto_session=""' in answer.headers["set-cookie"]
    assert ui.client.get("/ui/api/me").status_code == 401


def test_feed_object_and_releasability(ui: UI) -> None:
    gbr = ui.sign_in(ui.token("GBR"))
    shared = ui.publish(
        gbr, name="shared", description="for KOR too", rel_to=["GBR", "KOR"], latitude=37.5, longitude=127
    )
    secret = ui.publish(gbr, name="ours alone", rel_to=["GBR"], tlp="red")
    assert shared["status"]["failure_count"] == 0 and secret["status"]["failure_count"] == 0
    feed = ui.client.get("/ui/api/feed", params={"collection": ui.collection}).json()["items"]
    assert [i["title"] for i in feed if i["type"] == "indicator"] == ["ours alone", "shared"]  # newest first
    assert not any(i["type"] == "marking-definition" for i in feed)
    ours = next(i for i in feed if i["title"] == "ours alone")
    assert ours["banner"] == {
        "text": "CONFIDENTIAL // REL TO GBR",
        "classification": "CONFIDENTIAL",
        "rel_to": ["GBR"],
        "tlp": "RED",
    }

    ui.sign_in(ui.token("KOR"))
    feed = ui.client.get("/ui/api/feed", params={"collection": ui.collection}).json()["items"]
    titles = [i["title"] for i in feed]
    assert "shared" in titles and "ours alone" not in titles
    assert any(i.get("location") == [37.5, 127] for i in feed)
    only = ui.client.get("/ui/api/feed", params={"collection": ui.collection, "type": "indicator", "q": "KOR TOO"})
    assert [i["title"] for i in only.json()["items"]] == ["shared"]
    assert (
        ui.client.get("/ui/api/feed", params={"collection": ui.collection, "originator": "USA"}).json()["items"] == []
    )
    item = ui.client.get("/ui/api/object", params={"collection": ui.collection, "id": shared["id"]}).json()
    assert item["banner"]["text"] == "CONFIDENTIAL // REL TO GBR, KOR" and item["originator"] == "GBR"
    assert {r["type"] for r in item["related"]} == {"relationship"} and len(item["versions"]) == 1
    hidden = ui.client.get("/ui/api/object", params={"collection": ui.collection, "id": secret["id"]})
    missing = ui.client.get(
        "/ui/api/object",
        params={"collection": ui.collection, "id": "indicator--" + "0" * 8 + "-0000-4000-8000-" + "0" * 12},
    )
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["description"].replace(secret["id"], "X") == missing.json()["description"].replace(
        "indicator--00000000-0000-4000-8000-000000000000", "X"
    )
    ui.node.decisions.flush()
    paths = {d.path for d in ui.node.store.decisions(0, 1000)}
    assert {"ui.feed", "ui.object", "ui.versions"} <= paths


def test_publish_refuses_bad_input_with_a_message(ui: UI) -> None:
    csrf = ui.sign_in(ui.token("GBR"))
    bad = {"collection": ui.collection, "type": "report", "name": "r", "classification": "SECRET", "rel_to": ["GBR"]}
    answer = ui.client.post("/ui/api/publish", json=bad, headers={"X-CSRF-Token": csrf})
    assert answer.status_code == 400 and "names at least one object" in answer.json()["description"]
    answer = ui.client.post("/ui/api/publish", json={**bad, "type": "malware"}, headers={"X-CSRF-Token": csrf})
    assert answer.status_code == 400 and "type must be one of" in answer.json()["description"]
    answer = ui.client.post("/ui/api/publish", content=b"{", headers={"X-CSRF-Token": csrf})
    assert answer.status_code == 400


def test_preview_shows_the_tearline_cut(ui: UI) -> None:
    csrf = ui.sign_in(ui.token("GBR"))
    draft = {
        "collection": ui.collection,
        "type": "threat-actor",
        "name": "Actor",
        "description": "source detail",
        "classification": "CONFIDENTIAL",
        "rel_to": ["GBR", "UKR"],
        "tearline": {"classification": "CONFIDENTIAL", "rel_to": ["GBR"]},
    }
    answer = ui.client.post("/ui/api/preview", json={**draft, "nation": "UKR"}, headers={"X-CSRF-Token": csrf}).json()
    [actor] = answer["objects"]
    assert actor["released"] and actor["object"]["name"] == "Actor" and "description" not in actor["object"]
    assert actor["reasons"] == ["the field description is marked CONFIDENTIAL REL TO GBR, which does not include UKR"]
    answer = ui.client.post("/ui/api/preview", json={**draft, "nation": "JPN"}, headers={"X-CSRF-Token": csrf}).json()
    assert answer["objects"][0]["released"] is False and answer["objects"][0]["object"] is None
    feed = ui.client.get("/ui/api/feed", params={"collection": ui.collection}).json()["items"]
    assert feed == []  # a preview stores nothing


def test_operator_endpoints_are_for_admins(ui: UI) -> None:
    csrf = ui.sign_in(ui.token("GBR"))
    assert ui.client.get("/ui/api/admin/tokens").status_code == 403
    assert ui.client.post("/ui/api/admin/tokens", json={}, headers={"X-CSRF-Token": csrf}).status_code == 403
    csrf = ui.sign_in(ui.token("GBR", admin=True))
    issued = ui.client.post(
        "/ui/api/admin/tokens",
        json={"nation": "KOR", "clearance": "SECRET", "name": "analyst"},
        headers={"X-CSRF-Token": csrf},
    ).json()
    assert ui.node.authenticate(issued["token"]).nation == "KOR"
    listed = ui.client.get("/ui/api/admin/tokens").json()["tokens"]
    assert any(t["key_id"] == issued["key_id"] and t["revoked"] is None for t in listed)
    assert all("secret" not in str(t) and "hash" not in str(t) for t in listed)
    answer = ui.client.post(
        "/ui/api/admin/tokens/revoke", json={"key_id": issued["key_id"]}, headers={"X-CSRF-Token": csrf}
    )
    assert answer.status_code == 200
    again = ui.client.post(
        "/ui/api/admin/tokens/revoke", json={"key_id": issued["key_id"]}, headers={"X-CSRF-Token": csrf}
    )
    assert again.status_code == 404 and "no active token" in again.json()["description"]
    joined = ui.client.post(
        "/ui/api/admin/communities/join", json={"name": "NATO", "nation": "KOR"}, headers={"X-CSRF-Token": csrf}
    ).json()
    nato = next(c for c in joined["communities"] if c["name"] == "NATO")
    assert any(m["nation"] == "KOR" and m["until"] is None for m in nato["members"])
    added = ui.client.post("/ui/api/admin/collections", json={"title": "more"}, headers={"X-CSRF-Token": csrf}).json()
    assert added["title"] == "more"
    peer = ui.client.post(
        "/ui/api/admin/peers",
        json={"name": "kor", "url": "http://127.0.0.1:9", "token": "rt_" + "a" * 16 + "_x"},
        headers={"X-CSRF-Token": csrf},
    ).json()
    assert peer["warning"] and "token" not in peer["peer"]
    assert [p["name"] for p in ui.client.get("/ui/api/admin/peers").json()["peers"]] == ["kor"]
    ui.client.post("/ui/api/admin/peers/remove", json={"name": "kor"}, headers={"X-CSRF-Token": csrf})
    assert ui.client.get("/ui/api/admin/peers").json()["peers"] == []
    log = ui.client.get("/ui/api/admin/decisions", params={"path": "ui.feed"}).json()["records"]
    assert all(r["path"] == "ui.feed" for r in log)
    assert ui.client.get("/ui/api/admin/decisions/verify").json()["ok"] is True
    bad = ui.client.get("/ui/api/admin/decisions", params={"since": "yesterday"})
    assert bad.status_code == 400
