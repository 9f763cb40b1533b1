"""Managing the peers a node follows: add (checking the URL, token and certificate first), list, remove."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

import httpx

from relto.domain.communities import check_community_name
from relto.domain.errors import InvalidRequest, InvalidValue, NotFound
from relto.domain.parties import check_nation
from relto.domain.timestamps import now_micros
from relto.domain.tokens import split_token
from relto.federation import tls
from relto.federation.sync import INFO, checked_json, client_for, describe
from relto.node import Node
from relto.store.base import PeerRecord

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class Added:
    """What `peer add` learned: the record stored, and a warning when the peer could not be reached."""

    peer: PeerRecord
    warning: str = ""


def parse_list(text: str) -> tuple[str, ...]:
    """A comma-separated list of nations (ISO 3166-1 alpha-3) and community names, checked and upper-cased."""
    out = []
    for entry in (x.strip() for x in text.split(",")):
        if not entry:
            continue
        out.append(check_nation(entry) if len(entry) == 3 and entry.isalpha() else check_community_name(entry))
    if not out:
        raise InvalidValue("give at least one nation or community, comma-separated (e.g. KOR or NATO,UKR)")
    return tuple(dict.fromkeys(out))


def add_peer(node: Node, name: str, url: str, token: str, *, fingerprint: str = "", speaks_for: str = "") -> Added:
    """Follow the node at `url` with the token it issued for this node.

    The peer is asked who it is first (with its certificate pinned when a fingerprint is given): a refused
    token or a wrong certificate is an error now, not a surprise in `peer list` later. An unreachable peer is
    added all the same (it may be down for now), with a warning.
    """
    if not _NAME.match(name):
        raise InvalidValue(f"{name!r} is not a peer name: use 1-64 characters of a-z, 0-9, '.', '_' and '-'")
    if not re.match(r"^https?://[^/\s]+", url):
        raise InvalidValue(f"{url!r} is not a node URL: give its base URL, e.g. https://kor.example:8000")
    if split_token(token) is None:
        raise InvalidValue("the token is not a relto token (rt_...): give the one the peer's operator issued")
    if fingerprint:
        if not url.startswith("https://"):
            raise InvalidValue("--fingerprint pins a TLS certificate: the URL must be https://")
        fingerprint = tls.normalise_fingerprint(fingerprint)
    speaks = ",".join(parse_list(speaks_for)) if speaks_for else ""
    if node.store.peer(name) is not None:
        raise InvalidRequest(f"there is already a peer named {name!r}: remove it first")
    record = PeerRecord(
        name=name, url=url.rstrip("/"), token=token, fingerprint=fingerprint, speaks_for=speaks, created=now_micros()
    )
    warning = ""
    try:
        if fingerprint:
            record = PeerRecord(**{**record.__dict__, "certificate": tls.pin(record.url, fingerprint)})
        with client_for(record, timeout=10.0) as client:
            who = checked_json(client.get(INFO), record.url)
        if who.get("id") == node.info.node_id:
            raise InvalidRequest(f"{url} is this node itself: a node cannot follow itself")
        record = PeerRecord(
            **{**record.__dict__, "remote_node": str(who.get("id", "")), "remote_nation": str(who.get("nation", ""))}
        )
    except (httpx.ConnectError, httpx.TimeoutException, tls.PeerUnreachable) as exc:
        warning = f"could not reach it now ({describe(exc, record)}); it is added and will be retried"
    node.store.add_peer(record)
    return Added(record, warning)


def remove_peer(node: Node, name: str) -> None:
    """Stop following a peer (what it sent stays)."""
    if not node.store.remove_peer(name):
        raise NotFound(f"no peer named {name!r} (see `relto peer list`)")


def peer_view(peer: PeerRecord, now: int | None = None) -> dict[str, Any]:
    """What `relto peer list` shows of a peer: its state, lag in seconds, counts, cursor and last error."""
    now = now or now_micros()
    failing = bool(peer.last_error) and (peer.last_ok_at is None or (peer.last_error_at or 0) > peer.last_ok_at)
    if failing:
        state = "failing"
    elif peer.last_ok_at is None:
        state = "new"
    elif peer.behind_since is not None:
        state = "catching up"
    else:
        state = "following"
    lag = 0.0
    if peer.behind_since is not None:
        lag = max(0.0, (now - peer.behind_since) / 1e6)
    elif failing and peer.last_ok_at is not None:
        lag = max(0.0, (now - peer.last_ok_at) / 1e6)
    return {
        "name": peer.name,
        "url": peer.url,
        "state": state,
        "lag_seconds": round(lag, 3),
        "received": peer.received,
        "refused": peer.refused,
        "last_refusal": peer.last_refusal,
        "cursor": peer.cursor[:16] + "..." if len(peer.cursor) > 16 else peer.cursor,
        "last_error": peer.last_error if failing else "",
        "speaks_for": peer.speaks_for or (f"{peer.remote_nation} (its own nation)" if peer.remote_nation else ""),
        "node": peer.remote_node,
        "nation": peer.remote_nation,
        "pinned": peer.fingerprint,
        "last_ok": None
        if peer.last_ok_at is None
        else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(peer.last_ok_at / 1e6)),
    }
