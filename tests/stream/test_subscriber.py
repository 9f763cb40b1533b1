"""Shared rendering in the live stream: subscribers share an event's bytes only when the policy engine would
release them identical bytes (an equal view), and each receives exactly what the engine releases to it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import date
from typing import Any

import orjson
import pytest

from relto.admin import issue_token
from relto.domain.communities import Community, Membership
from relto.domain.markings import releasability_marking
from relto.domain.parties import Party
from relto.domain.tearline import mark_objects
from relto.node import Node
from relto.stream.feed import Feeds
from relto.stream.subscriber import Subscription, frames
from relto.taxii.filters import Filters
from relto.watch import parse_sse
from tests.conftest import Database, make_node

T0 = "2024-10-18T09:00:00.000Z"
# FRA, DEU, POL: SECRET or CONFIDENTIAL readers; FRA SECRET and FRA CONFIDENTIAL differ only in clearance; FRA
# and DEU are in the same communities but for TESTC; DEU and POL see the same marking sets (only their nation
# differs: a nation's own version keeps references to objects hidden from it).
READERS = (("FRA", "SECRET"), ("FRA", "CONFIDENTIAL"), ("DEU", "SECRET"), ("POL", "SECRET"))


def sdo(kind: str, n: int, **fields: Any) -> dict[str, Any]:
    uid = f"{kind}--00000000-0000-4000-8000-{n:012d}"
    return {"type": kind, "spec_version": "2.1", "id": uid, "created": T0, "modified": T0, **fields}


def publish(node: Node, party: Party, coll: str, objects: list[dict[str, Any]]) -> None:
    status = node.publish(party, coll, objects)
    assert status["failure_count"] == 0, status


async def until(chunks: AsyncIterator[bytes], last_id: str) -> list[bytes]:
    """What a subscriber is sent up to the event of `last_id` (the last published: events come in order)."""
    got: list[bytes] = []
    async for chunk in chunks:
        got.append(chunk)
        if last_id.encode() in chunk:
            break
    await chunks.aclose()  # type: ignore[attr-defined]
    return got


async def next_chunk(chunks: AsyncIterator[bytes]) -> bytes:
    return await anext(chunks)


async def subscribe_then_publish(
    node: Node, coll: str, tokens: dict[tuple[str, str], str], publish_all: Callable[[], str], together: bool
) -> dict[tuple[tuple[str, str], int], list[bytes]]:
    feeds = Feeds(node, ring_size=100, poll_seconds=0.05)
    feed = await feeds.feed(coll)
    start = node.head()
    # Per reader: two subscribers sharing batches, and one with a type filter (it shares rendered events only).
    types = frozenset({"identity", "malware", "indicator"})
    streams = {
        (reader, i): frames(
            node, feed, Subscription(tokens[reader], coll, start, types if i == 2 else frozenset()), heartbeat=30
        )
        for reader in READERS
        for i in range(3)
    }
    for chunks in streams.values():  # every subscriber open, at the same cursor, before anything is published
        assert await anext(chunks) == b"retry: 2000\n\n"
    last_id = publish_all()
    feeds.ring(coll)
    # Together: they wait for the one of their view rendering; one by one: they find what the others rendered.
    if together:  # (a bound on a hang, a subscriber never sent the last event, not a timing assertion)
        got = await asyncio.wait_for(asyncio.gather(*(until(chunks, last_id) for chunks in streams.values())), 30)
    else:
        got = [await asyncio.wait_for(until(chunks, last_id), 30) for chunks in streams.values()]
    await feeds.close()
    return dict(zip(streams, got, strict=True))


@pytest.mark.parametrize("together", [True, False], ids=["together", "one-by-one"])
def test_subscribers_share_bytes_only_within_one_view(database: Database, together: bool) -> None:
    node = make_node(database)
    try:
        check_shared_rendering(node, together)
    finally:
        node.close()


def check_shared_rendering(node: Node, together: bool) -> None:
    node.put_community(Community("TESTC", "", (Membership("FRA", date(2000, 1, 1)),)))
    tokens = {
        (n, c): issue_token(node.store, nation=n, clearance=c, organisation="", name=f"{n} {c}")
        for n, c in {*READERS, ("DEU", "SECRET")}
    }
    parties = {reader: node.authenticate(token) for reader, token in tokens.items()}
    coll = node.add_collection("c").id
    fra_only = releasability_marking("UNCLASSIFIED", ["FRA"], node.ladder)
    eu = releasability_marking("UNCLASSIFIED", ["EU"], node.ladder)
    source = sdo("identity", 1, name="FRA's source", identity_class="individual", object_marking_refs=[fra_only["id"]])
    # DEU's own malware names FRA's source, which DEU cannot see: kept for DEU (its own words), cut for POL.
    malware = sdo("malware", 2, name="m", is_family=False, created_by_ref=source["id"], object_marking_refs=[eu["id"]])
    report = sdo("indicator", 3, name="c2", description="SECRET detail", labels=["TESTC detail"])
    report |= {"pattern": "[ipv4-addr:value = '198.51.100.7']", "pattern_type": "stix", "valid_from": T0}
    tearlined = mark_objects(
        [report],
        classification="UNCLASSIFIED",
        rel_to=["EU"],
        fields={"description": ("SECRET", ["EU"]), "labels": ("UNCLASSIFIED", ["TESTC"])},
    )

    def publish_all() -> str:
        publish(node, parties["FRA", "SECRET"], coll, [fra_only, source])
        publish(node, parties["DEU", "SECRET"], coll, [eu, malware])
        publish(node, parties["FRA", "SECRET"], coll, [*tearlined.definitions, *tearlined.objects])
        return str(tearlined.objects[0]["id"])

    received = asyncio.run(subscribe_then_publish(node, coll, tokens, publish_all, together))

    released: dict[tuple[str, str], dict[str, bytes]] = {}
    for reader in READERS:
        page = node.read(parties[reader], coll, Filters(limit=100, types=("identity", "malware", "indicator")))
        released[reader] = {orjson.loads(b)["id"]: b for b in page.bodies}
        for i in range(3):
            events = parse_sse(iter(b"".join(received[reader, i]).decode().splitlines()))
            objects = (e.data.encode() for e in events if e.event == "object")
            streamed = {d["id"]: b for b in objects if (d := orjson.loads(b))["type"] != "marking-definition"}
            assert streamed == released[reader], (reader, i)  # exactly the engine's bytes, nothing more or less
        # The second subscriber of a view was handed the first one's rendering, not its own.
        assert all(a is b for a, b in zip(received[reader, 0][1:], received[reader, 1][1:], strict=True)), reader

    def body(reader: tuple[str, str], obj: dict[str, Any]) -> dict[str, Any]:
        doc: dict[str, Any] = orjson.loads(released[reader][obj["id"]])
        return doc

    fra_s, fra_c, deu, pol = READERS
    tearlined_report = tearlined.objects[0]
    assert "description" in body(fra_s, tearlined_report) and "description" not in body(fra_c, tearlined_report)
    assert "labels" in body(fra_s, tearlined_report) and "labels" not in body(deu, tearlined_report)  # TESTC
    assert node.visible_sets(parties[deu]) == node.visible_sets(parties[pol])
    assert "created_by_ref" in body(deu, malware) and "created_by_ref" not in body(pol, malware)  # the nation


def test_a_subscriber_that_goes_does_not_stop_the_others_waiting(database: Database) -> None:
    """Waiting subscribers share one future per feed: one cancelled while it waits must not cancel it."""
    node = make_node(database)
    try:
        token = issue_token(node.store, nation="GBR", clearance="SECRET", organisation="", name="t")
        gbr = node.authenticate(token)
        coll = node.add_collection("c").id
        wide = releasability_marking("UNCLASSIFIED", ["GBR"], node.ladder)

        async def run() -> list[bytes]:
            feeds = Feeds(node, ring_size=100, poll_seconds=0.05)
            feed = await feeds.feed(coll)
            going, staying = (frames(node, feed, Subscription(token, coll, node.head()), heartbeat=30) for _ in "ab")
            for chunks in (going, staying):
                assert await anext(chunks) == b"retry: 2000\n\n"
            waits = [asyncio.create_task(next_chunk(chunks)) for chunks in (going, staying)]
            await asyncio.sleep(0.1)  # both wait on the feed now
            waits[0].cancel()
            publish(node, gbr, coll, [wide])
            feeds.ring(coll)
            got = await asyncio.wait_for(waits[1], 30)  # a bound on a hang, not a timing assertion
            await feeds.close()
            return [got]

        [got] = asyncio.run(run())
        assert wide["id"].encode() in got
    finally:
        node.close()
