"""Every request measured and logged once: the route template (never ids), the status and the time taken.

The access log line goes to the `relto.access` logger (enabled by `relto serve --access-log`), in the format
chosen with --log-format; it carries the method, path, route, status, duration and client address, never a
header (tokens and session cookies travel only in headers).
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from relto.api.metrics import Metrics

log = logging.getLogger("relto.access")


class Measured:
    """ASGI middleware: count, time and log each HTTP request."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # what the client gets if the app fails before it answers

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self._done(scope, status, time.perf_counter() - start)

    def _done(self, scope: Scope, status: int, seconds: float) -> None:
        method = str(scope["method"])
        route = getattr(scope.get("route"), "path", None) or "unmatched"
        self.metrics.requests.labels(method, route, str(status)).inc()
        self.metrics.latency.labels(method, route).observe(seconds)
        if log.isEnabledFor(logging.INFO):
            client = scope.get("client")
            where = f"{client[0]}:{client[1]}" if client else "-"
            path = str(scope.get("path", ""))
            line = f'{where} "{method} {path} HTTP/{scope.get("http_version", "1.1")}" {status} {seconds * 1000:.1f} ms'
            fields = {
                "method": method,
                "path": path,
                "route": route,
                "status": status,
                "duration_ms": round(seconds * 1000, 3),
                "client": where,
            }
            log.info(line, extra={"fields": fields})
