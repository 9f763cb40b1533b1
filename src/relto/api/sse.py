"""Server-sent events over ASGI, with a stall guard: a client that stops reading is disconnected."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from starlette.responses import Response
from starlette.types import Receive, Scope, Send


class EventStream(Response):
    """An ASGI response that sends each chunk of an async iterator as it comes (text/event-stream)."""

    def __init__(self, chunks: AsyncIterator[bytes], *, stall_seconds: float) -> None:
        # Not Response.__init__: there is no body to render; the attributes below are what callers read.
        self.chunks = chunks
        self.stall_seconds = stall_seconds
        self.status_code = 200
        self.background = None
        self.raw_headers = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream; charset=utf-8"),
                    (b"cache-control", b"no-store"),
                    (b"x-accel-buffering", b"no"),  # tell nginx not to buffer the stream
                ],
            }
        )
        disconnected = asyncio.Event()

        async def watch_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            disconnected.set()

        watcher = asyncio.create_task(watch_disconnect())
        try:
            async for chunk in self.chunks:
                if disconnected.is_set():
                    return
                # send() waits while the client's socket buffer is full: that is our backpressure. A client
                # that reads nothing for stall_seconds is cut; it resumes later from its last event id. (A
                # timeout, not wait_for: that would start a task per chunk.)
                async with asyncio.timeout(self.stall_seconds):
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except (TimeoutError, OSError):
            return
        finally:
            watcher.cancel()
            await self.chunks.aclose()  # type: ignore[attr-defined]
