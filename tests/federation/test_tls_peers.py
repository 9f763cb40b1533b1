"""Peers over TLS with pinned certificates, between real processes: GBR's node A serves HTTPS with the certificate
`relto init --tls` made; KOR's node B follows it with `relto peer add --fingerprint`. A node presenting another
certificate is refused when added, and when A's certificate is replaced B stops receiving and says why."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from relto.federation.tls import pinned_context
from tests.attacks.conftest import indicator as make
from tests.attacks.conftest import marking
from tests.conftest import relto
from tests.federation.test_multinode import NodeProc, auth, wait_for
from tests.federation.test_tls import FINGERPRINT_LINE, run

pytestmark = pytest.mark.slow

T0 = "2024-10-18T09:00:00.000Z"


@dataclass
class Pair:
    a: NodeProc  # GBR's, over HTTPS
    b: NodeProc  # KOR's, following A
    fingerprint: str  # A's first certificate
    collection: str
    writer: str  # GBR's writer on A
    reader: str  # KOR's reader on B
    peer_token: str  # what A issued B


def init_tls(data: Path, nation: str) -> tuple[str, str]:
    """`relto init --tls`: the admin token and the certificate's fingerprint it printed."""
    done = run("init", "--data", str(data), "--nation", nation, "--tls")
    assert done.returncode == 0, done.stderr
    found = FINGERPRINT_LINE.search(done.stderr)
    assert found is not None, done.stderr
    return done.stdout.strip(), found[1]


def serving_tls(node: NodeProc, folder: Path) -> None:
    """Serve `node` with the certificate and key in folder/tls/."""
    cert, key = folder / "tls" / "cert.pem", folder / "tls" / "key.pem"
    node.extra = ("--tls-cert", str(cert), "--tls-key", str(key))
    node.tls = pinned_context(cert.read_text())


def indicator(name: str) -> list[dict[str, Any]]:
    to_kor = marking("SECRET", "GBR", "KOR")
    return [to_kor, make([to_kor], name=name)]


def publish(pair: Pair, objects: list[dict[str, Any]]) -> None:
    r = httpx.post(
        f"{pair.a.url}/api/collections/{pair.collection}/objects/",
        content=orjson.dumps({"objects": objects}),
        headers=auth(pair.writer),
        verify=pair.a.tls or True,
        timeout=30,
    )
    assert r.status_code == 202 and r.json()["failure_count"] == 0, r.text


def names_on_b(pair: Pair) -> set[str]:
    r = httpx.get(f"{pair.b.url}/api/collections/{pair.collection}/objects/", headers=auth(pair.reader), timeout=30)
    if r.status_code == 404:
        return set()
    assert r.status_code == 200, r.text
    return {o.get("name", "") for o in r.json().get("objects", []) if o["type"] == "indicator"}


def peers_of(node: NodeProc) -> list[dict[str, Any]]:
    return orjson.loads(node.cli("peer", "list", "--json"))  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    folder = tmp_path_factory.mktemp("tls-peers")
    a = NodeProc("GBR", folder / "a", "")
    b = NodeProc("KOR", folder / "b", "")
    a.admin, fp = init_tls(a.data, "GBR")
    b.admin = relto("init", "--data", str(b.data), "--nation", "KOR")
    collection = relto("collection", "add", "--data", str(a.data), "intel")
    serving_tls(a, a.data)
    writer, reader = a.token("GBR"), b.token("KOR", can_write=False)
    peer_token = a.cli("token", "issue", "--nation", "KOR", "--clearance", "SECRET", "--peer")
    try:
        a.start()
        b.start()
        yield Pair(a, b, fp, collection, writer, reader, peer_token)
    finally:
        a.stop()
        b.stop()


def test_a_pinned_peer_syncs_over_https(pair: Pair) -> None:
    added = run("peer", "add", "--data", str(pair.b.data), "a", pair.a.url, "--token", pair.peer_token,
                "--fingerprint", pair.fingerprint)  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert pair.fingerprint in added.stderr and "node" in added.stderr
    publish(pair, indicator("over https"))
    wait_for(lambda: names_on_b(pair) == {"over https"}, 15, "the indicator on B")
    (view,) = peers_of(pair.b)
    assert view["pinned"] == pair.fingerprint and view["state"] in ("following", "catching up"), view


def test_adding_a_node_with_another_certificate_fails_naming_both_fingerprints(pair: Pair, tmp_path: Path) -> None:
    other = NodeProc("FRA", tmp_path / "c", "")
    other.admin, other_fp = init_tls(other.data, "FRA")
    serving_tls(other, other.data)
    other.start()
    try:
        refused = run("peer", "add", "--data", str(pair.b.data), "c", other.url, "--token", pair.peer_token,
                      "--fingerprint", pair.fingerprint)  # fmt: skip
    finally:
        other.stop()
    assert refused.returncode == 2, (refused.returncode, refused.stderr)
    assert pair.fingerprint in refused.stderr and other_fp in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
    assert [p["name"] for p in peers_of(pair.b)] == ["a"]  # nothing was added


def test_a_replaced_certificate_stops_the_sync_and_says_why(pair: Pair, tmp_path: Path) -> None:
    wait_for(lambda: "over https" in names_on_b(pair), 15, "the first indicator on B")
    received = peers_of(pair.b)[0]["received"]
    pair.a.stop()
    fresh = tmp_path / f"new-{uuid.uuid4().hex[:6]}"
    made = run("tls", "create", "--data", str(fresh))
    assert made.returncode == 0, made.stderr
    found = FINGERPRINT_LINE.search(made.stderr)
    assert found is not None and found[1] != pair.fingerprint
    new_fp = found[1]
    serving_tls(pair.a, fresh)
    pair.a.start()
    publish(pair, indicator("after the new certificate"))

    def failing() -> bool:
        (view,) = peers_of(pair.b)
        return view["state"] == "failing" and new_fp in view["last_error"]

    wait_for(failing, 20, "B's peer failing on the fingerprint")
    (view,) = peers_of(pair.b)
    assert pair.fingerprint in view["last_error"], view
    time.sleep(1)
    assert names_on_b(pair) == {"over https"}
    assert peers_of(pair.b)[0]["received"] == received
