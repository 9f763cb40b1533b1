"""Real processes: 4 server workers, 8 publishers, 2 readers paging with added_after; and kill -9 mid-publish.

Nothing acknowledged may be lost, no reader may skip or repeat a version, and no request may get a 5xx.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from relto.domain.levels import Ladder
from relto.domain.markings import releasability_marking
from tests.conftest import TAXII, Database, Server, relto, start_server

PUBLISHERS = 8
ENVELOPES = 10
PER_ENVELOPE = 50
MARKINGS = [
    releasability_marking(level, rel_to, Ladder())
    for level, rel_to in [
        ("SECRET", ["GBR", "USA"]),
        ("CONFIDENTIAL", ["GBR", "KOR", "NATO"]),
        ("RESTRICTED", ["GBR", "FVEY"]),
        ("UNCLASSIFIED", ["GBR", "UKR", "IP4"]),
    ]
]


def headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Accept": TAXII, "Content-Type": TAXII}


def indicator(stix_id: str, minute: int, marking: dict[str, Any]) -> dict[str, Any]:
    stamp = f"2024-10-18T{minute // 60:02d}:{minute % 60:02d}:00.000Z"
    return {
        "type": "indicator",
        "spec_version": "2.1",
        "id": stix_id,
        "created": "2024-10-18T00:00:00.000Z",
        "modified": stamp,
        "name": f"concurrency {stix_id[-6:]} v{minute}",
        "pattern": "[ipv4-addr:value = '198.51.100.7']",
        "pattern_type": "stix",
        "valid_from": "2024-10-18T00:00:00Z",
        "object_marking_refs": [marking["id"]],
    }


class Errors:
    def __init__(self) -> None:
        self.items: list[str] = []
        self.lock = threading.Lock()

    def add(self, what: str) -> None:
        with self.lock:
            self.items.append(what)


def publisher(url: str, token: str, n: int, acked: dict[tuple[str, str], bytes], errors: Errors) -> None:
    ids = [f"indicator--{uuid.uuid4()}" for _ in range(PER_ENVELOPE)]
    marking = MARKINGS[n % len(MARKINGS)]
    with httpx.Client(headers=headers(token), timeout=60) as client:
        for e in range(ENVELOPES):
            # Every other envelope publishes new versions of earlier ids; the rest are new ids.
            if e % 2:
                batch = [indicator(i, e, marking) for i in ids]
            else:
                ids = [f"indicator--{uuid.uuid4()}" for _ in range(PER_ENVELOPE)]
                batch = [indicator(i, e, marking) for i in ids]
            r = client.post(url, content=orjson.dumps({"objects": [marking, *batch]}))
            if r.status_code >= 500 or r.status_code != 202:
                errors.add(f"POST {r.status_code}: {r.text[:200]}")
                return
            status = r.json()
            if status["failure_count"]:
                errors.add(f"failures: {status['failures'][:2]}")
            sent = {(o["id"], o["modified"]): orjson.dumps(o) for o in batch}
            for s in status["successes"]:
                key = (s["id"], s["version"])
                if key in sent:
                    acked[key] = sent[key]


def reader(url: str, token: str, done: threading.Event, seen: list[dict[str, Any]], errors: Errors) -> None:
    after: str | None = None
    with httpx.Client(headers=headers(token), timeout=60) as client:
        quiet_after_done = 0
        while quiet_after_done < 2:
            finished = done.is_set()
            params: dict[str, Any] = {"limit": 137, "match[version]": "all"}
            if after:
                params["added_after"] = after
            r = client.get(url, params=params)
            if r.status_code != 200:
                errors.add(f"GET {r.status_code}: {r.text[:200]}")
                return
            page = r.json().get("objects", [])
            seen.extend(page)
            if page:
                after = page[-1]["date_added"]
            elif finished:
                quiet_after_done += 1
            else:
                time.sleep(0.01)


@pytest.fixture
def node(database: Database, tmp_path: Path) -> Iterator[tuple[Server, str, list[str]]]:
    admin = relto("init", *database.args, "--nation", "GBR")
    coll = relto("collection", "add", *database.args, "concurrency")
    tokens = [relto("token", "issue", *database.args, "--nation", "GBR", "--clearance", "SECRET") for _ in range(10)]
    server = start_server(database, admin, "--workers", "4", logs=tmp_path)
    try:
        yield server, coll, tokens
    finally:
        server.stop()


def test_concurrent_writers_and_paging_readers_lose_and_repeat_nothing(node: tuple[Server, str, list[str]]) -> None:
    server, coll, tokens = node
    objects_url = f"{server.url}/api/collections/{coll}/objects/"
    manifest_url = f"{server.url}/api/collections/{coll}/manifest/"
    acked: dict[tuple[str, str], bytes] = {}
    errors = Errors()
    done = threading.Event()
    seen: list[list[dict[str, Any]]] = [[], []]
    readers = [
        threading.Thread(target=reader, args=(manifest_url, tokens[8 + i], done, seen[i], errors)) for i in range(2)
    ]
    writers = [
        threading.Thread(target=publisher, args=(objects_url, tokens[i], i, acked, errors)) for i in range(PUBLISHERS)
    ]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join()
    done.set()
    for t in readers:
        t.join()
    assert not errors.items, errors.items[:5]
    assert len(acked) == PUBLISHERS * ENVELOPES * PER_ENVELOPE
    indicators = {(v["id"], v["version"]) for v in seen[0] if v["id"].startswith("indicator--")}
    for versions in seen:
        keys = [(v["id"], v["version"]) for v in versions]
        assert len(keys) == len(set(keys)), "a reader received a version twice"
        stamps = [v["date_added"] for v in versions]
        assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps), "date_added not strictly increasing"
        assert {k for k in keys if k[0].startswith("indicator--")} == set(acked), "a reader missed a version"
    assert indicators == set(acked)


def test_kill_9_loses_nothing_acknowledged(database: Database, tmp_path: Path) -> None:
    admin = relto("init", *database.args, "--nation", "GBR")
    coll = relto("collection", "add", *database.args, "crash")
    server = start_server(database, admin, logs=tmp_path)
    url = f"{server.url}/api/collections/{coll}/objects/"
    acked: dict[tuple[str, str], bytes] = {}
    stop = threading.Event()

    def publish(n: int) -> None:
        marking = MARKINGS[n % len(MARKINGS)]
        with httpx.Client(headers=headers(admin), timeout=30) as client:
            while not stop.is_set():
                batch = [indicator(f"indicator--{uuid.uuid4()}", n, marking) for _ in range(40)]
                try:
                    r = client.post(url, content=orjson.dumps({"objects": [marking, *batch]}))
                except httpx.TransportError:
                    return  # the server died mid-request: nothing was acknowledged
                assert r.status_code == 202, r.text
                sent = {(o["id"], o["modified"]): orjson.dumps(o) for o in batch}
                for s in r.json()["successes"]:
                    if (s["id"], s["version"]) in sent:
                        acked[(s["id"], s["version"])] = sent[(s["id"], s["version"])]

    threads = [threading.Thread(target=publish, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while len(acked) < 2000 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait()
    stop.set()
    for t in threads:
        t.join()
    assert len(acked) >= 400, "too little was published before the kill to prove anything"

    again = start_server(database, admin, logs=tmp_path)
    try:
        stored: dict[tuple[str, str], dict[str, Any]] = {}
        params: dict[str, Any] = {"limit": 1000, "match[version]": "all"}
        with httpx.Client(headers=headers(admin), timeout=60) as client:
            while True:
                page = client.get(f"{again.url}/api/collections/{coll}/objects/", params=params).json()
                for o in page.get("objects", []):
                    if o["type"] == "indicator":
                        stored[(o["id"], o["modified"])] = o
                if not page["more"]:
                    break
                params["next"] = page["next"]
        missing = set(acked) - set(stored)
        assert not missing, f"{len(missing)} acknowledged versions lost"
        assert all(stored[k] == orjson.loads(acked[k]) for k in acked), "an acknowledged version changed"
    finally:
        again.stop()
