"""Health, readiness and metrics (docs/operations.md#monitoring): for load balancers, orchestrators and Prometheus.

/healthz needs no token and says only that the process answers. /readyz says "ready" or "not ready" to anyone
(503 when not ready) and adds the details for an admin token: the database, the schema revision against the code's,
the peers and the decision log's backlog; never data, never secrets. /metrics is for admin tokens.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import FastAPI
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from relto.api.auth import party_of
from relto.api.metrics import Metrics
from relto.domain.errors import Forbidden, ReltoError
from relto.federation.peers import peer_view
from relto.node import Node
from relto.store.migrate import head_revision

JSON = "application/json"
_PEER_FIELDS = ("name", "state", "lag_seconds", "last_error")


def add_monitoring_routes(app: FastAPI, node: Node, metrics: Metrics) -> None:
    """Register /healthz, /readyz and /metrics on the node's app."""
    head = head_revision()

    @app.get("/healthz")
    async def healthz() -> Response:
        """The process is up and answers (nothing else is looked at)."""
        return Response(b'{"status":"ok"}', media_type=JSON)

    @app.get("/readyz")
    async def readyz(request: Request) -> Response:
        """Ready when the database answers, its schema is at the code's head and the node is initialised."""
        detail = await run_in_threadpool(_readiness, node, head)
        ready = detail.pop("ready")
        doc: dict[str, Any] = {"status": "ready" if ready else "not ready"}
        if await run_in_threadpool(_is_admin, request):
            doc.update(detail)
        return Response(orjson.dumps(doc), status_code=200 if ready else 503, media_type=JSON)

    @app.get("/metrics")
    async def prometheus_metrics(request: Request) -> Response:
        """Prometheus text exposition of this process's metrics (admin tokens only)."""

        def scrape() -> bytes:
            if not party_of(request).admin:
                raise Forbidden("the metrics are for admin tokens")
            return generate_latest(metrics.registry)

        return Response(await run_in_threadpool(scrape), media_type=CONTENT_TYPE_LATEST)


def _is_admin(request: Request) -> bool:
    """Whether the request carries a valid admin token (no token, or a bad one, is simply not admin here)."""
    try:
        return party_of(request).admin
    except ReltoError:
        return False


def _readiness(node: Node, head: str | None) -> dict[str, Any]:
    """Whether the node is ready, and why: the database, the schema, the peers and the decision log."""
    detail: dict[str, Any] = {"database": "unreachable", "schema": {"revision": None, "head": head}}
    ready = False
    try:
        revision = node.store.schema_revision()
        initialised = node.store.initialised()
        peers = [{k: peer_view(p)[k] for k in _PEER_FIELDS} for p in node.store.peers()]
    except Exception as exc:  # the database is down or refuses: not ready, and say what kind of error
        detail["database_error"] = type(exc).__name__
    else:
        ready = initialised and revision == head
        detail.update(database="reachable", initialised=initialised, peers=peers)
        detail["schema"]["revision"] = revision
    detail["decision_log_pending"] = node.decisions.pending
    return {"ready": ready, **detail}
