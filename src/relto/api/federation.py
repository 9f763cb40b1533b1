"""relto's federation endpoints (docs/federation.md): another node's token reads the feed of what it may
receive, long-polling at the head; people's tokens are refused."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time

import orjson
from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from relto.api.auth import party_of
from relto.domain.errors import Forbidden, InvalidRequest
from relto.node import Node
from relto.node.federation import FeedBatch
from relto.stream.feed import Feeds

FEDERATION = "/relto/v1/federation/"
JSON = "application/json"
_MAX_BATCH = 5000  # events in one answer
_MAX_WAIT = 30.0  # seconds a caught-up reader may be held waiting for a write


def add_federation_routes(app: FastAPI, node: Node, feeds: Feeds) -> None:
    """Register the federation endpoints on the node's app."""

    @app.get(FEDERATION)
    async def federation_info(request: Request) -> Response:
        """Who this node is, for another node's token (a peer checks it is talking to the node it added)."""

        def who() -> bytes:
            party = party_of(request)
            if not party.is_node:
                raise Forbidden("this endpoint is for other nodes' tokens (relto token issue --peer or --relay-for)")
            info = node.info
            doc = {"id": info.node_id, "nation": info.nation, "title": info.title, "kind": party.kind}
            return orjson.dumps(doc)

        return Response(await run_in_threadpool(who), media_type=JSON)

    @app.get(FEDERATION + "events/")
    async def federation_events(request: Request) -> Response:
        """The next batch of what this node token may receive, after its sealed cursor (`next`); with `wait`
        seconds, a caught-up reader is answered as soon as something is written (or with nothing then)."""
        params = request.query_params
        try:
            limit = min(max(int(params.get("limit", "1000")), 1), _MAX_BATCH)
            wait = float(params.get("wait", "0"))
            if math.isnan(wait):  # NaN passes any clamp, and a NaN timeout is an error deep in asyncio
                raise ValueError(wait)
            wait = min(max(wait, 0.0), _MAX_WAIT)
        except ValueError:
            raise InvalidRequest("limit must be a whole number and wait a number of seconds") from None
        cursor, requester = params.get("next") or None, params.get("from", "")

        def read(after: str | None) -> FeedBatch:
            return node.federation.feed(party_of(request), after, limit, requester)

        deadline = time.monotonic() + wait
        poll = node.settings.stream_poll_ms / 1000
        known = None  # the collections listed by the first read: a new one is news (peers create it)
        while True:
            pulse = feeds.pulse  # taken before reading, so a write between the read and the wait wakes us
            # The token is checked on every read (cached for a second): a revoked one gets nothing more.
            batch = await run_in_threadpool(read, cursor)
            remaining = deadline - time.monotonic()
            first_contact = not params.get("next")
            if batch.count or batch.more or remaining <= 0 or first_contact or known not in (None, batch.collections):
                return Response(batch.body, media_type=JSON)
            known = batch.collections
            cursor = batch.next  # read on from where this (empty) read got
            # Woken by this process's writes (and PostgreSQL's doorbell); polls too, for other processes' writes.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(pulse.wait(), min(remaining, poll))
