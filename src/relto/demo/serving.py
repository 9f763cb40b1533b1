"""Serving demo nodes in this process: one uvicorn server per node on a thread, stopped together.

`relto serve` lets uvicorn own the main thread and its signals (and uvicorn re-raises SIGTERM after its
shutdown, which ends the process with 143 before any cleanup runs). The demo instead keeps the main thread
for itself: it waits for Ctrl-C or SIGTERM, then stops the replay, the servers and the followers, closes the
nodes and removes its temporary folder, and exits 0.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType

import uvicorn

from relto.federation.sync import Syncer
from relto.node import Node


@dataclass
class Served:
    """A node served on a thread, with its followers; `url` is its base URL (ending in /)."""

    node: Node
    url: str
    server: uvicorn.Server
    thread: threading.Thread
    syncer: Syncer
    asked_port: int

    def stop(self) -> None:
        """Stop following, stop serving (live streams get two seconds), close the node."""
        stop_all([self])


def stop_all(served: list[Served]) -> None:
    """Stop nodes together: followers first, then every server at once, then close the nodes."""
    # Long polls and live streams still open are cancelled at shutdown; uvicorn logs each as an error, and a
    # follower's poll cut short logs a 500. Expected when stopping, so not shown.
    for name in ("uvicorn.error", "relto.federation"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    for s in served:
        s.syncer.stop()
    for s in served:
        s.server.should_exit = True
    for s in served:
        s.thread.join(timeout=10)
        s.node.close()


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on `port`, or on any free port when it is busy (or 0)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.bind((host, 0))
    sock.listen(128)
    return sock


def start(node: Node, host: str, port: int) -> Served:
    """Serve `node` on a thread (its TAXII API, stream and federation feed), follow its peers; wait until up."""
    from relto.api import create_app

    sock = _listen(host, port)
    actual = int(sock.getsockname()[1])
    config = uvicorn.Config(
        create_app(node), log_level="warning", access_log=False, timeout_graceful_shutdown=2, lifespan="on"
    )
    server = uvicorn.Server(config)
    # Off the main thread uvicorn installs no signal handlers: the demo's main thread keeps them.
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"serve-{actual}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    if not server.started:
        raise RuntimeError(f"the demo node on port {actual} did not start")
    syncer = Syncer(node)
    syncer.start()
    shown = f"[{host}]" if ":" in host else host
    return Served(node, f"http://{shown}:{actual}/", server, thread, syncer, port)


SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def stopped_by_signals() -> Iterator[None]:
    """In the block, Ctrl-C or SIGTERM raises KeyboardInterrupt in the main thread, once: further signals are
    ignored while the demo cleans up (then the previous handlers are put back)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        for s in SIGNALS:
            signal.signal(s, signal.SIG_IGN)
        raise KeyboardInterrupt

    previous = {s: signal.signal(s, handler) for s in SIGNALS}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def wait_for_stop() -> None:
    """Block until Ctrl-C or SIGTERM (inside `stopped_by_signals`)."""
    while True:
        # Short sleeps: a signal delivered to another thread is handled when the main thread next runs.
        time.sleep(0.5)
