"""A publish request's memory is bounded: the ceiling per request and the budget documented in configuration.md.

The ceilings are read from docs/configuration.md, so the documentation cannot promise less than is measured here.
Memory is what tracemalloc counts (every Python allocation, orjson's included): an upper bound on what the
request adds to the process's resident memory.
"""

from __future__ import annotations

import asyncio
import re
import threading
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from relto.admin import issue_token
from relto.api import create_app
from relto.api.app import ByteBudget
from relto.domain.communities import default_communities
from relto.domain.levels import DEFAULT_LEVELS, Ladder
from relto.domain.markings import releasability_marking
from relto.node import Node
from relto.settings import Settings
from relto.store import open_store
from relto.store.base import NodeInfo
from tests.conftest import ROOT, TAXII

MIB = 1024 * 1024
# The memory tests run at a smaller max_content_length than the default (8 MiB) to stay fast: the documented
# ceilings are multiples of it, and fixed costs only make the multiple measured here larger.
LIMIT = 2 * MIB
DOC = (ROOT / "docs" / "configuration.md").read_text()


def documented(label: str) -> int:
    """N from the table in docs/configuration.md: "| <label> ... | **N** times max_content_length ... |"."""
    found = re.search(r"\| " + re.escape(label) + r"[^|\n]*\| \*\*(\d+)\*\* times max_content_length", DOC)
    assert found, f"docs/configuration.md no longer states the ceiling for {label!r} as **N** times max_content_length"
    return int(found.group(1))


def make(tmp_path: Path, settings: Settings) -> tuple[Node, str, str]:
    """A node with these settings, a writer's token and a collection."""
    store = open_store(data=tmp_path / "node")
    store.initialise(NodeInfo(node_id="t", nation="GBR", levels=DEFAULT_LEVELS, title="t"), default_communities())
    node = Node(store, settings)
    token = issue_token(store, nation="GBR", clearance="SECRET", organisation="", name="writer")
    return node, token, node.add_collection("memory").id


def indicators(size: int, first: int = 0) -> bytes:
    """An envelope of just under `size` bytes: a REL TO marking and ~540-byte indicators (ids from `first`)."""
    marking = releasability_marking("SECRET", ["GBR", "USA", "NATO"], Ladder.of(DEFAULT_LEVELS))
    parts, i = [orjson.dumps(marking)], first
    total = len(parts[0]) + 16
    while total < size - 1024:
        part = orjson.dumps(
            {
                "type": "indicator",
                "spec_version": "2.1",
                "id": f"indicator--{uuid.UUID(int=i + 1, version=4)}",
                "created": "2025-01-02T03:04:05.000Z",
                "modified": "2025-01-02T03:04:05.000Z",
                "name": f"Malicious host {i}",
                "description": "Command and control server seen in a phishing campaign against coalition logistics.",
                "indicator_types": ["malicious-activity"],
                "pattern": f"[ipv4-addr:value = '10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}']",
                "pattern_type": "stix",
                "valid_from": "2025-01-02T03:04:05Z",
                "labels": ["c2"],
                "object_marking_refs": [marking["id"]],
            }
        )
        parts.append(part)
        total += len(part) + 1
        i += 1
    return b'{"objects":[' + b",".join(parts) + b"]}"


async def in_chunks(body: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    """The body as a server receives it: 64 KiB at a time (the server copies them into one)."""
    view = memoryview(body)
    for start in range(0, len(body), size):
        yield bytes(view[start : start + size])


def post(node: Node, token: str, collection: str, body: bytes) -> tuple[httpx.Response, int]:
    """POST an envelope through the ASGI app; the response and the peak bytes allocated meanwhile."""
    app = create_app(node)
    headers = {"Authorization": f"Bearer {token}", "Accept": TAXII, "Content-Type": TAXII}

    async def send() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://relto") as client:
            url = f"/api/collections/{collection}/objects/"
            return await client.post(url, content=in_chunks(body), headers=headers, timeout=60)

    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        response = asyncio.run(send())
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return response, peak


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[tuple[Node, str, str]]:
    node, token, collection = make(tmp_path, Settings(max_content_length=LIMIT))
    yield node, token, collection
    node.close()


def test_a_maximum_size_envelope_stays_under_the_documented_ceiling(limited: tuple[Node, str, str]) -> None:
    node, token, collection = limited
    body = indicators(LIMIT)
    response, peak = post(node, token, collection, body)
    assert response.status_code == 202, response.text
    assert response.json()["failure_count"] == 0
    times = documented("typical STIX")
    assert peak < times * LIMIT, f"a {len(body) / MIB:.1f} MiB envelope took {peak / MIB:.0f} MiB (over {times} times)"


def one_huge_indicator(size: int) -> bytes:
    """One valid indicator filling `size` bytes with a custom list of small dicts, as densely as is allowed."""
    marking = releasability_marking("SECRET", ["GBR"], Ladder.of(DEFAULT_LEVELS))
    head = b'{"objects":[' + orjson.dumps(marking)
    entry = b'{"k":"' + b"v" * 24 + b'"}'  # 32 bytes with its comma: one dict per 32 bytes
    count = (size - len(head) - 1024) // (len(entry) + 1)
    indicator = orjson.dumps(
        {
            "type": "indicator",
            "spec_version": "2.1",
            "id": "indicator--00000000-0000-4000-8000-000000000001",
            "created": "2025-01-02T03:04:05.000Z",
            "modified": "2025-01-02T03:04:05.000Z",
            "pattern": "[ipv4-addr:value = '10.0.0.1']",
            "pattern_type": "stix",
            "valid_from": "2025-01-02T03:04:05Z",
            "object_marking_refs": [marking["id"]],
            "x_bulk": [],
        }
    )
    return head + b"," + indicator.replace(b'"x_bulk":[]', b'"x_bulk":[' + b",".join([entry] * count) + b"]") + b"]}"


def observables(size: int) -> bytes:
    """As many valid objects as fit: the smallest STIX allows (IPv4 addresses, marked), up to max_envelope_objects."""
    marking = releasability_marking("SECRET", ["GBR"], Ladder.of(DEFAULT_LEVELS))
    parts, i = [orjson.dumps(marking)], 0
    total = len(parts[0]) + 16
    while total < size - 512 and i < Settings().max_envelope_objects - 1:
        part = orjson.dumps(
            {
                "type": "ipv4-addr",
                "spec_version": "2.1",
                "id": f"ipv4-addr--{uuid.UUID(int=i + 1, version=4)}",
                "value": f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",
                "object_marking_refs": [marking["id"]],
            }
        )
        parts.append(part)
        total += len(part) + 1
        i += 1
    return b'{"objects":[' + b",".join(parts) + b"]}"


def entries(size: int, entry: bytes) -> bytes:
    """An envelope of `size` bytes whose objects list is `entry` again and again."""
    count = (size - 64) // (len(entry) + 1)
    return b'{"objects":[' + b",".join([entry] * count) + b"]}"


HOSTILE = {
    # Millions of tiny entries: a status entry each without max_envelope_objects (413).
    "numbers": lambda size: entries(size, b"1"),
    "short-strings": lambda size: entries(size, b'"ab"'),
    # As many dicts as the density check lets through, each its own entry (413 for their number).
    "densest-dicts": lambda size: entries(size, b'{"k":"' + b"v" * 24 + b'"}'),
    # Denser than STIX ever is: refused before parsing (422), else a dict per three or five bytes.
    "empty-objects": lambda size: entries(size, b"{}"),
    "deep-nesting": lambda size: entries(size, b'{"":' * 200 + b"{}" + b"}" * 200),
    # Valid objects as small as STIX allows: each costs the node its serialised copy and a status entry (202).
    "small-observables": observables,
    # One valid object as large and as dense as allowed: parsed, checked, serialised and stored (202).
    "one-huge-object": one_huge_indicator,
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_any_envelope_stays_under_the_worst_case_ceiling(limited: tuple[Node, str, str], kind: str) -> None:
    node, token, collection = limited
    body = HOSTILE[kind](LIMIT)
    assert len(body) <= LIMIT
    response, peak = post(node, token, collection, body)
    assert response.status_code in (202, 413, 422), response.text
    times = documented("anything")
    assert peak < times * LIMIT, f"{kind}: {response.status_code}, {peak / MIB:.0f} MiB (over {times} times)"


def test_the_documented_figures_are_those_of_the_defaults() -> None:
    defaults = Settings()
    for label in ("typical STIX", "anything"):
        times = documented(label)
        stated = re.search(r"\*\*" + str(times) + r"\*\* times max_content_length \((\d+) MiB\)", DOC)
        assert stated and int(stated.group(1)) == times * defaults.max_content_length // MIB, label
    at_once = re.search(r"at most \*\*(\d+)\*\* maximum-size envelopes", DOC)
    assert at_once and int(at_once.group(1)) == defaults.publish_bytes_at_once // defaults.max_content_length


def test_too_many_objects_is_413_and_says_how_to_split(tmp_path: Path) -> None:
    node, token, collection = make(tmp_path, Settings(max_envelope_objects=10))
    try:
        response, _ = post(node, token, collection, indicators(8 * 1024))
    finally:
        node.close()
    assert response.status_code == 413
    assert "max_envelope_objects" in response.json()["description"]


def publishes(node: Node, meanwhile: Callable[[], object]) -> tuple[list[int], Callable[..., dict[str, Any]]]:
    """A wrapper of node.publish that counts how many run at once ([now, most]); `meanwhile()` runs in each."""
    inside = [0, 0]  # now, most
    lock = threading.Lock()
    real = node.publish

    def publish(*args: Any, **kwargs: Any) -> dict[str, Any]:
        with lock:
            inside[0] += 1
            inside[1] = max(inside[1], inside[0])
        try:
            meanwhile()
            return real(*args, **kwargs)
        finally:
            with lock:
                inside[0] -= 1

    return inside, publish


def post_at_once(node: Node, token: str, collection: str, bodies: list[bytes]) -> list[httpx.Response]:
    app = create_app(node)
    headers = {"Authorization": f"Bearer {token}", "Accept": TAXII, "Content-Type": TAXII}

    async def send() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://relto") as client:
            url = f"/api/collections/{collection}/objects/"
            return list(await asyncio.gather(*(client.post(url, content=b, headers=headers) for b in bodies)))

    return asyncio.run(send())


def envelopes_of(n: int, size: int) -> list[bytes]:
    """n envelopes of about `size` bytes, each of its own indicators."""
    return [indicators(size, first=k * 10**6) for k in range(n)]


def test_posts_beyond_the_budget_wait_their_turn_and_succeed(tmp_path: Path) -> None:
    # Each envelope needs more than half the budget: only one may be parsed and stored at a time.
    size = 256 * 1024
    node, token, collection = make(tmp_path, Settings(max_content_length=size, publish_bytes_at_once=size))
    try:
        inside, publish = publishes(node, lambda: threading.Event().wait(0.05))
        node.publish = publish  # type: ignore[method-assign]
        responses = post_at_once(node, token, collection, envelopes_of(3, size * 3 // 5))
    finally:
        node.close()
    assert [r.status_code for r in responses] == [202, 202, 202]
    assert all(r.json()["failure_count"] == 0 for r in responses)
    assert inside[1] == 1


def test_posts_within_the_budget_run_together(tmp_path: Path) -> None:
    # The control: with room for all three, all three are inside publish at once (the barrier proves it).
    size = 256 * 1024
    node, token, collection = make(tmp_path, Settings(max_content_length=size, publish_bytes_at_once=3 * size))
    together = threading.Barrier(3, timeout=10)
    try:
        inside, publish = publishes(node, together.wait)
        node.publish = publish  # type: ignore[method-assign]
        responses = post_at_once(node, token, collection, envelopes_of(3, size * 3 // 5))
    finally:
        node.close()
    assert [r.status_code for r in responses] == [202, 202, 202]
    assert inside[1] == 3


def test_the_budget_serves_in_order_and_a_cancelled_wait_gives_its_place_back() -> None:
    async def scenario() -> list[str]:
        budget = ByteBudget(100)
        order: list[str] = []
        release = asyncio.Event()

        async def use(name: str, size: int) -> None:
            async with budget.hold(size):
                order.append(name)
                await release.wait()

        first = asyncio.create_task(use("first", 80))
        await asyncio.sleep(0)
        big = asyncio.create_task(use("big", 500))  # more than the whole budget: waits for all of it
        small = asyncio.create_task(use("small", 10))  # would fit now, but queues behind big (no overtaking)
        await asyncio.sleep(0)
        assert order == ["first"] and budget.free == 20
        big.cancel()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert order == ["first", "small"]  # big's place went to the next in line
        release.set()
        await asyncio.gather(first, small)
        with pytest.raises(asyncio.CancelledError):
            await big
        assert budget.free == 100
        return order

    assert asyncio.run(scenario()) == ["first", "small"]
