"""Shared fixtures: a fresh node on a temporary SQLite file, an in-process client, and the real server."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import create_engine, make_url
from sqlalchemy.exc import DBAPIError
from starlette.testclient import TestClient

from relto.admin import issue_token
from relto.api import create_app
from relto.domain.communities import default_communities
from relto.domain.levels import DEFAULT_LEVELS
from relto.node import Node
from relto.store import Store, open_store
from relto.store.base import NodeInfo
from relto.store.postgres import PostgresStore

TAXII = "application/taxii+json;version=2.1"
ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
IN_CI = os.environ.get("CI") == "true"
POSTGRES_URL = os.environ.get("RELTO_TEST_POSTGRES_URL")
BACKENDS = ("sqlite", "postgres")


@dataclass(frozen=True)
class Database:
    """Where a test node lives: its back-end and the CLI arguments that name it."""

    backend: str
    args: tuple[str, ...]

    def open(self) -> Store:
        if self.backend == "sqlite":
            return open_store(data=Path(self.args[1]))
        return open_store(url=self.args[1])


class PostgresDatabases:
    """Fresh PostgreSQL databases for tests, copied from a migrated template (fast)."""

    def __init__(self, url: str) -> None:
        self.url = make_url(url)
        self.admin = create_engine(self.url.set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
        self.template = f"relto_tpl_{uuid.uuid4().hex[:10]}"
        self.leftover: list[str] = []
        with self.admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{self.template}"')
        PostgresStore(self._url(self.template)).close()  # runs the migrations once

    def _url(self, name: str) -> str:
        return self.url.set(database=name).render_as_string(hide_password=False)

    def create(self) -> str:
        name = f"relto_t_{uuid.uuid4().hex[:12]}"
        with self.admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        return self._url(name)

    def drop(self, url: str) -> None:
        name = make_url(url).database
        if name and not self._drop(name, attempts=8):
            self.leftover.append(name)  # an autovacuum worker holds it (we may not end those): try at the end

    def _drop(self, name: str, attempts: int) -> bool:
        for attempt in range(attempts):
            try:
                with self.admin.connect() as conn:
                    conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                return True
            except DBAPIError:
                time.sleep(0.25 * (attempt + 1))
        return False

    def close(self) -> None:
        for name in [*self.leftover, self.template]:
            self._drop(name, attempts=20)
        self.admin.dispose()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresDatabases | None]:
    if not POSTGRES_URL:
        yield None
        return
    databases = PostgresDatabases(POSTGRES_URL)
    yield databases
    databases.close()


@contextmanager
def new_database(backend: str, folder: Path, postgres: PostgresDatabases | None) -> Iterator[Database]:
    """A database of the given back-end for one test (or one module), removed afterwards."""
    if backend == "sqlite":
        yield Database("sqlite", ("--data", str(folder / "node")))
        return
    if postgres is None:
        if IN_CI:
            pytest.fail("CI runs every back-end: set RELTO_TEST_POSTGRES_URL (.ci/run starts PostgreSQL)")
        pytest.skip("PostgreSQL tests run when RELTO_TEST_POSTGRES_URL is set")
    url = postgres.create()
    try:
        yield Database("postgres", ("--database", url))
    finally:
        postgres.drop(url)


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path: Path, postgres: PostgresDatabases | None) -> Iterator[Database]:
    with new_database(request.param, tmp_path, postgres) as db:
        yield db


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
            self.tokens[key] = issue_token(  # type: ignore[index]
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


def make_node(where: Path | Database, nation: str = "GBR", node_id: str = "test") -> Node:
    store = where.open() if isinstance(where, Database) else open_store(data=where)
    store.initialise(
        NodeInfo(node_id=node_id, nation=nation, levels=DEFAULT_LEVELS, title="test node"), default_communities()
    )
    return Node(store)


@pytest.fixture
def harness(database: Database) -> Iterator[Harness]:
    node = make_node(database)
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
    db: Database
    admin: str
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        stop_process(self.process)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if the process has not gone within 15 s."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def start_server(
    db: Database,
    admin: str,
    *extra: str,
    logs: Path | None = None,
    env: dict[str, str] | None = None,
    tls: ssl.SSLContext | None = None,
) -> Server:
    """Start `relto serve` and wait until it answers; with `tls` (a client context) it is polled over HTTPS."""
    port = free_port()
    log = (logs or Path(tempfile.gettempdir())) / f"relto-serve-{port}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "relto", "serve", *db.args, "--port", str(port), *extra],
            stdout=subprocess.DEVNULL,
            stderr=sink,
            env={**os.environ, **(env or {})},
        )
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"relto serve exited: {log.read_text()}")
        try:
            answer = httpx.get(f"{url}/taxii2/", headers={"Authorization": f"Bearer {admin}"}, verify=tls or True)
            if answer.status_code == 200:
                return Server(url, db, admin, process)
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("relto serve did not answer within 30 s")


@pytest.fixture
def server(database: Database, tmp_path: Path) -> Iterator[Server]:
    admin = relto("init", *database.args, "--nation", "GBR")
    srv = start_server(database, admin, logs=tmp_path)
    try:
        yield srv
    finally:
        srv.stop()
