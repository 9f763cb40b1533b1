"""Following peers: one thread per peer reads its federation feed from the durable cursor and applies each batch
in one transaction with the cursor (so kill -9 at any moment resumes exactly there), then long-polls at the
head to follow live. A failing peer is retried with exponential backoff and jitter, and why it fails is kept
on its row for `relto peer list` (docs/federation.md).
"""

from __future__ import annotations

import dataclasses
import logging
import random
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import httpx
import orjson

from relto import __version__
from relto.domain.errors import ReltoError
from relto.domain.timestamps import now_micros
from relto.federation import tls
from relto.node import Node
from relto.store.base import PeerRecord

log = logging.getLogger("relto.federation")

FEED = "/relto/v1/federation/events/"
INFO = "/relto/v1/federation/"
BATCH = 2000  # events asked for per request
WAIT = 20.0  # seconds the peer may hold a caught-up request open
_BACKOFF_FIRST, _BACKOFF_MAX = 0.5, 60.0
_RECONCILE = 0.5  # seconds between looks at the peers table (added and removed peers)
_RECHECK = 2.0  # seconds between checks, while following, that the peer's row is still the one we follow


class PeerFailure(ReltoError):
    """Following a peer failed for a reason its operator (or ours) must fix: the message says which."""


def client_for(peer: PeerRecord, timeout: float = WAIT + 15) -> httpx.Client:
    """An HTTP client for this peer: its token, and its pinned certificate when it has one."""
    verify: ssl.SSLContext | bool = True
    if peer.url.startswith("https://") and peer.certificate:
        verify = tls.pinned_context(peer.certificate)
    return httpx.Client(
        base_url=peer.url.rstrip("/"),
        headers={"Authorization": f"Bearer {peer.token}", "User-Agent": f"relto/{__version__} federation"},
        timeout=httpx.Timeout(timeout, connect=10.0),
        verify=verify,
    )


def checked_json(response: httpx.Response, url: str) -> Any:
    """The JSON of a peer's answer, or PeerFailure saying what its refusal means."""
    if response.status_code == 200:
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise PeerFailure(f"{url} answered with something that is not JSON: is it a relto node?") from None
    detail = ""
    try:
        body = orjson.loads(response.content)
        detail = f": {body.get('title', '')} - {body.get('description', '')}" if isinstance(body, dict) else ""
    except orjson.JSONDecodeError:
        pass
    if response.status_code == 401:
        raise PeerFailure(
            f"{url} refused the token (401{detail}); ask its operator for a node token "
            "(relto token issue --peer or --relay-for), then `relto peer remove` and `relto peer add` again"
        )
    if response.status_code == 403:
        raise PeerFailure(f"{url} refused: the token it issued is not a node token (403{detail})")
    if response.status_code == 404:
        raise PeerFailure(f"{url} has no federation feed (404): is the URL the node's base URL, and is it relto?")
    raise PeerFailure(f"{url} answered {response.status_code}{detail}")


def describe(exc: BaseException, peer: PeerRecord) -> str:
    """One line saying why talking to a peer failed."""
    if isinstance(exc, ReltoError):
        return exc.message
    if isinstance(exc, ssl.SSLError) or (isinstance(exc, httpx.ConnectError) and _ssl_cause(exc)):
        if peer.certificate:
            return tls.explain_tls_failure(peer.url, peer.certificate)
        return f"TLS failed with {peer.url}: {exc}"
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect to {peer.url}: {exc or 'connection refused'}"
    if isinstance(exc, httpx.TimeoutException):
        return f"{peer.url} did not answer in time"
    if isinstance(exc, httpx.HTTPError):
        return f"talking to {peer.url} failed: {type(exc).__name__} {exc}"
    return f"{type(exc).__name__}: {exc}"


def _ssl_cause(exc: BaseException) -> bool:
    """Whether an ssl.SSLError lies under `exc` (httpx wraps httpcore's error, which wraps the ssl module's)."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, ssl.SSLError):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def pin_certificate(node: Node, peer: PeerRecord) -> PeerRecord:
    """A peer with a fingerprint and no certificate yet: fetch it (no token is sent), check the fingerprint,
    keep it; every later connection trusts exactly that certificate."""
    if not peer.url.startswith("https://") or not peer.fingerprint or peer.certificate:
        return peer
    pem = tls.pin(peer.url, peer.fingerprint)
    node.store.update_peer(peer.name, certificate=pem)
    return node.store.peer(peer.name) or peer


class PeerSync:
    """Follows one peer until stopped (or removed)."""

    def __init__(self, node: Node, name: str, stop: threading.Event, *, batch: int = BATCH, wait: float = WAIT) -> None:
        self.node = node
        self.name = name
        self.stop = stop
        self.batch = batch
        self.wait = wait
        self._applied = False  # a batch was applied since the last failure

    def run(self) -> None:
        """Sync until stopped: catch up, follow live, back off and retry on failure."""
        backoff = _BACKOFF_FIRST
        while not self.stop.is_set():
            peer = self.node.store.peer(self.name)
            if peer is None:
                return
            try:
                peer = pin_certificate(self.node, peer)
                with client_for(peer, timeout=self.wait + 15) as client:
                    self._follow(client, peer)
            except Exception as exc:  # any failure is the peer's state, shown by `peer list`; retry later
                if self._applied:
                    backoff, self._applied = _BACKOFF_FIRST, False  # it worked for a while: start over
                message = describe(exc, peer)
                log.warning("peer %s: %s", self.name, message)
                try:
                    self.node.store.update_peer(self.name, last_error=message, last_error_at=now_micros())
                except Exception:
                    log.exception("peer %s: could not record the failure", self.name)
                self.stop.wait(min(backoff, _BACKOFF_MAX) * random.uniform(0.5, 1.5))
                backoff = min(backoff * 2, _BACKOFF_MAX)

    def _fetch(self, client: httpx.Client, peer: PeerRecord, cursor: str) -> Any:
        """One batch of the peer's feed after `cursor`, parsed."""
        params = {"limit": str(self.batch), "wait": str(self.wait), "from": self.node.info.node_id}
        if cursor:
            params["next"] = cursor
        return checked_json(client.get(FEED, params=params), peer.url)

    def _follow(self, client: httpx.Client, peer: PeerRecord) -> None:
        """Apply batch after batch. The next batch is asked for (its cursor is in this one's answer) before
        this one is applied: while catching up the peer's reading and ours overlap, and at the head the
        long poll is already waiting when the peer writes again. Only applied batches move the stored cursor:
        a batch fetched and never applied is simply asked for again."""
        pending = _ahead(self._fetch, client, peer, peer.cursor)
        checked = time.monotonic()
        while not self.stop.is_set():
            doc = pending.result()
            if not isinstance(doc, dict) or not isinstance(doc.get("next"), str):
                raise PeerFailure(f"{peer.url} answered with something that is not a relto federation feed")
            pending = _ahead(self._fetch, client, peer, doc["next"])
            outcome, _, _ = self.node.federation.receive(peer, doc)
            self._applied = True
            if outcome.refused:
                log.warning("peer %s: %d versions refused, last: %s", self.name, outcome.refused, outcome.last_refusal)
            peer = dataclasses.replace(
                peer, cursor=doc["next"], remote_node=outcome.remote_node, remote_nation=outcome.remote_nation
            )
            if time.monotonic() - checked > _RECHECK:
                checked = time.monotonic()
                found = self.node.store.peer(self.name)
                if found is None or found.cursor != doc["next"] or found.url != peer.url:
                    return  # removed, re-added or changed while we read: start again from what is stored


def _ahead(fetch: Callable[..., Any], *args: Any) -> Future[Any]:
    """Run `fetch(*args)` in a daemon thread (a long poll must never hold up the process's exit)."""
    future: Future[Any] = Future()

    def run() -> None:
        try:
            future.set_result(fetch(*args))
        except BaseException as exc:  # handed to whoever waits for the answer
            future.set_exception(exc)

    threading.Thread(target=run, name="relto-peer-fetch", daemon=True).start()
    return future


class Syncer:
    """Keeps every peer of a node followed, each in its own thread; picks up added and removed peers."""

    def __init__(self, node: Node, *, runner: Callable[..., PeerSync] = PeerSync, **options: Any) -> None:
        self.node = node
        self.runner = runner
        self.options = options
        self._running: dict[str, tuple[threading.Thread, threading.Event]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Begin syncing in the background."""
        self._thread = threading.Thread(target=self._reconcile_forever, name="relto-federation", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop every peer's thread, waiting at most `timeout` seconds in all: a thread still waiting on its
        peer is a daemon and ends with the process (a batch being applied commits or rolls back whole)."""
        self._stop.set()
        for _, stop in self._running.values():
            stop.set()
        deadline = time.monotonic() + timeout
        for thread in [self._thread, *(t for t, _ in self._running.values())]:
            if thread is not None:
                thread.join(max(0.0, deadline - time.monotonic()))

    def _reconcile_forever(self) -> None:
        while not self._stop.is_set():
            try:
                self.reconcile()
            except Exception:
                log.exception("federation: could not read the peers table")
            self._stop.wait(_RECONCILE)

    def reconcile(self) -> None:
        """Start threads for new peers, stop those of removed ones."""
        names = {p.name for p in self.node.store.peers()}
        for name in list(self._running):
            thread, stop = self._running[name]
            if name not in names or not thread.is_alive():
                stop.set()
                del self._running[name]
        for name in sorted(names - self._running.keys()):
            stop = threading.Event()
            sync = self.runner(self.node, name, stop, **self.options)
            thread = threading.Thread(target=sync.run, name=f"relto-peer-{name}", daemon=True)
            self._running[name] = (thread, stop)
            thread.start()
