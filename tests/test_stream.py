"""The live stream through the real server: releasability, resumption, slow subscribers, revocation, workers."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relto.domain.levels import DEFAULT_LEVELS, Ladder
from relto.domain.markings import releasability_marking
from relto.watch import SSEvent, parse_sse
from tests.conftest import TAXII, Database, Server, relto, start_server

NATIONS = ("GBR", "USA", "KOR", "UKR")
EVERYONE = releasability_marking("UNCLASSIFIED", NATIONS, Ladder())


def indicator(refs: list[str] | None = None, stix_id: str | None = None, minute: int = 0) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "type": "indicator",
        "spec_version": "2.1",
        "id": stix_id or f"indicator--{uuid.uuid4()}",
        "created": "2024-10-18T09:00:00.000Z",
        "modified": f"2024-10-18T09:{minute:02d}:00.000Z",
        "pattern": "[ipv4-addr:value = '203.0.113.9']",
        "pattern_type": "stix",
        "valid_from": "2024-10-18T09:00:00Z",
        "name": "stream test",
    }
    if refs:
        obj["object_marking_refs"] = refs
    return obj


class Running:
    """A relto server running for a test, and tokens issued on its database."""

    def __init__(self, server: Server, db: Database) -> None:
        self.server, self.db = server, db
        self.tokens: dict[tuple[str, str], str] = {}

    def token(self, nation: str, clearance: str = "SECRET") -> str:
        if (nation, clearance) not in self.tokens:
            self.tokens[(nation, clearance)] = relto(
                "token", "issue", *self.db.args, "--nation", nation, "--clearance", clearance
            )
        return self.tokens[(nation, clearance)]

    def collection(self) -> str:
        return relto("collection", "add", *self.db.args, "stream")

    def post(self, coll: str, objects: list[dict[str, Any]], nation: str = "GBR") -> dict[str, Any]:
        r = httpx.post(
            f"{self.server.url}/api/collections/{coll}/objects/",
            content=orjson.dumps({"objects": objects}),
            headers={"Authorization": f"Bearer {self.token(nation)}", "Content-Type": TAXII, "Accept": TAXII},
            timeout=60,
        )
        assert r.status_code == 202, r.text
        status: dict[str, Any] = r.json()
        assert status["failure_count"] == 0, status["failures"]
        return status

    def taxii_all(self, coll: str, token: str) -> list[tuple[str, str]]:
        r = httpx.get(
            f"{self.server.url}/api/collections/{coll}/manifest/",
            params={"match[version]": "all", "limit": 10000},
            headers={"Authorization": f"Bearer {token}", "Accept": TAXII},
        )
        return [(m["id"], m["version"]) for m in r.json().get("objects", [])]


FROM_START = "1970-01-01T00:00:00Z"  # added_after: the whole history, then live


class Stream:
    """A subscriber reading in a thread, so tests can publish while it listens."""

    def __init__(self, url: str, token: str, coll: str, last_id: str | None = None, **params: str) -> None:
        self.events: list[SSEvent] = []
        self.opened = threading.Event()
        self.done = threading.Event()
        self.status = 0
        headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        if last_id:
            headers["Last-Event-ID"] = last_id
        self._response: httpx.Response | None = None
        self._client = httpx.Client(timeout=httpx.Timeout(10, read=60))
        self._args = (f"{url}/api/collections/{coll}/stream/", headers, params)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self.opened.wait(15), "the stream did not open"

    def _run(self) -> None:
        url, headers, params = self._args
        try:
            with self._client.stream("GET", url, headers=headers, params=params) as response:
                self._response = response
                self.status = response.status_code
                self.opened.set()
                for event in parse_sse(response.iter_lines()):
                    self.events.append(event)
        except (httpx.HTTPError, RuntimeError):
            pass
        finally:
            self.opened.set()
            self.done.set()

    def objects(self) -> list[dict[str, Any]]:
        return [orjson.loads(e.data) for e in self.events if e.event == "object"]

    def wait_for(self, predicate: Any, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self) and time.monotonic() < deadline and not self.done.is_set():
            time.sleep(0.02)
        assert predicate(self), f"timed out; got {[(e.event, e.data[:80]) for e in self.events][-5:]}"

    def close(self) -> None:
        """Hang up: shut the socket so the reading thread's blocked recv returns at once."""
        if self._response is not None:
            stream = self._response.extensions.get("network_stream")
            sock = stream.get_extra_info("socket") if stream is not None else None
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(5)
        self._client.close()


def ids_of(stream: Stream) -> list[tuple[str, str]]:
    return [(o["id"], o["modified"]) for o in stream.objects() if o["type"] == "indicator" and o["name"] != "end"]


@pytest.fixture
def node(database: Database, tmp_path: Path) -> Iterator[Running]:
    admin = relto("init", *database.args, "--nation", "GBR")
    server = start_server(database, admin, logs=tmp_path)
    try:
        yield Running(server, database)
    finally:
        server.stop()


def sentinel() -> dict[str, Any]:
    end = indicator([EVERYONE["id"]])
    end["name"] = "end"
    return end


def got_end(s: Stream) -> bool:
    return any(o.get("name") == "end" for o in s.objects())


markings = st.lists(
    st.tuples(
        st.integers(0, 3), st.lists(st.sampled_from([*NATIONS, "NATO", "IP4"]), min_size=1, max_size=2, unique=True)
    ),
    max_size=2,
)


@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(st.lists(st.tuples(st.sampled_from(NATIONS), markings), min_size=1, max_size=8))
def check_stream_equals_taxii(node: Running, versions: list[tuple[str, list[tuple[int, list[str]]]]]) -> None:
    coll = node.collection()
    parties = [(n, c) for n in NATIONS for c in ("CONFIDENTIAL", "SECRET")]
    live = {p: Stream(node.server.url, node.token(*p), coll) for p in parties}
    for publisher, marks in versions:
        defs = [releasability_marking(DEFAULT_LEVELS[level], rel_to, Ladder()) for level, rel_to in marks]
        node.post(coll, [*defs, indicator([d["id"] for d in defs])], publisher)
    node.post(coll, [EVERYONE, sentinel()])
    # A late subscriber catches up from the store, the live ones from the feed: both must equal TAXII.
    late = {p: Stream(node.server.url, node.token(*p), coll, added_after=FROM_START) for p in parties}
    try:
        for p in parties:
            taxii = [v for v in node.taxii_all(coll, node.token(*p)) if v[0].startswith("indicator--")]
            for stream in (live[p], late[p]):
                stream.wait_for(got_end)
                assert sorted(ids_of(stream)) == sorted(v for v in taxii if v not in ids_of_end(stream)), p
    finally:
        for s in [*live.values(), *late.values()]:
            s.close()


def ids_of_end(stream: Stream) -> list[tuple[str, str]]:
    return [(o["id"], o["modified"]) for o in stream.objects() if o.get("name") == "end"]


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_stream_shows_exactly_what_taxii_shows(node: Running) -> None:
    check_stream_equals_taxii(node)


def test_resume_after_disconnect_gets_every_missed_event_once(node: Running) -> None:
    coll = node.collection()
    token = node.token("KOR")
    first = Stream(node.server.url, token, coll)
    batch1 = [indicator([EVERYONE["id"]]) for _ in range(5)]
    node.post(coll, [EVERYONE, *batch1])
    first.wait_for(lambda s: len(ids_of(s)) == 5)
    last_id = first.events[-1].id
    first.close()
    batch2 = [indicator([EVERYONE["id"]]) for _ in range(7)]
    node.post(coll, batch2)
    node.post(coll, [sentinel()])
    again = Stream(node.server.url, token, coll, last_id=last_id)
    again.wait_for(got_end)
    assert ids_of(again) == [(o["id"], o["modified"]) for o in batch2]
    again.close()


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_deletions_are_events(node: Running) -> None:
    coll = node.collection()
    obj = indicator([EVERYONE["id"]])
    node.post(coll, [EVERYONE, obj])
    stream = Stream(node.server.url, node.token("UKR"), coll, added_after=FROM_START)
    stream.wait_for(lambda s: len(ids_of(s)) == 1)
    r = httpx.delete(
        f"{node.server.url}/api/collections/{coll}/objects/{obj['id']}/",
        headers={"Authorization": f"Bearer {node.token('GBR')}", "Accept": TAXII},
    )
    assert r.status_code == 200, r.text
    stream.wait_for(lambda s: any(e.event == "deleted" for e in s.events))
    gone = orjson.loads(next(e.data for e in stream.events if e.event == "deleted"))
    assert gone == {"id": obj["id"], "type": "indicator", "version": obj["modified"]}
    stream.close()


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_revoked_token_closes_its_stream(node: Running) -> None:
    coll = node.collection()
    token = relto("token", "issue", *node.db.args, "--nation", "KOR", "--clearance", "SECRET")
    stream = Stream(node.server.url, token, coll)
    relto("token", "revoke", *node.db.args, token.split("_")[1])
    started = time.monotonic()
    stream.wait_for(lambda s: any(e.event == "closed" for e in s.events), timeout=10)
    assert stream.done.wait(5)
    assert time.monotonic() - started < 5
    stream.close()


def test_filters_and_bad_requests(node: Running) -> None:
    coll = node.collection()
    token = node.token("GBR")
    malware = {
        "type": "malware",
        "spec_version": "2.1",
        "id": f"malware--{uuid.uuid4()}",
        "created": "2024-10-18T09:00:00.000Z",
        "modified": "2024-10-18T09:00:00.000Z",
        "name": "m",
        "is_family": True,
        "object_marking_refs": [EVERYONE["id"]],
    }
    node.post(coll, [EVERYONE, malware, indicator([EVERYONE["id"]]), sentinel()])
    only = Stream(node.server.url, token, coll, added_after=FROM_START, **{"match[type]": "malware,marking-definition"})
    only.wait_for(lambda s: any(o["type"] == "malware" for o in s.objects()))
    time.sleep(0.3)
    assert {o["type"] for o in only.objects()} == {"malware", "marking-definition"}
    only.close()
    url = f"{node.server.url}/api/collections/{coll}/stream/"
    auth = {"Authorization": f"Bearer {token}"}
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={**auth, "Accept": "application/xml"}).status_code == 406
    # Parameters the stream does not take are ignored (as on every endpoint); malformed ones it takes are a 400.
    with httpx.stream("GET", url, headers=auth, params={"_": "1", "match[x]": "y"}, timeout=10) as started:
        assert started.status_code == 200
        assert next(started.iter_lines()) == "retry: 2000"
    assert httpx.get(url, headers=auth, params={"added_after": "soon", "_": "1"}).status_code == 400
    assert httpx.get(url, headers=auth, params={"after": "garbage"}).status_code == 400
    bad = httpx.get(f"{node.server.url}/api/collections/{uuid.uuid4()}/stream/", headers=auth)
    assert bad.status_code == 404 and bad.json()["http_status"] == "404"


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_slow_subscriber_is_cut_and_resumes_without_loss(database: Database, tmp_path: Path) -> None:
    admin = relto("init", *database.args, "--nation", "GBR")
    coll = relto("collection", "add", *database.args, "slow")
    server = start_server(database, admin, logs=tmp_path, env={"RELTO_STREAM_RING_SIZE": "50"})
    try:
        url = f"{server.url}/api/collections/{coll}/stream/"
        headers = {"Authorization": f"Bearer {admin}", "Accept": "text/event-stream"}
        published: list[dict[str, Any]] = []
        with (
            httpx.Client(timeout=httpx.Timeout(10, read=30)) as client,
            client.stream("GET", url, headers=headers) as r,
        ):
            lines = r.iter_lines()
            post = lambda objs: httpx.post(  # noqa: E731
                f"{server.url}/api/collections/{coll}/objects/",
                content=orjson.dumps({"objects": objs}),
                headers={"Authorization": f"Bearer {admin}", "Content-Type": TAXII},
                timeout=60,
            )
            first = indicator()
            post([first])
            events = parse_sse(lines)
            assert orjson.loads(next(events).data)["id"] == first["id"]  # live now
            # 24 MB of events while this subscriber reads nothing: more than the sockets can buffer, so the
            # server's sends block, the feed's ring (50 events) moves on, and the subscriber is behind.
            for _ in range(12):
                batch = [indicator() for _ in range(40)]
                for o in batch:
                    o["description"] = "x" * 50_000
                published.extend(batch)
                assert post(batch).status_code == 202
            received: list[str] = []
            last_id = None
            cut = False
            for event in events:
                if event.event == "lagged":
                    last_id, cut = event.id, True
                    break
                received.append(orjson.loads(event.data)["id"])
                last_id = event.id
                if len(received) == len(published):
                    break
            assert cut and len(received) < len(published), "the slow subscriber was not cut"
        assert post([EVERYONE, sentinel()]).json()["failure_count"] == 0
        with (
            httpx.Client(timeout=httpx.Timeout(10, read=30)) as client,
            client.stream("GET", url, headers={**headers, "Last-Event-ID": last_id}) as r,
        ):
            for event in parse_sse(r.iter_lines()):
                obj = orjson.loads(event.data)
                if obj.get("name") == "end":
                    break
                if obj["type"] == "indicator":
                    received.append(obj["id"])
        assert received == [o["id"] for o in published]
    finally:
        server.stop()


def test_stream_with_four_workers(database: Database, tmp_path: Path) -> None:
    admin = relto("init", *database.args, "--nation", "GBR")
    coll = relto("collection", "add", *database.args, "workers")
    server = start_server(database, admin, "--workers", "4", logs=tmp_path)
    try:
        node = Running(server, database)
        streams = [Stream(server.url, admin, coll) for _ in range(4)]
        sent: list[tuple[str, str]] = []
        for _ in range(12):  # separate connections: they land on different workers
            batch = [indicator([EVERYONE["id"]]) for _ in range(10)]
            node.post(coll, [EVERYONE, *batch])
            sent.extend((o["id"], o["modified"]) for o in batch)
        node.post(coll, [sentinel()])
        for s in streams:
            s.wait_for(got_end, timeout=20)
            assert ids_of(s) == sent
            s.close()
    finally:
        server.stop()


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_relto_watch_prints_banners(node: Running) -> None:
    coll = node.collection()
    url = f"{node.server.url}/api/collections/{coll}/"
    secret = releasability_marking("SECRET", ["GBR", "KOR"], Ladder())
    watcher = subprocess.Popen(
        [sys.executable, "-m", "relto", "watch", url, "--token", node.token("KOR")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert watcher.stdout is not None
        assert "watching" in watcher.stdout.readline()
        obj = indicator([secret["id"]])
        obj["name"] = "Relay address seen near Kursk"
        node.post(coll, [secret, obj])
        lines = [watcher.stdout.readline() for _ in range(2)]
        line = next(x for x in lines if "indicator" in x)
        assert "SECRET REL TO GBR, KOR" in line and "Relay address seen near Kursk" in line
        # Ctrl-C says where to resume; --after that id shows nothing already seen, then what is new.
        watcher.send_signal(signal.SIGINT)
        rest, _ = watcher.communicate(timeout=10)
        assert watcher.returncode == 0
        resume = re.search(r"add --after (\S+)", rest)
        assert resume is not None, rest
        later = indicator([secret["id"]])
        node.post(coll, [later])
        again = subprocess.Popen(
            [sys.executable, "-m", "relto", "watch", url, "--token", node.token("KOR"), "--after", resume[1]],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            assert again.stdout is not None
            assert f"after event {resume[1]}" in again.stdout.readline()
            shown = again.stdout.readline()
            assert later["id"] in shown and obj["id"] not in shown
        finally:
            again.terminate()
            again.wait(5)
            if again.stdout:
                again.stdout.close()
    finally:
        watcher.terminate()
        watcher.wait(5)
        if watcher.stdout:
            watcher.stdout.close()


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_a_nation_leaving_a_community_stops_receiving_within_a_second(node: Running) -> None:
    coll = node.collection()
    ip4 = releasability_marking("SECRET", ["IP4"], Ladder())
    stream = Stream(node.server.url, node.token("KOR"), coll)
    before = indicator([ip4["id"]])
    node.post(coll, [ip4, EVERYONE, before, indicator([EVERYONE["id"]])])  # every marking set exists from here
    stream.wait_for(lambda s: before["id"] in {o["id"] for o in s.objects()})
    relto("community", "leave", *node.db.args, "IP4", "KOR")  # another process changes the policy
    time.sleep(1.5)
    after = indicator([ip4["id"]])
    node.post(coll, [after])
    node.post(coll, [sentinel()])
    stream.wait_for(got_end)
    assert after["id"] not in {o["id"] for o in stream.objects()}
    stream.close()


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_a_nation_joining_a_community_is_sent_what_it_may_now_read(node: Running) -> None:
    """An open stream whose reach grows (its nation joins a community) is sent the versions it read past and may
    read now, as a TAXII read would show them; then it goes on live from where it was."""
    coll = node.collection()
    ip4 = releasability_marking("SECRET", ["IP4"], Ladder())
    already = indicator([ip4["id"]])
    node.post(coll, [ip4, EVERYONE, already, indicator([EVERYONE["id"]])])
    stream = Stream(node.server.url, node.token("FRA"), coll, added_after="1970-01-01T00:00:00Z")
    time.sleep(1.0)
    assert already["id"] not in {o["id"] for o in stream.objects()}
    relto("community", "join", *node.db.args, "IP4", "FRA")  # another process changes the policy
    time.sleep(1.0)  # the policy is re-read within 0.25 s
    later = indicator([ip4["id"]])
    end = {**indicator([ip4["id"]]), "name": "end"}  # FRA may read it from now on
    node.post(coll, [later])
    node.post(coll, [end])
    stream.wait_for(lambda s: {already["id"], later["id"]} <= {o["id"] for o in s.objects()} and got_end(s))
    ids = [o["id"] for o in stream.objects()]
    assert ids.count(already["id"]) == 1 and ids.count(later["id"]) == 1
    stream.close()


def test_metrics_count_live_subscribers_and_their_feed(node: Running) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    coll = node.collection()
    admin = relto("token", "issue", *node.db.args, "--nation", "GBR", "--clearance", "SECRET", "--admin")

    def scrape() -> dict[str, float]:
        r = httpx.get(f"{node.server.url}/metrics", headers={"Authorization": f"Bearer {admin}"}, timeout=10)
        assert r.status_code == 200, r.text
        families = text_string_to_metric_families(r.text)
        return {s.name + str(sorted(s.labels.values())): s.value for f in families for s in f.samples}

    stream = Stream(node.server.url, node.token("GBR"), coll)
    try:
        node.post(coll, [EVERYONE, sentinel()])
        stream.wait_for(lambda s: s.objects())
        got = scrape()
        assert got["relto_stream_subscribers[]"] == 1
        assert got[f"relto_stream_ring_events[{coll!r}]"] >= 1 and f"relto_stream_feed_lag_events[{coll!r}]" in got
        assert got["relto_versions_released_total['stream']"] >= 1
    finally:
        stream.close()
    # The server notices a hang-up when it next has something to send (an event, or the heartbeat).
    node.post(coll, [EVERYONE, sentinel()])
    deadline = time.monotonic() + 10
    while scrape()["relto_stream_subscribers[]"] != 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert scrape()["relto_stream_subscribers[]"] == 0
