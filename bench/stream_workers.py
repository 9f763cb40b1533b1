"""The helper processes of bench/stream.py: many SSE subscribers in one asyncio process, and the publisher.

Started by bench/stream.py as `python bench/stream_workers.py _subscribers|_publisher CONFIG.json`; each speaks
JSON lines on stdout and writes its results to the file the configuration names.
"""

from __future__ import annotations

import asyncio
import http.client
import itertools
import json
import pickle
import random
import sys
import time
from array import array
from collections import Counter
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from _common import MEDIA_TYPE

ENVELOPE = 10
STAMP = "2026-01-01T00:00:00.000Z"


def object_id(tag: int, number: int) -> str:
    """A STIX id that carries the run's tag and the object's number (a valid UUIDv4 layout)."""
    return f"indicator--{tag:08x}-0000-4000-8000-{number:012x}"


def object_number(stix_id: str, tag: int) -> int:
    """The number in an id made by object_id, or -1 for any other id."""
    if stix_id.startswith(f"indicator--{tag:08x}-0000-4000-8000-"):
        return int(stix_id[-12:], 16)
    return -1


# --- the subscriber process -----------------------------------------------------------------------


@dataclass
class SubscriberConfig:
    host: str
    port: int
    path: str
    tokens: list[str]
    tag: int
    result: str


class Subscriber(asyncio.Protocol):
    """One SSE connection, parsed in data_received: the receive time is when the bytes reached the process."""

    def __init__(self, hub: Hub, index: int, token: str) -> None:
        self.hub = hub
        self.index = index
        self.token = token
        self.numbers = array("q")
        self.received_ns = array("q")
        self.last_id: str | None = None
        self.lagged = 0
        self.reconnects = 0
        self.heartbeats = 0
        self.foreign = 0  # events for objects this run did not publish
        self.other_events: Counter[str] = Counter()
        self.errors: list[str] = []
        self.connected = False
        self.closed_by_server = False
        self._transport: asyncio.Transport | None = None
        self._reset()

    def _reset(self) -> None:
        self._raw = bytearray()
        self._body = bytearray()
        self._head_done = False
        self._chunked = False
        self._resume = False
        self._ended = False

    def request(self) -> bytes:
        lines = [
            f"GET {self.hub.config.path} HTTP/1.1",
            f"Host: {self.hub.config.host}:{self.hub.config.port}",
            f"Authorization: Bearer {self.token}",
            "Accept: text/event-stream",
            "Cache-Control: no-cache",
        ]
        if self.last_id:
            lines.append(f"Last-Event-ID: {self.last_id}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        transport.write(self.request())

    def data_received(self, data: bytes) -> None:
        now = time.time_ns()
        raw = self._raw
        raw += data
        if not self._head_done:
            end = raw.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(raw[:end]).decode("latin-1")
            del raw[: end + 4]
            status = head.split(" ", 2)[1] if " " in head else "?"
            if status != "200":
                self.errors.append(f"HTTP {status}: {head.splitlines()[0]}")
                self.closed_by_server = True
                self._close()
                return
            self._head_done = True
            self._chunked = "transfer-encoding: chunked" in head.lower()
        body = self._body
        if self._chunked:
            while True:
                line_end = raw.find(b"\r\n")
                if line_end < 0:
                    break
                size = int(bytes(raw[:line_end]).split(b";")[0], 16)
                if len(raw) < line_end + 4 + size:
                    break
                body += raw[line_end + 2 : line_end + 2 + size]
                del raw[: line_end + 4 + size]
                if size == 0:
                    self._ended = True
                    break
        else:
            body += raw
            raw.clear()
        start = 0
        while True:
            end = body.find(b"\n\n", start)
            if end < 0:
                break
            self._event(bytes(body[start:end]), now)
            start = end + 2
        if start:
            del body[:start]
        if self._ended:  # the server ended the response (after 'lagged' or 'closed'): the socket may stay open
            self._close()

    def _event(self, frame: bytes, now: int) -> None:
        if frame.startswith(b":"):
            self.heartbeats += 1
            return
        kind, data = "message", b""
        for line in frame.split(b"\n"):
            if line.startswith(b"data: "):
                data = line[6:]
            elif line.startswith(b"event: "):
                kind = line[7:].decode()
            elif line.startswith(b"id: "):
                self.last_id = line[4:].decode()
            elif line.startswith(b"retry:") and not self.connected:
                self.connected = True
                self.hub.ready()
        if kind == "object":
            number = object_number(orjson.loads(data)["id"], self.hub.config.tag)
            if number < 0:
                self.foreign += 1
                return
            self.numbers.append(number)
            self.received_ns.append(now)
        elif kind == "lagged":
            self.lagged += 1
            self.last_id = orjson.loads(data).get("resume_after") or self.last_id
            self._resume = True
        elif kind == "closed":
            self.errors.append(f"closed by the server: {data.decode(errors='replace')}")
            self.closed_by_server = True
        elif kind != "message":
            self.other_events[kind] += 1

    def _close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self.hub.stopping or self.closed_by_server:
            return
        if not self._resume:
            what = "the server ended the stream" if self._ended else f"connection lost ({exc!r})"
            self.errors.append(f"{what}; resuming from the last event id")
        self.reconnects += 1
        self._reset()
        asyncio.get_running_loop().create_task(self.hub.connect(self, delay=0.05))

    def result(self) -> dict[str, Any]:
        return {
            "numbers": self.numbers,
            "received_ns": self.received_ns,
            "lagged": self.lagged,
            "reconnects": self.reconnects,
            "heartbeats": self.heartbeats,
            "foreign": self.foreign,
            "other_events": dict(self.other_events),
            "errors": self.errors,
            "connected": self.connected,
        }


class Hub:
    """All the subscribers of the process and the control loop on stdin / stdout."""

    def __init__(self, config: SubscriberConfig) -> None:
        self.config = config
        self.stopping = False
        self.subscribers = [Subscriber(self, i, token) for i, token in enumerate(config.tokens)]
        self.all_ready = asyncio.Event()

    def ready(self) -> None:
        if all(s.connected for s in self.subscribers):
            self.all_ready.set()

    async def connect(self, subscriber: Subscriber, delay: float = 0.0) -> None:
        if delay:
            await asyncio.sleep(delay)
        loop = asyncio.get_running_loop()
        for attempt in range(50):
            try:
                await loop.create_connection(lambda: subscriber, self.config.host, self.config.port)
                return
            except OSError as error:
                if attempt == 49:
                    subscriber.errors.append(f"could not connect: {error!r}")
                await asyncio.sleep(0.1)

    def received(self) -> int:
        return sum(len(s.numbers) for s in self.subscribers)

    async def run(self) -> None:
        await asyncio.gather(*(self.connect(s) for s in self.subscribers))
        with suppress(TimeoutError):
            await asyncio.wait_for(self.all_ready.wait(), timeout=60)
        say({"ready": sum(s.connected for s in self.subscribers)})
        while True:
            command = (await asyncio.to_thread(sys.stdin.readline)).strip()
            if command == "status":
                errors = sum(len(s.errors) for s in self.subscribers)
                say({"received": self.received(), "errors": errors})
            elif command in ("stop", ""):
                break
        self.stopping = True
        for s in self.subscribers:
            s._close()
        with open(self.config.result, "wb") as out:
            pickle.dump([s.result() for s in self.subscribers], out, protocol=pickle.HIGHEST_PROTOCOL)
        say({"done": True})


def say(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def subscribers_main(config_path: str) -> int:
    config = SubscriberConfig(**json.loads(Path(config_path).read_text()))
    asyncio.run(Hub(config).run())
    return 0


# --- the publisher process ------------------------------------------------------------------------


@dataclass
class PublisherConfig:
    host: str
    port: int
    path: str
    token: str
    tag: int
    markings: list[str]
    rate: float
    seconds: float
    seed: int
    result: str


def publisher_main(config_path: str) -> int:
    """POST envelopes on schedule for the configured seconds; write what was sent and when to the result file."""
    config = PublisherConfig(**json.loads(Path(config_path).read_text()))
    conn = http.client.HTTPConnection(config.host, config.port, timeout=60)
    headers = {"Accept": MEDIA_TYPE, "Content-Type": MEDIA_TYPE, "Authorization": f"Bearer {config.token}"}
    rng = random.Random(config.seed)
    interval = ENVELOPE / config.rate
    envelopes: list[tuple[int, int, int, int]] = []  # first number, objects, sent ns, acked ns
    markings: list[int] = []
    failed: list[str] = []
    number = 0
    start = time.perf_counter()
    report = start + 5.0
    for k in itertools.count():
        due = start + k * interval
        if due - start >= config.seconds or time.perf_counter() - start >= config.seconds:
            break  # on schedule or not, publishing stops after the configured seconds
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        if time.perf_counter() >= report:
            spent = time.perf_counter() - start
            print(f"[publisher] {spent:.0f} s: {number:,} objects, {number / spent:,.0f} obj/s", file=sys.stderr)
            report += 5.0
        first = number
        sent = time.time_ns()
        objects = []
        for _ in range(ENVELOPE):
            which = rng.randrange(len(config.markings))
            markings.append(which)
            objects.append(
                {
                    "type": "indicator",
                    "spec_version": "2.1",
                    "id": object_id(config.tag, number),
                    "created": STAMP,
                    "modified": STAMP,
                    "name": f"Stream benchmark indicator {number}",
                    "indicator_types": ["malicious-activity"],
                    "pattern": f"[ipv4-addr:value = '10.{number >> 16 & 255}.{number >> 8 & 255}.{number & 255}']",
                    "pattern_type": "stix",
                    "valid_from": STAMP,
                    "object_marking_refs": [config.markings[which]],
                    "x_sent_ns": sent,
                }
            )
            number += 1
        conn.request("POST", config.path, body=orjson.dumps({"objects": objects}), headers=headers)
        response = conn.getresponse()
        data = response.read()
        acked = time.time_ns()
        if response.status != 202:
            failed += [str(obj["id"]) for obj in objects]
            print(f"POST: HTTP {response.status}: {data[:300]!r}", file=sys.stderr)
        else:
            status = orjson.loads(data)
            failed += [str(f.get("id")) for f in status.get("failures") or []]
        envelopes.append((first, ENVELOPE, sent, acked))
    elapsed = time.perf_counter() - start
    conn.close()
    result = {"envelopes": envelopes, "markings": markings, "failed": failed, "elapsed": elapsed}
    Path(config.result).write_bytes(orjson.dumps(result))
    return 0


def main() -> None:
    """Run the helper named by the first argument."""
    if len(sys.argv) == 3 and sys.argv[1] == "_subscribers":
        sys.exit(subscribers_main(sys.argv[2]))
    if len(sys.argv) == 3 and sys.argv[1] == "_publisher":
        sys.exit(publisher_main(sys.argv[2]))
    sys.exit("usage: stream_workers.py _subscribers|_publisher CONFIG.json (started by bench/stream.py)")


if __name__ == "__main__":
    main()
