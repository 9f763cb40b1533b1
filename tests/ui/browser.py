"""The browser setup the UI tests and scripts/screenshots.py share: Debian's Chromium driven by Playwright,
and a real `relto serve` on a loopback port with a collection and tokens of several nations."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from relto.admin import issue_token
from relto.domain.tearline import mark_objects
from relto.node import Node
from relto.store import open_store
from tests.conftest import TAXII, Database, Server, relto, start_server

CHROMIUM = os.environ.get("RELTO_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1366, "height": 768}


def chromium_path() -> str | None:
    """Debian's Chromium, if it is installed."""
    return CHROMIUM if Path(CHROMIUM).exists() or shutil.which(CHROMIUM) else None


@contextmanager
def browser() -> Iterator[Any]:
    """A headless Chromium (Playwright's sync API)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class Site:
    """A running node with a collection and tokens."""

    server: Server
    collection: str
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.server.url

    def publish(self, nation: str, objects: list[dict[str, Any]], **marking: Any) -> dict[str, Any]:
        """Mark objects and publish them through TAXII as `nation`."""
        marked = mark_objects(objects, **marking)
        answer = httpx.post(
            f"{self.url}/api/collections/{self.collection}/objects/",
            content=orjson.dumps(marked.envelope()),
            headers={"Authorization": f"Bearer {self.tokens[nation]}", "Accept": TAXII, "Content-Type": TAXII},
        )
        assert answer.status_code == 202, answer.text
        status: dict[str, Any] = answer.json()
        assert status["failure_count"] == 0, status
        return status


@contextmanager
def site(folder: Path) -> Iterator[Site]:
    """Start a node (GBR) with a collection, an admin token and analysts of GBR, KOR and UKR."""
    db = Database("sqlite", ("--data", str(folder / "node")))
    admin = relto("init", *db.args, "--nation", "GBR", "--title", "GBR national node")
    node = Node(open_store(data=folder / "node"))
    try:
        collection = node.add_collection("Coalition intel", "shared reporting").id
        tokens = {"admin": admin}
        for nation in ("GBR", "KOR", "UKR"):
            tokens[nation] = issue_token(
                node.store, nation=nation, clearance="SECRET", organisation="", name=f"{nation} analyst"
            )
    finally:
        node.close()
    server = start_server(db, admin, logs=folder)
    try:
        yield Site(server, collection, tokens)
    finally:
        server.stop()


def sign_in(page: Any, url: str, token: str) -> None:
    """Sign in through the real form and wait for the shell."""
    page.goto(url + "/")
    page.get_by_label("Your token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector("#who:not(:empty)")


def stix(kind: str, **fields: Any) -> dict[str, Any]:
    """A minimal STIX 2.1 object of `kind`."""
    import uuid

    from relto.domain.timestamps import format_timestamp, now_micros

    now = format_timestamp(now_micros())
    return {
        "type": kind,
        "spec_version": "2.1",
        "id": f"{kind}--{uuid.uuid4()}",
        "created": now,
        "modified": now,
        **fields,
    }
