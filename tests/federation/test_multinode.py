"""Federation through real processes on loopback: a coalition hub (run by BEL) and the GBR, KOR and USA nodes.

Each national node issues the hub a relay token for the three nations; the hub issues each nation a peer
token. Random marked objects are published on every node; after convergence, every nation's view on every node
must equal a reference computed from the markings alone (tests/federation/reference.py), and no node may hold a
version that none of the nations it serves may read. Then the hard parts: kill -9 mid-sync, a partition, and a
certificate that is not the pinned one.
"""

from __future__ import annotations

import random
import sqlite3
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from relto.admin import issue_token, open_node
from relto.domain.levels import DEFAULT_LEVELS, Ladder
from relto.domain.markings import TLP_IDS, releasability_marking
from relto.federation.peers import add_peer
from relto.store import open_store
from tests.conftest import TAXII, free_port, relto, stop_process
from tests.federation.reference import Published, carriable, visible

LADDER = Ladder.of(DEFAULT_LEVELS)
NATIONS = ("GBR", "KOR", "USA")
HUB = "BEL"
REL_TO_POOL = (
    ("KOR",),
    ("GBR",),
    ("USA",),
    ("GBR", "KOR"),
    ("USA", "KOR"),
    ("FVEY",),
    ("NATO",),
    ("IP4",),
    ("NATO", "KOR"),
    ("FRA",),
    ("NATO", "IP4", "UKR"),
)
LEVEL_POOL = ("UNCLASSIFIED", "RESTRICTED", "CONFIDENTIAL", "SECRET", "SECRET", "TOP SECRET")
TLP_POOL = (None, None, None, "green", "amber", "red", "amber+strict")
T0 = "2024-10-18T09:00:00.000Z"


@dataclass
class NodeProc:
    """One `relto serve` process and its data directory."""

    nation: str
    data: Path
    admin: str
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    extra: tuple[str, ...] = ()
    tls: ssl.SSLContext | None = None  # served over HTTPS (extra has --tls-cert/--tls-key): how to reach it

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def cli(self, *args: str) -> str:
        return relto(*args[:2], "--data", str(self.data), *args[2:])

    def token(self, nation: str, clearance: str = "SECRET", **kw: Any) -> str:
        """A token issued in process (quicker than the command for the many a test needs)."""
        store = open_store(data=self.data)
        try:
            return issue_token(store, nation=nation, clearance=clearance, organisation="", name="test", **kw)
        finally:
            store.close()

    def start(self) -> None:
        with (self.data.parent / f"{self.data.name}.log").open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "relto",
                    "serve",
                    "--data",
                    str(self.data),
                    "--port",
                    str(self.port),
                    *self.extra,
                ],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if (
                    httpx.get(f"{self.url}/taxii2/", headers=auth(self.admin), verify=self.tls or True).status_code
                    == 200
                ):
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.nation} node did not start")

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)

    def kill9(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def stored(self) -> list[tuple[str, str, str, str]]:
        """(collection, id, originator, version) of every version in the node's database."""
        db = sqlite3.connect(f"file:{self.data / 'relto.db'}?mode=ro", uri=True)
        try:
            rows = db.execute("SELECT collection, stix_id, originator, COALESCE(version_text, '') FROM objects")
            return [tuple(r) for r in rows]  # type: ignore[misc]
        finally:
            db.close()


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Accept": TAXII, "Content-Type": TAXII}


@dataclass
class Coalition:
    hub: NodeProc
    nodes: dict[str, NodeProc]
    collection: str
    readers: dict[tuple[str, str], str]  # (node nation, reader nation) -> read-only SECRET token
    writers: dict[str, str]

    def all(self) -> list[NodeProc]:
        return [self.hub, *self.nodes.values()]

    def view(self, where: NodeProc, nation: str) -> set[str]:
        token = self.readers[(where.nation, nation)]
        ids: set[str] = set()
        params: dict[str, Any] = {"limit": 1000}
        while True:
            r = httpx.get(f"{where.url}/api/collections/{self.collection}/objects/", params=params, headers=auth(token))
            assert r.status_code == 200, r.text
            page = r.json()
            ids |= {o["id"] for o in page.get("objects", []) if o["type"] == "report"}
            if not page.get("more"):
                return ids
            params["next"] = page["next"]

    def publish(self, nation: str, objects: list[dict[str, Any]]) -> None:
        node = self.nodes[nation]
        r = httpx.post(
            f"{node.url}/api/collections/{self.collection}/objects/",
            content=orjson.dumps({"objects": objects}),
            headers=auth(self.writers[nation]),
            timeout=60,
        )
        assert r.status_code == 202 and r.json()["failure_count"] == 0, r.text

    def peers(self, node: NodeProc) -> list[dict[str, Any]]:
        return orjson.loads(node.cli("peer", "list", "--json"))  # type: ignore[no-any-return]


def build(tmp_path: Path) -> Iterator[Coalition]:
    """The hub and three national nodes, linked both ways, with one shared collection."""
    hub = NodeProc(HUB, tmp_path / "hub", "")
    nodes = {n: NodeProc(n, tmp_path / n.lower(), "") for n in NATIONS}
    for node in (hub, *nodes.values()):
        node.admin = relto("init", "--data", str(node.data), "--nation", node.nation)
    collection = relto("collection", "add", "--data", str(nodes["GBR"].data), "intel")
    readers: dict[tuple[str, str], str] = {}
    writers: dict[str, str] = {}
    for node in (hub, *nodes.values()):
        for nation in NATIONS:
            readers[(node.nation, nation)] = node.token(nation, can_write=False)
    for nation, node in nodes.items():
        writers[nation] = node.token(nation, "TOP SECRET")
    try:
        for node in (hub, *nodes.values()):
            node.start()
        for nation, node in nodes.items():
            if nation == "GBR":  # one link made exactly as the docs say, through the commands
                relay = node.cli(
                    "token", "issue", "--nation", HUB, "--clearance", "SECRET", "--relay-for", ",".join(NATIONS)
                )
                hub.cli("peer", "add", nation.lower(), node.url, "--token", relay)
                peer = hub.cli("token", "issue", "--nation", nation, "--clearance", "SECRET", "--peer")
                node.cli("peer", "add", "hub", hub.url, "--token", peer, "--speaks-for", ",".join(NATIONS))
                continue
            relay = node.token(HUB, kind="relay", relay_for=",".join(NATIONS))
            link(hub, nation.lower(), node.url, relay, "")
            link(node, "hub", hub.url, hub.token(nation, kind="peer"), ",".join(NATIONS))
        coalition = Coalition(hub, nodes, collection, readers, writers)

        def everywhere() -> bool:
            return all(
                httpx.get(f"{n.url}/api/collections/{collection}/", headers=auth(n.admin)).status_code == 200
                for n in coalition.all()
            )

        wait_for(everywhere, 30, "the collection on every node")
        yield coalition
    finally:
        for node in (hub, *nodes.values()):  # all at once: each takes a couple of seconds to shut down
            if node.process is not None and node.process.poll() is None:
                node.process.terminate()
        for node in (hub, *nodes.values()):
            node.stop()


def link(follower: NodeProc, name: str, url: str, token: str, speaks_for: str) -> None:
    """`relto peer add`, in process."""
    node = open_node(follower.data, None)
    try:
        add_peer(node, name, url, token, speaks_for=speaks_for)
    finally:
        node.close()


def random_objects(rng: random.Random, nation: str, count: int) -> tuple[list[dict[str, Any]], list[Published]]:
    """`count` reports of `nation` under random markings, with their definitions; and what the reference needs."""
    objects: dict[str, dict[str, Any]] = {}
    published = []
    for i in range(count):
        level, rel_to, tlp = rng.choice(LEVEL_POOL), rng.choice(REL_TO_POOL), rng.choice(TLP_POOL)
        definition = releasability_marking(level, rel_to, LADDER)
        objects[definition["id"]] = definition
        refs = [definition["id"]] + ([TLP_IDS[tlp]] if tlp else [])
        stix_id = f"report--{uuid.UUID(int=rng.getrandbits(128), version=4)}"
        objects[stix_id] = {
            "type": "report",
            "spec_version": "2.1",
            "id": stix_id,
            "created": T0,
            "modified": T0,
            "name": f"{nation} report {i}",
            "published": T0,
            "object_refs": [f"identity--{uuid.uuid4()}"],
            "object_marking_refs": refs,
        }
        published.append(Published(stix_id, nation, LADDER.rank(level), rel_to, tlp))
    return list(objects.values()), published


def expected_views(published: list[Published], hub_serves: tuple[str, ...]) -> dict[tuple[str, str], set[str]]:
    """(node nation, reader nation) -> the report ids it must see, from the markings alone."""
    on: dict[str, set[Published]] = {n: {p for p in published if p.origin == n} for n in (HUB, *NATIONS)}
    on[HUB] = {p for p in published if carriable(p) and any(visible(n, p, clearance=3) for n in hub_serves)}
    for n in NATIONS:
        # From the hub: what its peer token (nation n, SECRET) may read there.
        on[n] |= {p for p in on[HUB] if visible(n, p, clearance=3) and carriable(p)}
    return {(m, r): {p.id for p in on[m] if visible(r, p, clearance=3)} for m in on for r in NATIONS}


def wait_for(check: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"no convergence within {seconds} s: {what}")


def converged(c: Coalition, expected: dict[tuple[str, str], set[str]]) -> Callable[[], bool]:
    def check() -> bool:
        return all(c.view(node, nation) == expected[(node.nation, nation)] for node in c.all() for nation in NATIONS)

    return check


def assert_views(c: Coalition, expected: dict[tuple[str, str], set[str]]) -> None:
    for node in c.all():
        for nation in NATIONS:
            got, want = c.view(node, nation), expected[(node.nation, nation)]
            assert got == want, f"{nation} on {node.nation}: extra {got - want}, missing {want - got}"


@pytest.fixture
def coalition(tmp_path: Path) -> Iterator[Coalition]:
    yield from build(tmp_path)


def test_coalition_converges_to_the_reference(coalition: Coalition) -> None:
    rng = random.Random(20241018)
    published: list[Published] = []
    for nation in NATIONS:
        objects, made = random_objects(rng, nation, 25)
        coalition.publish(nation, objects)
        published += made
    expected = expected_views(published, NATIONS)
    wait_for(converged(coalition, expected), 60, "every nation's view on every node")
    assert_views(coalition, expected)
    # No node holds a report that none of the nations it serves may read (its own nation, or the hub's three).
    by_id = {p.id: p for p in published}
    for node in coalition.all():
        serves = NATIONS if node is coalition.hub else (node.nation,)
        for _, stix_id, originator, _ in node.stored():
            if stix_id.startswith("report--"):
                p = by_id[stix_id]
                assert p.origin == node.nation or any(visible(n, p, clearance=3) for n in serves), (node.nation, p)
                assert originator == p.origin
    # Each (id, version) once per node, and quiet: nothing is re-sent once converged.
    for node in coalition.all():
        rows = node.stored()
        assert len(rows) == len(set(rows))
    before = {n.nation: sum(p["received"] for p in coalition.peers(n)) for n in coalition.all()}
    time.sleep(2)
    after = {n.nation: sum(p["received"] for p in coalition.peers(n)) for n in coalition.all()}
    assert before == after
    for node in coalition.all():
        assert all(p["state"] == "following" and p["refused"] == 0 for p in coalition.peers(node)), node.nation


def test_kill_nine_mid_sync_and_partition(coalition: Coalition) -> None:
    rng = random.Random(7)
    published: list[Published] = []
    kor = coalition.nodes["KOR"]
    # A backlog large enough that the kills land mid-sync.
    for _ in range(4):
        objects, made = random_objects(rng, "GBR", 300)
        coalition.publish("GBR", objects)
        published += made
    for _ in range(3):
        time.sleep(rng.uniform(0.2, 0.6))
        kor.kill9()
        kor.start()
    # A partition: KOR's node down while the others publish.
    kor.stop()
    for nation in ("GBR", "USA"):
        objects, made = random_objects(rng, nation, 40)
        coalition.publish(nation, objects)
        published += made
    expected = expected_views(published, NATIONS)
    wait_for(
        lambda: coalition.view(coalition.nodes["USA"], "USA") == expected[("USA", "USA")], 60, "USA while KOR is down"
    )
    mark = hub_decision_head(coalition.hub)
    kor.start()
    wait_for(converged(coalition, expected), 90, "after the kills and the partition")
    assert_views(coalition, expected)
    rows = kor.stored()
    assert len(rows) == len(set(rows))
    # Caught up from its cursor: after the partition the hub released to KOR's node each new report once, and
    # none that KOR's node already had.
    time.sleep(1.5)  # the hub's decision log is written in batches
    sent = [i for i in hub_released_to(coalition.hub, "KOR", after=mark) if i.startswith("report--")]
    new = {p.id for p in published[-80:] if p.origin != "KOR" and carriable(p) and visible("KOR", p, clearance=3)}
    assert sorted(sent) == sorted(new)


def hub_decision_head(hub: NodeProc) -> int:
    time.sleep(1.5)
    db = sqlite3.connect(f"file:{hub.data / 'relto.db'}?mode=ro", uri=True)
    try:
        return int(db.execute("SELECT COALESCE(MAX(seq), 0) FROM decisions").fetchone()[0])
    finally:
        db.close()


def hub_released_to(hub: NodeProc, nation: str, after: int) -> list[str]:
    """The ids the hub released on the federation feed to node tokens of `nation` after decision `after`."""
    store = open_store(data=hub.data)
    try:
        records = store.decisions(after, 100_000, nation=nation, path="federation")
    finally:
        store.close()
    return [stix_id for record in records for stix_id, _ in record.items]
