"""Shared fixtures: a fresh node on a temporary SQLite file, an in-process client, and the real server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from starlette.testclient import TestClient

from relto.api import create_app
from relto.cli import _issue
from relto.domain.communities import default_communities
from relto.domain.levels import DEFAULT_LEVELS
from relto.node import Node
from relto.store import open_store
from relto.store.base import NodeInfo

TAXII = "application/taxii+json;version=2.1"
ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def shared_data(name: str) -> Path:
    """A corpus from ../shared/data, or skip (outside CI) when this checkout has none beside it."""
    path = SHARED_DATA / name
    if not path.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{path} is missing: CI must run beside ../shared/data")
        pytest.skip(f"{path} is not here")
    return path


@dataclass
class Harness:
    """A node, its HTTP client, and helpers to mint tokens and collections."""

    node: Node
    client: TestClient
    tokens: dict[tuple[str, str], str] = field(default_factory=dict)

    def token(self, nation: str, clearance: str = "SECRET", **kw: Any) -> str:
        key = (nation, clearance, *sorted(kw.items()))
        if key not in self.tokens:
            self.tokens[key] = _issue(  # type: ignore[index]
                self.node.store, nation=nation, clearance=clearance, organisation="", name="test", **kw
            )
        return self.tokens[key]  # type: ignore[index]

    def headers(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}", "Accept": TAXII, "Content-Type": TAXII}

    def collection(self, title: str = "test") -> str:
        return self.node.add_collection(title).id

    def post(self, token: str, collection: str, objects: list[Any]) -> dict[str, Any]:
        r = self.client.post(
            f"/api/collections/{collection}/objects/",
            content=orjson.dumps({"objects": objects}),
            headers=self.headers(token),
        )
        assert r.status_code == 202, r.text
        return r.json()  # type: ignore[no-any-return]

    def get(self, token: str, path: str, **params: Any) -> httpx.Response:
        return self.client.get(path, params=params, headers=self.headers(token))


def make_node(path: Path, nation: str = "GBR") -> Node:
    store = open_store(data=path)
    store.initialise(
        NodeInfo(node_id="test", nation=nation, levels=DEFAULT_LEVELS, title="test node"), default_communities()
    )
    return Node(store)


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    node = make_node(tmp_path)
    with TestClient(create_app(node)) as client:
        yield Harness(node, client)
    node.store.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def relto(*args: str, env: dict[str, str] | None = None) -> str:
    """Run the real `relto` command; return its stdout."""
    done = subprocess.run(
        [sys.executable, "-m", "relto", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@dataclass
class Server:
    """A real `relto serve` process on a loopback port."""

    url: str
    data: Path
    admin: str
    process: subprocess.Popen[bytes]


def start_server(data: Path, admin: str, *extra: str) -> Server:
    port = free_port()
    log = data.parent / f"serve-{port}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "relto", "serve", "--data", str(data), "--port", str(port), *extra],
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"relto serve exited: {log.read_text()}")
        try:
            if httpx.get(f"{url}/taxii2/", headers={"Authorization": f"Bearer {admin}"}).status_code == 200:
                return Server(url, data, admin, process)
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("relto serve did not answer within 30 s")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    data = tmp_path / "node"
    admin = relto("init", "--data", str(data), "--nation", "GBR")
    srv = start_server(data, admin)
    try:
        yield srv
    finally:
        srv.process.terminate()
        try:
            srv.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            srv.process.kill()
