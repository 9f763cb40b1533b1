"""`relto watch`: print a collection's live stream, one line per event, reconnecting and resuming by itself."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from relto.domain.markings import RELTO_EXTENSION_ID, TLP_BY_ID
from relto.taxii.media import TAXII


@dataclass
class SSEvent:
    """One parsed server-sent event."""

    event: str = "message"
    data: str = ""
    id: str | None = None


def parse_sse(lines: Iterator[str]) -> Iterator[SSEvent]:
    """Server-sent events from a stream of lines (comments and heartbeats skipped)."""
    current = SSEvent()
    data: list[str] = []
    for line in lines:
        if not line:
            if data or current.id is not None:
                current.data = "\n".join(data)
                yield current
            current, data = SSEvent(), []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "event":
            current.event = value
        elif field == "data":
            data.append(value)
        elif field == "id":
            current.id = value


class Banners:
    """Marking banners ('SECRET REL TO GBR, KOR // TLP:AMBER') from marking-definitions, fetched once each."""

    def __init__(self, client: httpx.Client, collection_url: str) -> None:
        self.client = client
        self.collection_url = collection_url
        self.labels: dict[str, str] = {ref: f"TLP:{name.upper()}" for ref, name in TLP_BY_ID.items()}

    def learn(self, definition: dict[str, Any]) -> None:
        ext = (definition.get("extensions") or {}).get(RELTO_EXTENSION_ID)
        if isinstance(ext, dict):
            label = f"{ext.get('classification')} REL TO {', '.join(ext.get('rel_to') or [])}"
        else:
            label = str(definition.get("name") or "statement")
        self.labels[definition["id"]] = label

    def banner(self, obj: dict[str, Any]) -> str:
        refs = obj.get("object_marking_refs") or []
        if not refs:
            return "(no REL TO: originator only)"
        parts = []
        for ref in refs:
            if ref not in self.labels:
                self._fetch(ref)
            parts.append(self.labels.get(ref, "UNKNOWN MARKING"))
        return " // ".join(sorted(parts, key=lambda p: p.startswith("TLP:")))

    def _fetch(self, ref: str) -> None:
        try:
            r = self.client.get(f"{self.collection_url}objects/{ref}/", headers={"Accept": TAXII})
            if r.status_code == 200:
                for definition in r.json().get("objects", []):
                    self.learn(definition)
        except httpx.HTTPError:
            pass


def describe(obj: dict[str, Any], banners: Banners) -> str:
    """One readable line for an object event."""
    when = str(obj.get("modified") or obj.get("created") or "")[:19].replace("T", " ")
    name = obj.get("name") or obj.get("relationship_type") or obj.get("value") or ""
    # A marking definition is readable by whoever its own releasability admits: it has no banner of its own.
    banner = "marking definition" if obj.get("type") == "marking-definition" else banners.banner(obj)
    return f"{when}  {obj.get('type', '?'):<18} [{banner}]  {name}  {obj.get('id', '')}"


def watch(
    url: str,
    token: str,
    *,
    types: tuple[str, ...] = (),
    after: str | None = None,
    from_start: bool = False,
    say: Callable[[str], None] = print,
    reconnects: int | None = None,
) -> int:
    """Follow the stream at `url` (a collection URL or its stream/ URL). Returns an exit status.

    Ctrl-C stops it, saying the last event id printed, so that `--after ID` resumes exactly there."""
    follower = _Follower(url, token, types, after, from_start, say)
    try:
        return follower.run(reconnects)
    except KeyboardInterrupt:
        if follower.last_id:
            say(f"relto watch: stopped; to resume where this left off, add --after {follower.last_id}")
        else:
            say("relto watch: stopped")
        return 0


class _Follower:
    """One watch: where it is (the last event id), and the loop that reconnects and resumes from there."""

    def __init__(
        self,
        url: str,
        token: str,
        types: tuple[str, ...],
        after: str | None,
        from_start: bool,
        say: Callable[[str], None],
    ) -> None:
        self.collection_url = url.split("stream/")[0] if "stream/" in url else url.rstrip("/") + "/"
        self.stream_url = self.collection_url + "stream/"
        self.token = token
        self.types = types
        self.after = after
        self.from_start = from_start
        self.say = say
        self.last_id = after

    def _since(self) -> str:
        if self.after:
            return f"after event {self.after}"
        if self.from_start:
            return "everything from the start, then live"
        return "new items from now on (--from-start shows what is already there)"

    def run(self, reconnects: int | None) -> int:
        say, backoff, attempts = self.say, 1.0, 0
        auth = {"Authorization": f"Bearer {self.token}"}
        with httpx.Client(headers=auth, timeout=httpx.Timeout(10.0, read=90.0)) as client:
            banners = Banners(client, self.collection_url)
            while reconnects is None or attempts <= reconnects:
                attempts += 1
                last_id = self.last_id
                headers = {"Accept": "text/event-stream", **({"Last-Event-ID": last_id} if last_id else {})}
                params = {"match[type]": ",".join(self.types)} if self.types else {}
                if self.from_start and not last_id:
                    params["added_after"] = "1970-01-01T00:00:00Z"  # the whole history, then live
                try:
                    with client.stream("GET", self.stream_url, headers=headers, params=params) as response:
                        if response.status_code != 200:
                            response.read()
                            detail = response.json().get("description", "") if response.content else ""
                            say(f"relto watch: HTTP {response.status_code} {detail}")
                            if response.status_code in (400, 401, 403, 404, 406):
                                return 2
                            raise httpx.TransportError(f"HTTP {response.status_code}")
                        if attempts == 1:
                            say(f"watching {self.stream_url}: {self._since()}; Ctrl-C stops")
                        backoff = 1.0
                        ended = self._events(response, banners)
                        if ended is not None:
                            return ended
                except httpx.HTTPError as exc:
                    say(f"relto watch: connection lost ({exc.__class__.__name__}); resuming in {backoff:.0f} s")
                    time.sleep(backoff)
                    backoff = min(backoff * 2, 30.0)
        return 0

    def _events(self, response: httpx.Response, banners: Banners) -> int | None:
        """Print one connection's events; an exit status when the watch must end, None to resume."""
        say = self.say
        for event in parse_sse(response.iter_lines()):
            if event.id:
                self.last_id = event.id
            if event.event == "object":
                obj = orjson.loads(event.data)
                if obj.get("type") == "marking-definition":
                    banners.learn(obj)
                say(describe(obj, banners))
            elif event.event == "deleted":
                gone = orjson.loads(event.data)
                say(f"{'':19}  DELETED {gone.get('type', ''):<10} {gone.get('id')} {gone.get('version')}")
            elif event.event == "lagged":
                say("relto watch: fell behind the live feed; resuming from the last event")
                return None
            elif event.event == "closed":
                say(f"relto watch: the server closed the stream: {orjson.loads(event.data).get('reason')}")
                return 1
        return None
