"""The analyst web UI (docs/ui.md): the sign-in page, the app shell and its static files, the session, and the
JSON API the pages call under /ui/api/. Every read goes through the Node (the one policy engine) and is
recorded in the decision log under a "ui." path; the operator endpoints are in api/ui_admin.py.
"""

from __future__ import annotations

import asyncio
import html
import mimetypes
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

import orjson
from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from relto.api.drafts import parse_draft
from relto.api.marking import mark
from relto.api.session import COOKIE, SIGNIN_COOKIE, Sessions, new_key, new_signin_nonce
from relto.api.sse import EventStream
from relto.api.ui_admin import add_ui_admin_routes
from relto.domain import redact
from relto.domain.banner import banner
from relto.domain.communities import membership_index
from relto.domain.errors import Forbidden, InvalidRequest, MalformedJSON, NotFound, ReltoError, Unauthenticated
from relto.domain.parties import Party
from relto.domain.tearline import Marked
from relto.node import Node
from relto.store.base import StoredVersion
from relto.stream.feed import Feeds
from relto.stream.subscriber import OPENINGS_AT_ONCE, Subscription, frames, parse_after
from relto.taxii.filters import Filters

UI_API = "/ui/api/"
JSON = "application/json"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
PUBLIC_STATIC = frozenset({"ui.css", "favicon.svg"})  # what the sign-in page needs; every other file needs a session
WINDOW_WRITES = 5000  # the feed looks at the versions among the node's last this many writes
WINDOW_ITEMS = 500  # and keeps the newest this many of them
_MAX_FORM = 16 * 1024


class UIHeaders:
    """Security headers on every UI response (the shell, its files, its API), and no Basic-auth prompt."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not (path == "/" or path.startswith("/ui/")):
            await self.app(scope, receive, send)
            return
        cache = b"no-cache" if path.startswith("/ui/static/") else b"no-store"

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                drop = {b"www-authenticate", b"cache-control"}  # a 401 here must not pop up the browser's dialog
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in drop]
                headers += [
                    (b"content-security-policy", CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-frame-options", b"DENY"),
                    (b"cache-control", cache),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, wrapped)


class UISession:
    """Who is signed in: the session cookie opened and its token authenticated again on every request."""

    def __init__(self, node: Node, sessions: Sessions) -> None:
        self.node = node
        self.sessions = sessions

    def party(self, request: Request) -> tuple[Party, str]:
        """The signed-in party and its token; Unauthenticated without a valid session."""
        token = self.sessions.open(request.cookies.get(COOKIE))
        if token is None:
            raise Unauthenticated("sign in: there is no session, or it has expired")
        party = self.node.authenticate(token)  # a revoked token ends the session here
        if party.is_node:
            raise Unauthenticated("node tokens are for federation, not for the UI")
        return party, token

    def writer(self, request: Request) -> Party:
        """The signed-in party of a state-changing request, whose X-CSRF-Token must match its session."""
        party, _ = self.party(request)
        if not self.sessions.check_csrf(request.cookies.get(COOKIE), request.headers.get("x-csrf-token")):
            raise Forbidden("missing or wrong X-CSRF-Token header: reload the page and try again")
        return party

    def admin(self, request: Request, write: bool = False) -> Party:
        """The signed-in admin (403 for anyone else)."""
        party = self.writer(request) if write else self.party(request)[0]
        if not party.admin:
            raise Forbidden("operator pages are for admin tokens")
        return party


def json_response(doc: Any, status: int = 200) -> Response:
    """A JSON answer of the UI's API."""
    return Response(orjson.dumps(doc), status_code=status, media_type=JSON)


async def json_body(request: Request, limit: int = 1024 * 1024) -> Any:
    """The request's JSON body (bounded)."""
    body = await request.body()
    if len(body) > limit:
        raise InvalidRequest(f"the body passes {limit} bytes")
    try:
        return orjson.loads(body or b"{}")
    except orjson.JSONDecodeError as exc:
        raise MalformedJSON(f"the request body is not valid JSON: {exc}") from None


def web_file(name: str) -> bytes | None:
    """A file of the relto.web package (None when there is none by that name)."""
    parts = name.split("/")
    if not name or any(p in ("", ".", "..") or p.startswith(".") for p in parts):
        return None
    item = resources.files("relto.web")
    for p in parts:
        item = item / p
    return item.read_bytes() if item.is_file() else None


def page(name: str, **values: str) -> bytes:
    """An HTML page of relto.web with {{name}} placeholders replaced by escaped values."""
    text = (web_file(name) or b"").decode()
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", html.escape(value))
    return text.encode()


def add_ui_routes(app: FastAPI, node: Node, feeds: Feeds) -> UISession:
    """Register the UI's pages, session and JSON API on the node's app."""
    sessions = Sessions(node.store.secret("session", new_key))
    ui = UISession(node, sessions)
    stream_openings = asyncio.Semaphore(OPENINGS_AT_ONCE)
    app.add_middleware(UIHeaders)

    def signin_page(request: Request, error: str = "", status: int = 200) -> Response:
        nonce = request.cookies.get(SIGNIN_COOKIE) or new_signin_nonce()
        body = page("signin.html", csrf=sessions.csrf(nonce, "signin"), error=error, title=node.info.title)
        response = Response(body, status_code=status, media_type="text/html; charset=utf-8")
        secure = request.url.scheme == "https"
        response.set_cookie(SIGNIN_COOKIE, nonce, httponly=True, samesite="strict", path="/", secure=secure)
        return response

    @app.get("/")
    async def home(request: Request) -> Response:
        """The app shell for a signed-in person, the sign-in page for anyone else."""
        try:
            await run_in_threadpool(ui.party, request)
        except ReltoError:
            return signin_page(request)
        csrf = sessions.csrf(request.cookies.get(COOKIE) or "")
        return Response(page("app.html", csrf=csrf, title=node.info.title), media_type="text/html; charset=utf-8")

    @app.post("/ui/session")
    async def sign_in(request: Request) -> Response:
        """Exchange a token (form field `token`) for a session cookie; the form carries its CSRF value."""
        body = await request.body()
        if len(body) > _MAX_FORM:
            return signin_page(request, "the form is too large", 413)
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        if not sessions.check_csrf(request.cookies.get(SIGNIN_COOKIE), form.get("csrf"), "signin"):
            return signin_page(request, "the sign-in form expired: try again", 403)
        token = form.get("token", "").strip()
        try:
            party = await run_in_threadpool(node.authenticate, token)
            if party.is_node:
                raise Unauthenticated("node tokens are for federation")
        except ReltoError:
            return signin_page(request, "that token was refused: check it, or ask your operator for one", 401)
        response = RedirectResponse("/", status_code=303)
        secure = request.url.scheme == "https"
        response.set_cookie(
            COOKIE,
            sessions.seal(token),
            max_age=sessions.lifetime,
            httponly=True,
            samesite="strict",
            path="/",
            secure=secure,
        )
        response.delete_cookie(SIGNIN_COOKIE, path="/", httponly=True, samesite="strict", secure=secure)
        return response

    @app.post("/ui/logout")
    async def sign_out(request: Request) -> Response:
        """End the session (the cookie is cleared; the token itself stays valid)."""
        cookie = request.cookies.get(COOKIE)
        live = sessions.open(cookie) is not None
        if live and not sessions.check_csrf(cookie, request.headers.get("x-csrf-token")):
            raise Forbidden("missing or wrong X-CSRF-Token header")
        response = json_response({})
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return response

    @app.get("/ui/static/{path:path}")
    async def static(request: Request, path: str) -> Response:
        """The UI's files: those of the sign-in page for anyone, the rest for a session."""
        if path not in PUBLIC_STATIC:
            await run_in_threadpool(ui.party, request)
        body = web_file("static/" + path)
        if body is None:
            raise NotFound(f"no file {path!r}")
        kind = mimetypes.guess_type(path)[0] or "application/octet-stream"
        if path.endswith(".js"):
            kind = "text/javascript"
        return Response(body, media_type=kind)

    def get(path: str, handler: Callable[[Party, dict[str, str]], Any]) -> None:
        async def endpoint(request: Request) -> Response:
            def work() -> Any:
                party, _ = ui.party(request)
                return handler(party, dict(request.query_params))

            return json_response(await run_in_threadpool(work))

        endpoint.__name__ = "ui_" + path.strip("/").replace("/", "_")
        app.add_api_route(UI_API + path, endpoint, methods=["GET"])

    def post(path: str, handler: Callable[[Party, Any], Any]) -> None:
        async def endpoint(request: Request) -> Response:
            party = await run_in_threadpool(ui.writer, request)
            doc = await json_body(request)
            return json_response(await run_in_threadpool(handler, party, doc))

        endpoint.__name__ = "ui_" + path.strip("/").replace("/", "_")
        app.add_api_route(UI_API + path, endpoint, methods=["POST"])

    reader = Reader(node)

    def me(party: Party, _: dict[str, str]) -> Any:
        return {
            "nation": party.nation,
            "clearance": node.ladder.name(party.clearance),
            "organisation": party.organisation,
            "name": party.name,
            "admin": party.admin,
            "can_write": party.can_write,
            "node": {"title": node.info.title, "nation": node.info.nation},
            "levels": list(node.ladder.levels),
            "communities": sorted(c.name for c in node.communities()),
        }

    def collections(party: Party, _: dict[str, str]) -> Any:
        return {
            "collections": [{"id": c.id, "title": c.title, "description": c.description} for c in node.collections()]
        }

    get("me", me)
    get("collections", collections)
    get("feed", reader.feed)
    get("object", reader.object)
    post("publish", lambda party, doc: publish(node, party, doc))
    post("preview", lambda party, doc: preview(node, party, doc))

    @app.get(UI_API + "stream")
    async def ui_stream(request: Request) -> Response:
        """The live feed: the same stream machinery as /api/collections/{id}/stream/, with the session's token."""
        collection = request.query_params.get("collection") or ""
        resume = request.headers.get("last-event-id") or None

        def prepare() -> tuple[str, int]:
            _, token = ui.party(request)
            if not collection:
                raise InvalidRequest("say which collection: ?collection=ID")
            node.collection(collection)
            return token, parse_after(node, collection, resume, None)

        # As in /stream/: two at a time on the loop's small pool, not a request thread per stream opening.
        async with stream_openings:
            token, start = await asyncio.to_thread(prepare)
        sub = Subscription(token, collection, start)
        feed = await feeds.feed(collection)
        chunks = frames(node, feed, sub, heartbeat=node.settings.stream_heartbeat_seconds)
        return EventStream(chunks, stall_seconds=node.settings.stream_stall_seconds)

    add_ui_admin_routes(node, get, post)
    return ui


class Reader:
    """The UI's reads: bounded windows of a collection, released through the Node and summarised."""

    def __init__(self, node: Node) -> None:
        self.node = node

    def window(
        self, party: Party, collection: str, types: tuple[str, ...], path: str
    ) -> list[tuple[StoredVersion, bytes]]:
        """The newest versions released to the party among the node's last WINDOW_WRITES writes, newest first."""
        node = self.node
        kept: deque[tuple[StoredVersion, bytes]] = deque(maxlen=WINDOW_ITEMS)
        filters = Filters(limit=WINDOW_ITEMS, after_seq=max(0, node.head() - WINDOW_WRITES), types=types)
        while True:
            got = node.read(party, collection, filters, path=path)
            kept.extend(zip(got.rows, got.bodies, strict=True))
            if not got.more or got.next is None:
                break
            filters = Filters(limit=WINDOW_ITEMS, next=got.next, types=types)
        return sorted(kept, key=lambda rb: rb[0].seq, reverse=True)

    def summary(self, row: StoredVersion, body: bytes) -> dict[str, Any]:
        """What the feed and the map show of one released version."""
        obj = orjson.loads(body)
        text = obj.get("description") or obj.get("content") or ""
        title = obj.get("name") or obj.get("pattern") or (text[:80] if text else "") or obj.get("relationship_type")
        item: dict[str, Any] = {
            "id": row.stix_id,
            "type": row.type,
            "title": str(title or row.type),
            "summary": str(text)[:300],
            "modified": row.version_text,
            "originator": row.originator,
            "banner": banner(self.node.marking_set(row.marking_set), self.node.ladder).as_dict(),
            "refs": [r for r in redact.analyse(obj).references if r != row.stix_id],
        }
        if row.type == "location" and isinstance(obj.get("latitude"), int | float):
            item["location"] = [obj["latitude"], obj["longitude"]]
        if row.type == "relationship":
            item["relationship"] = [obj.get("source_ref"), obj.get("relationship_type"), obj.get("target_ref")]
        return item

    def feed(self, party: Party, params: dict[str, str]) -> Any:
        """GET /ui/api/feed: newest first, filtered by type, originator and text (or only the objects `id` names)."""
        collection = params.get("collection") or ""
        if not collection:
            raise InvalidRequest("say which collection: ?collection=ID")
        try:
            limit = min(max(int(params.get("limit") or 100), 1), WINDOW_ITEMS)
        except ValueError:
            raise InvalidRequest("limit must be a whole number") from None
        types = tuple(t for t in (params.get("type") or "").split(",") if t)
        originator = (params.get("originator") or "").strip().upper()
        query = (params.get("q") or "").strip().lower()
        ids = tuple(i for i in (params.get("id") or "").split(",") if i)[:WINDOW_ITEMS]
        if ids:  # the live feed asks for what a stream event named, not the whole window again
            got = self.node.read(party, collection, Filters(limit=len(ids), ids=ids, types=types), path="ui.feed")
            rows = sorted(zip(got.rows, got.bodies, strict=True), key=lambda rb: rb[0].seq, reverse=True)
        else:
            rows = self.window(party, collection, types, "ui.feed")
        items = []
        for row, body in rows:
            if row.type == "marking-definition" and not types:
                continue  # the vocabulary of markings, not intelligence: shown as banners
            if originator and row.originator != originator:
                continue
            if query and query not in body.decode("utf-8", "replace").lower():
                continue
            items.append(self.summary(row, body))
            if len(items) >= limit:
                break
        return {"items": items}

    def object(self, party: Party, params: dict[str, str]) -> Any:
        """GET /ui/api/object: the released version, its banner, versions, related objects and originator."""
        node = self.node
        collection, object_id = params.get("collection") or "", params.get("id") or ""
        if not collection or not object_id:
            raise InvalidRequest("say which object: ?collection=ID&id=STIX_ID")
        page = node.read(party, collection, Filters(limit=1, ids=(object_id,)), path="ui.object")
        if not page.rows:
            raise NotFound(f"no object {object_id} in this collection")
        row, body = page.rows[0], page.bodies[0]
        versions = node.read(
            party, collection, Filters(limit=100, ids=(object_id,), versions=("all",)), path="ui.versions"
        )
        obj = orjson.loads(body)
        refs = [r for r in redact.analyse(obj).references if r != object_id]
        related: list[dict[str, Any]] = []
        if refs:
            found = node.read(party, collection, Filters(limit=len(refs), ids=tuple(refs[:100])), path="ui.related")
            related += [
                {**self.summary(r, b), "via": "referenced"} for r, b in zip(found.rows, found.bodies, strict=True)
            ]
        naming = ("relationship", "sighting", "report", "note", "opinion", "grouping")
        for r, b in self.window(party, collection, naming, "ui.related"):
            if r.stix_id != object_id and object_id in redact.analyse(orjson.loads(b)).references:
                related.append({**self.summary(r, b), "via": "names it"})
        return {
            "object": obj,
            "banner": banner(node.marking_set(row.marking_set), node.ladder).as_dict(),
            "originator": row.originator,
            "versions": [
                {
                    "modified": v.version_text,
                    "banner": banner(node.marking_set(v.marking_set), node.ladder).as_dict(),
                }
                for v in sorted(versions.rows, key=lambda v: v.version, reverse=True)
            ],
            "related": related,
        }


def marked_draft(node: Node, doc: Any) -> tuple[str, Marked, str]:
    """The publish form marked as /api/mark/ marks objects: (collection, the marked objects, the item's id)."""
    collection, request, item_id = parse_draft(doc)
    marked = mark(request, node.ladder, membership_index(node.communities(), datetime.now(UTC).date()))
    return collection, marked, item_id


def publish(node: Node, party: Party, doc: Any) -> Any:
    """POST /ui/api/publish: the form's objects marked and published through the Node; the TAXII status."""
    collection, marked, item_id = marked_draft(node, doc)
    status = node.publish(party, collection, marked.envelope()["objects"])
    return {"id": item_id, "status": status, "warnings": list(marked.warnings)}


def preview(node: Node, party: Party, doc: Any) -> Any:
    """POST /ui/api/preview: what `nation` (and `clearance`) would receive of the draft; nothing is stored."""
    if not isinstance(doc, dict) or not isinstance(doc.get("nation"), str) or not doc["nation"]:
        raise InvalidRequest('say whose view to preview: "nation": "UKR"')
    clearance = doc.get("clearance") or None
    draft = {k: v for k, v in doc.items() if k not in ("nation", "clearance")}
    _, marked, _ = marked_draft(node, draft)
    objects = [*marked.definitions, *marked.objects]
    judged = node.explain_draft(party, objects, doc["nation"], clearance)
    return {
        "nation": doc["nation"].upper(),
        "clearance": clearance or node.ladder.levels[-1],
        "objects": [
            {
                "id": o["id"],
                "type": o["type"],
                "released": j.released is not None,
                "object": j.released,
                "reasons": list(j.reasons),
            }
            for o, j in zip(marked.objects, judged, strict=True)
        ],
        "warnings": list(marked.warnings),
    }
