"""The attack suite's node: the real `relto serve` per back-end, tokens from `relto token issue`, collections from
`relto collection add`, and helpers to post, read, delete and follow the live stream as one nation.

One server per back-end serves the whole package (tests work in fresh collections of their own); tests that
need other settings start their own (`running_node`).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from relto.domain.levels import DEFAULT_LEVELS, Ladder
from relto.domain.markings import releasability_marking
from tests.conftest import BACKENDS, TAXII, Database, PostgresDatabases, Server, new_database, relto, start_server

LADDER = Ladder.of(DEFAULT_LEVELS)
ACS_EXTENSION = "extension-definition--3a65884d-005a-4290-8335-cb2d778a83ce"
# STIX 2.1's namespace for the deterministic ids of cyber observables (section 2.9).
SCO_NAMESPACE = uuid.UUID("00abedb4-aa42-466c-9c01-fed23315a9b7")
T0 = "2024-10-18T09:00:00.000Z"
T1 = "2024-10-19T09:00:00.000Z"
T2 = "2024-10-20T09:00:00.000Z"
EPOCH = "1970-01-01T00:00:00Z"  # added_after for a stream that starts at the beginning
NATIONS = ("GBR", "KOR", "UKR", "FRA")  # every token is an ordinary writer cleared to SECRET
COMMUNITIES = ("NATO", "EU", "FVEY", "IP4")
POOL = 20  # collections made up front per server (more are made on demand)


# -- STIX objects and markings ---------------------------------------------------------------------------


def sid(type_: str) -> str:
    return f"{type_}--{uuid.uuid4()}"


def marking(classification: str, *rel_to: str) -> dict[str, Any]:
    """relto's releasability marking-definition (its id is the UUIDv5 of these contents)."""
    return releasability_marking(classification, rel_to, LADDER)


def acs_marking(
    classification: str, nationalities: list[str] | None = None, id_: str | None = None, created: str = T0
) -> dict[str, Any]:
    """An ISA ACS 3.0 marking-definition; no `nationalities`: releasable to the originator only."""
    control: dict[str, Any] = {"classification": classification}
    if nationalities is not None:
        control["permitted_nationalities"] = nationalities
    return {
        "type": "marking-definition",
        "spec_version": "2.1",
        "id": id_ or sid("marking-definition"),
        "created": created,
        "name": f"ACS {classification} {'/'.join(nationalities or ['ORIGINATOR'])}",
        "extensions": {ACS_EXTENSION: {"extension_type": "property-extension", "control_set": control}},
    }


def statement_marking(text: str, id_: str | None = None, created: str = T0) -> dict[str, Any]:
    """A plain statement marking-definition (no releasability)."""
    return {
        "type": "marking-definition",
        "spec_version": "2.1",
        "id": id_ or sid("marking-definition"),
        "created": created,
        "definition_type": "statement",
        "definition": {"statement": text},
    }


def sdo(type_: str, markings: list[dict[str, Any]] | None, modified: str = T0, **props: Any) -> dict[str, Any]:
    """A STIX domain object marked with `markings` (None: no object_marking_refs at all)."""
    obj: dict[str, Any] = {
        "type": type_,
        "spec_version": "2.1",
        "id": props.pop("id", None) or sid(type_),
        "created": props.pop("created", T0),
        "modified": modified,
    }
    if markings is not None:
        obj["object_marking_refs"] = [m["id"] for m in markings]
    obj.update(props)
    return obj


def indicator(markings: list[dict[str, Any]] | None, modified: str = T0, **props: Any) -> dict[str, Any]:
    props.setdefault("name", "relay address")
    props.setdefault("pattern", "[ipv4-addr:value = '203.0.113.17']")
    props.setdefault("pattern_type", "stix")
    props.setdefault("valid_from", "2024-10-18T09:00:00Z")
    return sdo("indicator", markings, modified, **props)


def identity(markings: list[dict[str, Any]] | None, **props: Any) -> dict[str, Any]:
    props.setdefault("name", "a source")
    props.setdefault("identity_class", "individual")
    return sdo("identity", markings, **props)


def observable_id(type_: str, contributing: dict[str, Any]) -> str:
    """The STIX 2.1 deterministic id of a cyber observable from its id-contributing properties."""
    canonical = json.dumps(contributing, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return f"{type_}--{uuid.uuid5(SCO_NAMESPACE, canonical)}"


def ipv4(value: str, markings: list[dict[str, Any]], id_: str | None = None) -> dict[str, Any]:
    return {
        "type": "ipv4-addr",
        "spec_version": "2.1",
        "id": id_ or observable_id("ipv4-addr", {"value": value}),
        "value": value,
        "object_marking_refs": [m["id"] for m in markings],
    }


# -- cursors ---------------------------------------------------------------------------------------------


def decoded(cursor: str) -> bytes:
    """A cursor read as urlsafe base64 (padding fixed); b'' when it is not base64 at all."""
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError):
        return b""


def integers_in(cursor: str) -> set[int]:
    """The decimal numbers written in a cursor's decoded bytes."""
    return {int(m) for m in re.findall(rb"[0-9]+", decoded(cursor))}


def tampered(cursor: str, most: int = 16) -> list[str]:
    """One-character changes of the cursor that change what it says (base64 bits a decoder ignores are skipped,
    so a cursor that decodes to the same bytes is not counted as changed): at most `most`, spread over the
    cursor and always including its last characters."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    changes = []
    for i, ch in enumerate(cursor):
        for step in (1, 2, 4, 8, 16, 32):
            other = alphabet[(alphabet.index(ch) + step) % 64] if ch in alphabet else "A"
            changed = cursor[:i] + other + cursor[i + 1 :]
            if decoded(changed) != decoded(cursor) or not decoded(cursor):
                changes.append(changed)
                break
    if len(changes) <= most:
        return changes
    tail = changes[-(most // 2) :]
    head = changes[: -(most // 2)]
    return head[:: -(-len(head) // (most - len(tail)))] + tail


# -- status documents ------------------------------------------------------------------------------------


@dataclass
class Status:
    """A TAXII status answered to a POST of objects."""

    raw: dict[str, Any]

    def _find(self, kind: str, id_: str) -> list[dict[str, Any]]:
        return [e for e in self.raw.get(kind, []) if e.get("id") == id_]

    def success(self, id_: str) -> dict[str, Any]:
        found = self._find("successes", id_)
        assert len(found) == 1, f"expected one success for {id_}: {self.raw}"
        return found[0]

    def failure(self, id_: str) -> dict[str, Any]:
        found = self._find("failures", id_)
        assert len(found) == 1, f"expected one failure for {id_}: {self.raw}"
        return found[0]

    def entry(self, id_: str) -> tuple[str, dict[str, Any]]:
        """("success" or "failure", the entry) for one id."""
        ok, bad = self._find("successes", id_), self._find("failures", id_)
        assert len(ok) + len(bad) == 1, f"expected one entry for {id_}: {self.raw}"
        return ("success", ok[0]) if ok else ("failure", bad[0])

    def stored(self, id_: str) -> bool:
        """Whether the status acknowledges this id as stored (a success)."""
        return bool(self._find("successes", id_))


def without(entry: dict[str, Any], *ids: str) -> dict[str, Any]:
    """A status entry with the given ids replaced by a placeholder (to compare two answers modulo id)."""
    text = json.dumps(entry, sort_keys=True)
    for i in ids:
        text = text.replace(i, "<ID>")
    return json.loads(text)  # type: ignore[no-any-return]


# -- the live stream -------------------------------------------------------------------------------------


@dataclass
class Event:
    id: str | None
    event: str
    data: Any


class Events:
    """Server-sent events read one at a time from a streaming httpx response."""

    def __init__(self, response: httpx.Response) -> None:
        self._lines = response.iter_lines()
        self.seen: list[Event] = []

    def _next(self) -> Event:
        fields: dict[str, str] = {}
        for line in self._lines:
            if line == "":
                if "event" in fields or "data" in fields:
                    raw = fields.get("data", "")
                    try:
                        data = json.loads(raw)
                    except ValueError:
                        data = raw
                    return Event(fields.get("id"), fields.get("event", "message"), data)
                fields = {}
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
        raise AssertionError(f"the stream ended; events so far: {self.seen}")

    def until(self, done: Callable[[Event], bool], what: str) -> list[Event]:
        """Read events until one satisfies `done`; return the events read by this call."""
        got: list[Event] = []
        while True:
            try:
                e = self._next()
            except httpx.ReadTimeout:
                raise AssertionError(f"no event {what} within the timeout; events so far: {self.seen}") from None
            got.append(e)
            self.seen.append(e)
            if done(e):
                return got


def is_object(stix_id: str) -> Callable[[Event], bool]:
    return lambda e: e.event == "object" and isinstance(e.data, dict) and e.data.get("id") == stix_id


def is_deleted(stix_id: str) -> Callable[[Event], bool]:
    return lambda e: e.event == "deleted" and isinstance(e.data, dict) and e.data.get("id") == stix_id


# -- the running node ------------------------------------------------------------------------------------


@dataclass
class Node:
    """A running `relto serve`, its parties' tokens (GBR, KOR, UKR, FRA, admin) and spare collections."""

    server: Server
    tokens: dict[str, str]
    folder: Path
    env: dict[str, str] | None = None
    spare: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def db(self) -> Database:
        return self.server.db

    def new_collection(self) -> str:
        """A fresh collection (made by `relto collection add`)."""
        if self.spare:
            return self.spare.pop()
        return relto("collection", "add", *self.db.args, "attack")

    def headers(self, who: str, accept: str = TAXII) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}", "Accept": accept, "Content-Type": TAXII}

    def post(self, who: str, collection: str, objects: list[dict[str, Any]]) -> Status:
        r = httpx.post(
            f"{self.url}/api/collections/{collection}/objects/",
            content=json.dumps({"objects": objects}),
            headers=self.headers(who),
            timeout=30,
        )
        assert r.status_code == 202, r.text
        return Status(r.json())

    def get(self, who: str, path: str, params: dict[str, str] | None = None) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", params=params, headers=self.headers(who), timeout=30)

    def page(self, who: str, collection: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        r = self.get(who, f"/api/collections/{collection}/objects/", params)
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    def read(self, who: str, collection: str, params: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """Every object `who` receives from the collection's objects/ (all pages)."""
        query = dict(params or {})
        out: list[dict[str, Any]] = []
        while True:
            body = self.page(who, collection, query)
            out += body.get("objects", [])
            if not body.get("more"):
                return out
            query["next"] = body["next"]

    def read_id(self, who: str, collection: str, stix_id: str, versions: str = "last") -> list[dict[str, Any]]:
        """The versions of one id `who` receives from objects/ (match[id], all pages)."""
        return self.read(who, collection, {"match[id]": stix_id, "match[version]": versions})

    def get_object(self, who: str, collection: str, stix_id: str, versions: str = "last") -> list[dict[str, Any]]:
        """objects/{id}/ as `who`: the objects received, [] when it answers 404."""
        r = self.get(who, f"/api/collections/{collection}/objects/{stix_id}/", {"match[version]": versions})
        if r.status_code == 404:
            return []
        assert r.status_code == 200, r.text
        return r.json().get("objects", [])  # type: ignore[no-any-return]

    def delete(self, who: str, collection: str, stix_id: str) -> httpx.Response:
        return httpx.delete(
            f"{self.url}/api/collections/{collection}/objects/{stix_id}/", headers=self.headers(who), timeout=30
        )

    @contextmanager
    def stream(
        self, who: str, collection: str, params: dict[str, str] | None = None, **headers: str
    ) -> Iterator[Events]:
        """The collection's live stream as `who` (200 expected)."""
        with httpx.stream(
            "GET",
            f"{self.url}/api/collections/{collection}/stream/",
            params=params,
            headers={**self.headers(who, accept="text/event-stream"), **headers},
            timeout=httpx.Timeout(10.0, read=8.0),
        ) as r:
            assert r.status_code == 200, r.read()
            yield Events(r)

    def stream_status(self, who: str, collection: str, params: dict[str, str]) -> int:
        """Only the status code of a stream request (the stream, if it starts, is closed at once)."""
        with httpx.stream(
            "GET",
            f"{self.url}/api/collections/{collection}/stream/",
            params=params,
            headers=self.headers(who, accept="text/event-stream"),
            timeout=httpx.Timeout(10.0, read=8.0),
        ) as r:
            return r.status_code

    def restart(self) -> None:
        """Stop the server and start it again on the same database."""
        self.server.stop()
        self.server = start_server(self.db, self.tokens["admin"], logs=self.folder, env=self.env)

    def audit(self, *args: str) -> list[dict[str, Any]]:
        """`relto audit show --json` on the node's database."""
        out = relto("audit", "show", *self.db.args, "--json", *args)
        return [json.loads(line) for line in out.splitlines() if line.strip()]


# Runs several `relto` command lines through the real CLI entry point in one Python process: the same commands
# as `python -m relto ...`, without paying for an interpreter start per command.
_MANY = """
import contextlib, io, json, sys
from relto.cli import main
out = []
for argv in json.loads(sys.argv[1]):
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        main(argv, prog_name="relto", standalone_mode=False)
    out.append(buffer.getvalue().strip())
print(json.dumps(out))
"""


def relto_many(*commands: list[str]) -> list[str]:
    """The stdout of each `relto` command line, run one after the other in one process."""
    done = subprocess.run(
        [sys.executable, "-c", _MANY, json.dumps(commands)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@contextmanager
def running_node(
    db: Database, folder: Path, *, env: dict[str, str] | None = None, collections: int = POOL
) -> Iterator[Node]:
    """`relto init` (GBR's node), `relto token issue` (SECRET, per nation), `relto collection add` (spare
    collections for the tests), and `relto serve`."""
    admin = relto("init", *db.args, "--nation", "GBR")
    issue = [["token", "issue", *db.args, "--nation", n, "--clearance", "SECRET", "--name", n] for n in NATIONS]
    add = [["collection", "add", *db.args, "attack"] for _ in range(collections)]
    printed = relto_many(*issue, *add)
    tokens = {"admin": admin, **dict(zip(NATIONS, printed, strict=False))}
    server = start_server(db, admin, logs=folder, env=env)
    node = Node(server, tokens, folder, env, printed[len(NATIONS) :])
    try:
        yield node
    finally:
        node.server.stop()


@pytest.fixture(scope="session", params=BACKENDS)
def node(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, postgres: PostgresDatabases | None
) -> Iterator[Node]:
    """The package's node on each back-end (one server per back-end)."""
    folder = tmp_path_factory.mktemp(f"attacks-{request.param}")
    with new_database(request.param, folder, postgres) as db, running_node(db, folder) as running:
        yield running
