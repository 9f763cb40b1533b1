"""One subscriber: catch up from the store, then follow the feed; every event is filtered by the policy engine.

Frames are server-sent events: `id:` is an opaque cursor (the same encoding as TAXII's `next`), `event:` is
`object`, `deleted`, or a final `lagged` / `closed`, and `data:` is JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import orjson

from relto.domain.errors import ReltoError
from relto.domain.parties import Party
from relto.node import Node
from relto.store.base import Event
from relto.stream.feed import Feed

BATCH = 200


@dataclass(frozen=True)
class Subscription:
    """Who subscribed to what, and from where."""

    token: str
    collection_id: str
    after: int
    types: frozenset[str] = frozenset()
    ids: frozenset[str] = frozenset()


def frame(event: str, data: bytes, cursor: str | None = None) -> bytes:
    """One server-sent event; `cursor` (sealed) becomes its id."""
    head = b"id: " + cursor.encode() + b"\n" if cursor is not None else b""
    return head + b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"


def render(
    node: Node,
    party: Party,
    collection_id: str,
    events: list[Event],
    read_at: float | None = None,
    at: int | None = None,
) -> bytes:
    """The frames of these (wanted) events as released to the party: trimmed, withheld ones left out, and
    recorded in the decision log. A deletion is told exactly to the parties its version was released to.

    May ask the store (references to check); call it off the event loop when any event has a shape. `at`: the
    cursor every frame carries instead of its event's own (a backfill does not move the subscriber's place).
    """
    released = node.stream_release(party, collection_id, events, read_at)
    out: list[bytes] = []
    for e, body in zip(events, released, strict=True):
        if body is None:
            continue
        cursor = node.cursors.seal(e.seq if at is None else at, collection_id)
        if e.body is None:
            doc = {"id": e.stix_id, "type": e.type, "version": e.version_text}
            out.append(frame("deleted", orjson.dumps(doc), cursor))
        else:
            out.append(frame("object", body, cursor))
    return b"".join(out)


async def _render(
    node: Node, party: Party, collection_id: str, events: list[Event], read_at: float | None = None
) -> bytes:
    if any(e.shape is not None or e.shared for e in events):
        return await asyncio.to_thread(render, node, party, collection_id, events, read_at)
    return render(node, party, collection_id, events, read_at)


def _wanted(e: Event, sub: Subscription, visible: frozenset[int]) -> bool:
    return e.marking_set in visible and (not sub.types or e.type in sub.types) and (not sub.ids or e.stix_id in sub.ids)


async def frames(node: Node, feed: Feed, sub: Subscription, *, heartbeat: float) -> AsyncIterator[bytes]:
    """The stream of one subscriber, until its token stops working or it falls out of the feed's ring."""
    cursor = sub.after
    live = False
    last_frame = time.monotonic()
    reach: tuple[frozenset[int], int] | None = None  # the sets the subscriber could read, and the newest set then
    # Sent at once, so the client sees the stream open (and learns how soon to reconnect) before any event.
    yield b"retry: 2000\n\n"
    while True:
        try:
            party = node.authenticate(sub.token)  # cached for a second: a revocation ends the stream
        except ReltoError as exc:
            yield frame("closed", orjson.dumps({"reason": exc.message}))
            return
        visible_now, known = node.visible_sets(party), node.known_max_set
        if reach is not None:
            grown = frozenset(s for s in visible_now if s <= reach[1] and s not in reach[0])
            if grown:  # it may read more than when it read past them (it joined a community): send them now
                async for chunk in _backfill(node, party, sub, grown, cursor):
                    yield chunk
                last_frame = time.monotonic()
        reach = (visible_now, known)
        out = b""
        if cursor < feed.oldest:
            if live:
                sealed = node.cursors.seal(cursor, sub.collection_id)
                notice = {
                    "reason": "this subscriber fell too far behind the live feed; resume from the last event id",
                    "resume_after": sealed,
                }
                yield frame("lagged", orjson.dumps(notice), sealed)
                return
            # Catching up: the policy is inside the store query, as for TAXII reads.
            events, covered = await asyncio.to_thread(node.catch_up, party, sub.collection_id, cursor, BATCH)
            unknown = max((e.marking_set for e in events), default=0) > node.known_max_set
            visible = node.visible_sets(party, refresh=unknown)
            out = await _render(node, party, sub.collection_id, [e for e in events if _wanted(e, sub, visible)])
            cursor = covered
        else:
            live = True
            events = feed.after(cursor, BATCH)
            if events:
                unknown = max(e.marking_set for e in events) > node.known_max_set
                visible = node.visible_sets(party, refresh=unknown)
                wanted = [e for e in events if _wanted(e, sub, visible)]
                out = await _render(node, party, sub.collection_id, wanted, feed.read_at)
                cursor = events[-1].seq
            else:
                cursor = max(cursor, feed.head)  # the ring is complete up to head: nothing for us below it
        if out:
            yield out
            last_frame = time.monotonic()
            continue
        if not live and cursor < feed.oldest:
            continue  # more to catch up
        async with feed.changed:
            if feed.head <= cursor:
                wait = max(0.05, heartbeat - (time.monotonic() - last_frame))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(feed.changed.wait(), timeout=min(wait, 1.0))
        if time.monotonic() - last_frame >= heartbeat:
            yield b": keep-alive\n\n"
            last_frame = time.monotonic()


async def _backfill(
    node: Node, party: Party, sub: Subscription, sets: frozenset[int], cursor: int
) -> AsyncIterator[bytes]:
    """The versions before `cursor` in `sets` (which the party may read now and could not when it passed them),
    as frames carrying the subscriber's own cursor, so that resuming goes on from where it was."""
    after = 0
    while after < cursor:
        events, covered = await asyncio.to_thread(node.backfill, party, sub.collection_id, sets, after, cursor, BATCH)
        visible = node.visible_sets(party)
        wanted = [e for e in events if _wanted(e, sub, visible)]
        if wanted:
            yield await asyncio.to_thread(render, node, party, sub.collection_id, wanted, None, cursor)
        if covered <= after:
            return
        after = covered


def parse_after(node: Node, collection_id: str, value: str | None, added_after: int | None) -> int:
    """The starting cursor: Last-Event-ID / ?after= (a cursor), or added_after (a time), else 'from now'."""
    if value:
        return node.cursors.open(value, collection_id)
    if added_after is not None:
        return node.seq_at(added_after)
    return node.head()
