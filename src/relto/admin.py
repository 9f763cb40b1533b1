"""Running a node: create it, issue and revoke tokens, edit communities, serve it.

The `relto` command is a thin shell over these; the demo, the tests and the benchmarks call them too, so no
module needs to import the command line.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from relto.domain.communities import default_communities
from relto.domain.errors import ReltoError
from relto.domain.levels import Ladder
from relto.federation.tls import check_server_files
from relto.logs import log_config
from relto.node import Node
from relto.operations import issue_token as issue_token
from relto.operations import join_community as join_community
from relto.operations import leave_community as leave_community
from relto.operations import parse_day as parse_day
from relto.operations import revoke_token as revoke_token
from relto.settings import Settings
from relto.store import Store, open_store
from relto.store.base import NodeInfo

PRIVATE_UMASK = 0o077


def private_umask() -> None:
    """From now on this process creates files for its owner alone."""
    # Whatever this process creates (SQLite's files, backups) holds every object and the decision log.
    os.umask(PRIVATE_UMASK)


def open_private_store(data: Path | None, database: str | None) -> Store:
    """The store at --data or --database, with this process creating private files from now on."""
    # open_store also creates the node's files private and refuses them open.
    private_umask()
    return open_store(data=data, url=database)


def open_node(data: Path | None, database: str | None) -> Node:
    """The initialised node at --data or --database (close it when done)."""
    store = open_private_store(data, database)
    if not store.initialised():
        store.close()
        raise ReltoError("this data directory holds no relto node yet: run `relto init --data DIR --nation XXX`")
    return Node(store, Settings.from_env())


def create_node(data: Path | None, database: str | None, *, nation: str, title: str | None, ladder: Ladder) -> str:
    """Initialise a node for `nation` and return its first admin token."""
    store = open_private_store(data, database)
    try:
        info = NodeInfo(
            node_id=str(uuid.uuid4()), nation=nation, levels=ladder.levels, title=title or f"relto node ({nation})"
        )
        store.initialise(info, default_communities())
        return issue_token(store, nation=nation, clearance=ladder.levels[-1], organisation="", name="admin", admin=True)
    finally:
        store.close()


def serve(
    node: Node,
    host: str,
    port: int,
    *,
    tls: tuple[Path, Path] | None = None,
    access_log: bool = False,
    log_format: str = "text",
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Serve the node's TAXII 2.1 API in this process until interrupted (over HTTPS with tls=(cert, key)), and
    follow its peers. `on_ready` is called once the port accepts connections; logs go to stderr in `log_format`
    (relto.logs), with one line per request when `access_log`."""
    import uvicorn

    from relto.api import create_app

    certfile, keyfile = _tls_files(tls)
    check_port_free(host, port)
    config = uvicorn.Config(
        create_app(node),
        host=host,
        port=port,
        log_config=log_config(access_log, log_format),
        access_log=False,  # the app logs each request itself, with its route and duration (relto.api.access)
        # Live streams never end by themselves: give them two seconds on shutdown (clients resume elsewhere).
        timeout_graceful_shutdown=2,
        ssl_certfile=certfile,
        ssl_keyfile=keyfile,
    )
    with following(node):
        _run_server(config, on_ready)


def check_port_free(host: str, port: int) -> None:
    """Refuse, in relto's words, a port another program holds (before anything starts)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ReltoError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}; another program (maybe another relto) "
                "holds it: stop it, or choose another port with --port"
            ) from None


def _run_server(config: Any, on_ready: Callable[[], None] | None) -> None:
    """Run uvicorn, calling `on_ready` once its sockets accept connections (not before: a client told the URL
    must be able to use it)."""
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if self.started and on_ready is not None:
                on_ready()

    Server(config).run()


def _tls_files(tls: tuple[Path, Path] | None) -> tuple[str | None, str | None]:
    """uvicorn's ssl_certfile and ssl_keyfile, checked first so that a bad pair fails with a sentence."""
    if tls is None:
        return None, None
    check_server_files(*tls)
    return str(tls[0]), str(tls[1])


def serve_workers(
    data: Path | None,
    database: str | None,
    host: str,
    port: int,
    workers: int,
    *,
    tls: tuple[Path, Path] | None = None,
    access_log: bool = False,
    log_format: str = "text",
) -> None:
    """Serve with several worker processes sharing the port; each builds its own node (app_from_env). This
    process alone follows the peers, so each batch is applied once."""
    import uvicorn

    certfile, keyfile = _tls_files(tls)
    if database:
        os.environ["RELTO_DATABASE_URL"] = database
    if data:
        os.environ["RELTO_DATA"] = str(data)
    node = open_node(data, database)
    try:
        with following(node):
            uvicorn.run(
                "relto.admin:app_from_env",
                factory=True,
                timeout_graceful_shutdown=2,
                host=host,
                port=port,
                workers=workers,
                log_config=log_config(access_log, log_format),
                access_log=False,
                ssl_certfile=certfile,
                ssl_keyfile=keyfile,
            )
    finally:
        node.close()


@contextmanager
def following(node: Node) -> Iterator[None]:
    """Follow the node's peers in background threads while the block runs."""
    from relto.federation.sync import Syncer

    syncer = Syncer(node)
    syncer.start()
    try:
        yield
    finally:
        syncer.stop()


def app_from_env() -> Any:
    """The ASGI app of one worker process, built from RELTO_DATA / RELTO_DATABASE_URL (for --workers)."""
    from relto.api import create_app

    data = os.environ.get("RELTO_DATA")
    return create_app(open_node(Path(data) if data else None, os.environ.get("RELTO_DATABASE_URL")))
