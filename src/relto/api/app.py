"""The app factory: TAXII 2.1 routes over a Node. Section numbers refer to the TAXII 2.1 specification."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match

from relto import __version__
from relto.api.access import Measured
from relto.api.auth import party_of, token_from
from relto.api.errors import error_response, handle_relto_error
from relto.api.federation import add_federation_routes
from relto.api.marking import mark, parse_mark_request
from relto.api.metrics import Metrics
from relto.api.monitoring import add_monitoring_routes
from relto.api.sse import EventStream
from relto.api.ui import add_ui_routes
from relto.domain.communities import membership_index
from relto.domain.errors import InvalidEnvelope, InvalidRequest, MalformedJSON, PayloadTooLarge, ReltoError
from relto.domain.markings import relto_extension_definition, relto_identity
from relto.domain.parties import Party
from relto.domain.timestamps import format_timestamp
from relto.node import Node, Page
from relto.node.drafts import draft_answer, draft_objects
from relto.stream.doorbell import listen
from relto.stream.feed import Feeds
from relto.stream.subscriber import OPENINGS_AT_ONCE, Subscription, frames, parse_after
from relto.taxii import envelopes
from relto.taxii.filters import Filters, parse_filters
from relto.taxii.media import (
    STIX,
    TAXII,
    check_accept,
    check_content_type,
    check_json_content_type,
    check_stream_accept,
)

log = logging.getLogger("relto")

API_ROOT = "/api/"
_OBJECT_PARAMS = {"added_after", "limit", "next", "match[version]", "match[spec_version]"}
_DELETE_PARAMS = {"match[version]", "match[spec_version]"}


def taxii(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A response in the TAXII 2.1 media type."""
    return Response(body, status_code=status, media_type=TAXII, headers=headers)


def create_app(node: Node) -> FastAPI:
    """Build the ASGI app for one node."""
    settings = node.settings
    budget = ByteBudget(settings.publish_bytes_at_once)
    feeds = Feeds(node, ring_size=settings.stream_ring_size, poll_seconds=settings.stream_poll_ms / 1000)
    stream_openings = asyncio.Semaphore(OPENINGS_AT_ONCE)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        ringer = feeds.threadsafe_ringer(asyncio.get_running_loop())
        node.on_write.append(ringer)
        bell = node.doorbell()
        listener = asyncio.create_task(listen(bell.url, bell.channel, feeds.ring)) if bell else None
        try:
            yield
        finally:
            node.on_write.remove(ringer)
            if listener is not None:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener
            await feeds.close()
            await run_in_threadpool(node.decisions.close)

    app = FastAPI(
        title="relto", version=__version__, docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan
    )
    app.state.node = node
    metrics = app.state.metrics = Metrics(node, feeds)
    app.add_middleware(Measured, metrics=metrics)
    app.add_exception_handler(ReltoError, handle_relto_error)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        what = {404: "no such endpoint", 405: "method not allowed on this endpoint"}.get(exc.status_code, "")
        response = error_response(exc.status_code, str(exc.detail), what or str(exc.detail))
        response.headers.update(exc.headers or {})
        if exc.status_code == 405:
            # Each method is its own route: Allow must list the methods of every route on this path.
            methods: set[str] = set()
            for route in app.router.routes:
                if route.matches(request.scope)[0] != Match.NONE:
                    methods |= getattr(route, "methods", None) or set()
            response.headers["Allow"] = ", ".join(sorted(methods - {"HEAD"}))
        return response

    app.add_exception_handler(StarletteHTTPException, http_error)

    async def unexpected(request: Request, exc: Exception) -> Response:
        # A bug, not bad input: log it with its traceback, answer with a TAXII body that reveals nothing.
        log.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(500, "Internal error", "an unexpected error on the server; it has been logged")

    app.add_exception_handler(Exception, unexpected)

    def filters(request: Request, allowed: set[str] | None = None, versions: tuple[str, ...] = ("last",)) -> Filters:
        s = node.settings
        return parse_filters(
            request.query_params.multi_items(),
            default_limit=s.default_page_size,
            max_limit=s.max_page_size,
            allowed=allowed,
            default_versions=versions,
        )

    def paged(page: Page, render: Callable[[Page], bytes]) -> Response:
        """A page of versions, each object's in version order; the headers give its earliest and latest
        date_added (3.2), so added_after paging from the latest skips nothing."""
        order = envelopes.version_order(page.rows)
        page = Page(
            [page.rows[i] for i in order], [page.bodies[i] for i in order], page.more, page.next, page.last_date_added
        )
        headers = {}
        if page.rows:
            added = [r.date_added for r in page.rows]
            headers["X-TAXII-Date-Added-First"] = format_timestamp(min(added))
            headers["X-TAXII-Date-Added-Last"] = format_timestamp(max(added))
        elif page.last_date_added is not None:
            # Nothing released, but the read got this far: an added_after client moves on from here.
            headers["X-TAXII-Date-Added-First"] = headers["X-TAXII-Date-Added-Last"] = format_timestamp(
                page.last_date_added
            )
        return taxii(render(page), headers=headers)

    def get(path: str) -> Callable[[Callable[..., Any]], Callable[..., Awaitable[Response]]]:
        """Register a GET route whose sync handler runs in the thread pool after Accept and auth checks."""

        def register(handler: Callable[..., Response]) -> Callable[..., Awaitable[Response]]:
            async def endpoint(request: Request) -> Response:
                check_accept(request.headers.get("accept"))
                return await run_in_threadpool(handler, request, **request.path_params)

            endpoint.__name__ = handler.__name__
            endpoint.__doc__ = handler.__doc__
            app.add_api_route(path, endpoint, methods=["GET"])
            return endpoint

        return register

    add_federation_routes(app, node, feeds)
    add_monitoring_routes(app, node, metrics)
    add_ui_routes(app, node, feeds)

    @get("/taxii2/")
    def discovery(request: Request) -> Response:
        """4.1 Server Discovery."""
        party_of(request)
        root = str(request.base_url).rstrip("/") + API_ROOT
        doc = {
            "title": node.info.title,
            "description": f"relto node of {node.info.nation}: STIX 2.1 releasable to each nation exactly",
            "default": root,
            "api_roots": [root],
        }
        return taxii(orjson.dumps(doc))

    @get(API_ROOT)
    def api_root(request: Request) -> Response:
        """4.2 Get API Root Information."""
        party_of(request)
        doc = {
            "title": f"{node.info.title} API root",
            "versions": [TAXII],
            "max_content_length": node.settings.max_content_length,
        }
        return taxii(orjson.dumps(doc))

    def status(request: Request, status_id: str) -> Response:
        """4.3 Get Status (answered with and without the trailing slash)."""
        return taxii(node.status(party_of(request), status_id))

    get(API_ROOT + "status/{status_id}/")(status)
    get(API_ROOT + "status/{status_id}")(status)

    def collection_doc(record: Any, can_write: bool) -> dict[str, Any]:
        return {
            "id": record.id,
            "title": record.title,
            "description": record.description,
            "can_read": True,
            "can_write": can_write,
            "media_types": [STIX],
        }

    @get(API_ROOT + "collections/")
    def collections(request: Request) -> Response:
        """5.1 Get Collections, sorted by id."""
        party = party_of(request)
        docs = [collection_doc(c, party.can_write) for c in node.collections()]
        return taxii(orjson.dumps({"collections": docs} if docs else {}))

    @get(API_ROOT + "collections/{collection_id}/")
    def collection(request: Request, collection_id: str) -> Response:
        """5.2 Get a Collection."""
        party = party_of(request)
        return taxii(orjson.dumps(collection_doc(node.collection(collection_id), party.can_write)))

    @get(API_ROOT + "collections/{collection_id}/manifest/")
    def manifest(request: Request, collection_id: str) -> Response:
        """5.3 Get Object Manifests."""
        page = node.read(party_of(request), collection_id, filters(request), path="taxii.manifest")
        return paged(page, lambda p: envelopes.manifest(p.rows, p.more, p.next))

    @get(API_ROOT + "collections/{collection_id}/objects/")
    def objects(request: Request, collection_id: str) -> Response:
        """5.4 Get Objects."""
        page = node.read(party_of(request), collection_id, filters(request))
        return paged(page, lambda p: envelopes.envelope(p.bodies, p.more, p.next))

    @app.post(API_ROOT + "collections/{collection_id}/objects/")
    async def add_objects(request: Request, collection_id: str) -> Response:
        """5.5 Add Objects: stored before we answer, so the status is complete."""
        check_accept(request.headers.get("accept"))
        party = await run_in_threadpool(party_of, request)
        check_content_type(request.headers.get("content-type"))
        # Handed over in a list that _publish empties, so that no name here keeps the bytes alive once parsed.
        body = [await _read_body(request, node.settings.max_content_length)]
        # Parsing and storing take many times the body's bytes: the process's budget bounds the bytes at that
        # stage, so concurrent posts wait their turn instead of multiplying the ceiling (docs/configuration.md).
        # It is taken once the body is here, so a client that sends slowly holds no one up.
        async with budget.hold(len(body[0])):
            status = await run_in_threadpool(_publish, node, party, collection_id, body)
        return taxii(status, status=202)

    @get(API_ROOT + "collections/{collection_id}/objects/{object_id}/")
    def get_object(request: Request, collection_id: str, object_id: str) -> Response:
        """5.6 Get an Object."""
        page = node.read_object(party_of(request), collection_id, object_id, filters(request, _OBJECT_PARAMS))
        return paged(page, lambda p: envelopes.envelope(p.bodies, p.more, p.next))

    @app.delete(API_ROOT + "collections/{collection_id}/objects/{object_id}/")
    async def delete_object(request: Request, collection_id: str, object_id: str) -> Response:
        """5.7 Delete an Object."""
        check_accept(request.headers.get("accept"))

        def work() -> None:
            party = party_of(request)
            node.delete_object(party, collection_id, object_id, filters(request, _DELETE_PARAMS, ("all",)))

        await run_in_threadpool(work)
        return taxii(b"{}")

    @get(API_ROOT + "collections/{collection_id}/objects/{object_id}/versions/")
    def versions(request: Request, collection_id: str, object_id: str) -> Response:
        """5.8 Get Object Versions."""
        allowed = {"added_after", "limit", "next", "match[spec_version]"}
        page = node.object_versions(party_of(request), collection_id, object_id, filters(request, allowed))
        return paged(page, lambda p: envelopes.versions(p.rows, p.more, p.next))

    @app.get(API_ROOT + "collections/{collection_id}/stream/")
    async def stream(request: Request, collection_id: str) -> Response:
        """relto's live stream: server-sent events of every version (and deletion) releasable to the caller."""
        check_stream_accept(request.headers.get("accept"))
        params = request.query_params.multi_items()
        parsed = parse_filters(
            params, default_limit=1, max_limit=1, allowed={"added_after", "match[type]", "match[id]"}
        )
        resume = request.headers.get("last-event-id") or request.query_params.get("after")
        token = token_from(request.headers.get("authorization")) or ""

        def prepare() -> int:
            node.authenticate(token)
            node.collection(collection_id)
            return parse_after(node, collection_id, resume, parsed.added_after)

        # Two at a time, on the loop's own small pool (as the stream's later reads): many streams opening at
        # once must not grow a thread pool by a thread each (a stack and an arena: memory per subscriber).
        async with stream_openings:
            start = await asyncio.to_thread(prepare)
        sub = Subscription(token, collection_id, start, frozenset(parsed.types), frozenset(parsed.ids))
        feed = await feeds.feed(collection_id)
        chunks = frames(node, feed, sub, heartbeat=settings.stream_heartbeat_seconds)
        return EventStream(_counted(chunks, metrics), stall_seconds=settings.stream_stall_seconds)

    @get(API_ROOT + "collections/{collection_id}/objects/{object_id}/preview/")
    def preview(request: Request, collection_id: str, object_id: str) -> Response:
        """relto's own: what a nation and clearance would receive of an object (its authors and admins)."""
        party = party_of(request)
        nation = request.query_params.get("nation")
        if not nation:
            raise InvalidRequest("say whose view to preview: ?nation=KOR (and optionally &clearance=SECRET)")
        doc = node.preview(party, collection_id, object_id, nation, request.query_params.get("clearance"))
        return taxii(orjson.dumps(doc))

    @get("/relto/extension-definition/")
    def extension_definition(request: Request) -> Response:
        """relto's own: the extension-definition of the releasability marking and its author identity."""
        party_of(request)
        bundle = {"objects": [relto_identity(), relto_extension_definition()]}
        return taxii(orjson.dumps(bundle))

    @app.post(API_ROOT + "mark/")
    async def mark(request: Request) -> Response:
        """relto's own: mark objects for a tearline (docs/tearlines.md) and answer the envelope; stores nothing."""
        check_accept(request.headers.get("accept"))
        await run_in_threadpool(party_of, request)
        check_json_content_type(request.headers.get("content-type"))
        body = await _read_body(request, node.settings.max_content_length)
        async with budget.hold(len(body)):  # parsing takes many times the bytes, as for a publish
            return taxii(await run_in_threadpool(_marked, node, body))

    @app.post(API_ROOT + "preview/")
    async def preview_draft(request: Request) -> Response:
        """relto's own: what a nation would receive of the token's nation's draft, and why; stores nothing."""
        check_accept(request.headers.get("accept"))
        party = await run_in_threadpool(party_of, request)
        check_json_content_type(request.headers.get("content-type"))
        body = await _read_body(request, node.settings.max_content_length)
        async with budget.hold(len(body)):
            return taxii(await run_in_threadpool(_previewed, node, party, body))

    return app


async def _counted(chunks: AsyncIterator[bytes], metrics: Metrics) -> AsyncIterator[bytes]:
    """A subscriber's frames, counted in the live subscribers gauge while they flow."""
    metrics.subscribers.inc()
    try:
        async for chunk in chunks:
            yield chunk
    finally:
        metrics.subscribers.dec()


def _previewed(node: Node, party: Party, body: bytes) -> bytes:
    """POST /api/preview/: each object of the draft as `nation` would receive it from the token's nation."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedJSON(f"the request body is not valid JSON: {exc}") from None
    shape = '{"objects": [...], "nation": "UKR", "clearance": "SECRET" (optional)}'
    if not isinstance(doc, dict) or set(doc) - {"objects", "nation", "clearance"}:
        raise InvalidRequest(f"the body must be {shape}")
    nation, clearance = doc.get("nation"), doc.get("clearance")
    if not isinstance(nation, str) or not nation:
        raise InvalidRequest(f'say whose view to preview: "nation": "UKR"; the body is {shape}')
    if clearance is not None and not isinstance(clearance, str):
        raise InvalidRequest('"clearance" must be a level name such as "SECRET"')
    if not isinstance(doc.get("objects"), list):
        raise InvalidRequest(f'"objects" must be a list of STIX objects; the body is {shape}')
    objects = draft_objects(doc["objects"])
    target, level = node.preview_party(nation, clearance)
    judged = node.explain_draft(party, objects, nation, clearance)
    return orjson.dumps(draft_answer(judged, target, level, clearance is None, party.nation))


def _marked(node: Node, body: bytes) -> bytes:
    """POST /api/mark/: the marked envelope, with the advice for the analyst in "warnings"."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedJSON(f"the request body is not valid JSON: {exc}") from None
    request = parse_mark_request(doc)
    marked = mark(request, node.ladder, membership_index(node.communities(), datetime.now(UTC).date()))
    return orjson.dumps({**marked.envelope(), "warnings": list(marked.warnings)})


# An envelope may hold at most one JSON object or array per this many bytes (plus a few): see _publish.
_BYTES_PER_CONTAINER = 32
_CONTAINERS_ALWAYS_ALLOWED = 64


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is {declared} bytes; this server takes at most {limit} (max_content_length)")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body passes {limit} bytes, this server's max_content_length")
        chunks.append(chunk)
    return b"".join(chunks)


def _publish(node: Node, party: Party, collection_id: str, body: list[bytes]) -> bytes:
    """Parse and publish a posted envelope (the one item of `body`, dropped once parsed); the status as bytes.

    What bounds the memory a request takes (docs/configuration.md): JSON objects and arrays cost the parser up to
    ~60 times their bytes when packed densely ({} is 3 bytes, a dict 64-184), and STIX never packs them so (one
    per ~100 bytes; ATT&CK's densest object one per 83), so denser bodies are refused before they are parsed; and
    every object costs the node a few KiB whatever its size, so max_envelope_objects bounds envelopes of
    millions of tiny entries.
    """
    raw = body.pop()
    containers = raw.count(b"{") + raw.count(b"[")
    if containers > _CONTAINERS_ALWAYS_ALLOWED + len(raw) // _BYTES_PER_CONTAINER:
        raise InvalidEnvelope(
            f"the envelope packs {containers} JSON objects and arrays into {len(raw)} bytes, more than one per "
            f"{_BYTES_PER_CONTAINER} bytes, which STIX never does: refused before parsing"
        )
    objects = envelopes.parse_envelope(raw)
    del raw
    most = node.settings.max_envelope_objects
    if len(objects) > most:
        raise PayloadTooLarge(
            f"the envelope holds {len(objects)} objects; this server takes at most {most} per request "
            "(max_envelope_objects): post them in several envelopes"
        )
    return orjson.dumps(node.publish(party, collection_id, objects))


class ByteBudget:
    """Bytes of posted envelopes being read, parsed and stored at once: later requests wait, first come first served.

    A request larger than the whole budget takes all of it (it runs alone) rather than waiting for ever.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.free = capacity
        self._waiting: deque[tuple[int, asyncio.Future[None]]] = deque()

    @asynccontextmanager
    async def hold(self, size: int) -> AsyncIterator[None]:
        """Hold `size` bytes of the budget (at most all of it) for the block, waiting behind earlier requests."""
        size = min(size, self.capacity)
        if self._waiting or size > self.free:
            turn = asyncio.get_running_loop().create_future()
            self._waiting.append((size, turn))
            try:
                await turn
            except asyncio.CancelledError:
                if turn.cancelled():
                    self._waiting.remove((size, turn))
                    self._wake()
                else:  # granted in the same instant it was cancelled
                    self._give_back(size)
                raise
        else:
            self.free -= size
        try:
            yield
        finally:
            self._give_back(size)

    def _give_back(self, size: int) -> None:
        self.free += size
        self._wake()

    def _wake(self) -> None:
        while self._waiting and self._waiting[0][0] <= self.free:
            size, turn = self._waiting.popleft()
            self.free -= size
            turn.set_result(None)
