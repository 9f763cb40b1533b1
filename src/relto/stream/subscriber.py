"""One subscriber: catch up from the store, then follow the feed; every event is filtered by the policy engine.

Frames are server-sent events: `id:` is an opaque cursor (the same encoding as TAXII's `next`), `event:` is
`object`, `deleted`, or a final `lagged` / `closed`, and `data:` is JSON.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from relto.domain.audit import Item
from relto.domain.errors import ReltoError
from relto.domain.parties import Party
from relto.node import Node
from relto.node.releaser import View
from relto.store.base import Event
from relto.stream.feed import Batch, Feed, Rendered

BATCH = 200
# Streams opened at once in worker threads (authenticate, find the start): a crowd of connects waits its turn
# rather than growing a thread pool by a thread each.
OPENINGS_AT_ONCE = 2
TOKEN_RECHECK = 0.25  # seconds between a subscriber's checks of its token (each is cheap, but 100s add up)


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


def render_as(node: Node, view: View, collection_id: str, events: list[Event]) -> list[Rendered]:
    """Each event as released to a party with this view: its frame (b"" when withheld) and its decision log item.

    Records nothing: the decision log is written per party by `_live`. May ask the store, as `render`.
    """
    released = node.release_as(view, collection_id, events)
    out: list[Rendered] = []
    for e, body in zip(events, released, strict=True):
        if body is None:
            out.append((b"", None))
            continue
        cursor = node.cursors.seal(e.seq, collection_id)
        if e.body is None:
            doc = {"id": e.stix_id, "type": e.type, "version": e.version_text}
            out.append((frame("deleted", orjson.dumps(doc), cursor), None))
        else:
            out.append((frame("object", body, cursor), (e.stix_id, e.version_text)))
    return out


async def _live(node: Node, feed: Feed, view: View, sub: Subscription, cursor: int) -> Batch:
    """The ring's next events after `cursor` for a subscriber whose party has this view: their frames, what the
    decision log is to record, and the cursor after them. Rendered once per view and cursor, and shared through
    the feed with every subscriber of an equal view (the caller records the release for its own party)."""
    if sub.types or sub.ids:  # a filtered subscriber shares rendered events, not batches
        return await _next_batch(node, feed, view, sub, cursor)
    shared = feed.batch(view, cursor)
    if shared is not None:
        batch = await shared
        if batch is not None and batch[2] > cursor:
            return batch
        return await _next_batch(node, feed, view, sub, cursor)  # it failed, or the head has moved on since
    promised = feed.promise_batch(view, cursor)
    batch = None
    try:
        batch = await _next_batch(node, feed, view, sub, cursor)
    finally:  # cancelled or failed: the subscribers waiting for it work it out themselves
        promised.set_result(batch)
        if batch is None or batch[2] == cursor:  # only a batch that moves the cursor on may be handed on
            feed.drop_batch(view, cursor)
    return batch


async def _next_batch(node: Node, feed: Feed, view: View, sub: Subscription, cursor: int) -> Batch:
    events, head = feed.after(cursor, BATCH), feed.head
    # The ring is complete up to head: with less than a batch, nothing was left between the last event and the
    # head when they were taken (together, before any await).
    after = events[-1].seq if len(events) == BATCH else max(cursor, head, events[-1].seq if events else 0)
    wanted = [e for e in events if _wanted(e, sub, view.visible)]
    out, items = await _released(node, feed, view, sub.collection_id, wanted) if wanted else (b"", ())
    return out, items, after


async def _released(
    node: Node, feed: Feed, view: View, collection_id: str, events: list[Event]
) -> tuple[bytes, tuple[Item, ...]]:
    """These (wanted) ring events as released to the view: each rendered once per view, kept by the feed."""
    kept = feed.rendered(view)
    # Which nation's copy of an id a person is shown is decided over the batch's copies of it: those are
    # released each time, together, and never kept.
    missing = [e for e in events if e.shared or e.seq not in kept]
    fresh: dict[int, Rendered] = {}
    if missing:
        shaped = any(e.shape is not None for e in missing)
        rendered = await _call(shaped, render_as, node, view, collection_id, missing)
        fresh = dict(zip((e.seq for e in missing), rendered, strict=True))
        for e, r in zip(missing, rendered, strict=True):
            if not e.shared and feed.keeps_rendered(e.seq):
                kept[e.seq] = r
    parts: list[bytes] = []
    items: list[Item] = []
    for e in events:
        data, item = fresh.get(e.seq) or kept[e.seq]
        if data:
            parts.append(data)
        if item is not None:
            items.append(item)
    return b"".join(parts), tuple(items)


async def _call(
    off_loop: bool, fn: Callable[[Node, View, str, list[Event]], list[Rendered]], *args: Any
) -> list[Rendered]:
    """`fn(*args)`, in a worker thread when it may ask the store."""
    return await asyncio.to_thread(fn, *args) if off_loop else fn(*args)


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
    party: Party | None = None
    checked = 0.0
    while True:
        if party is None or time.monotonic() - checked >= TOKEN_RECHECK:
            # The authenticator trusts a token for a second: a revocation ends the stream within that and this.
            try:
                party = node.authenticate(sub.token)
            except ReltoError as exc:
                yield frame("closed", orjson.dumps({"reason": exc.message}))
                return
            checked = time.monotonic()
        visible_now, known = node.visible_sets(party), node.known_max_set
        if reach is not None and visible_now is not reach[0]:  # compiled sets are cached: mostly the same object
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
            if feed.max_set > node.known_max_set:  # an event was stored under a marking set new to the policy
                node.visible_sets(party, refresh=True)
            view = node.release_view(party, feed.read_at)
            out, items, cursor = await _live(node, feed, view, sub, cursor)
            if items:
                node.record(party, "stream", sub.collection_id, items)
        if out:
            yield out
            last_frame = time.monotonic()
            if not live or feed.head > cursor:
                continue  # no wait: more may be there
        elif not live and cursor < feed.oldest:
            continue  # more to catch up
        if feed.head <= cursor:
            # One future per feed wakes every waiting subscriber once (no task, timer or lock per subscriber),
            # when events come and at each tick of the feed (at least once a second). Shielded: a subscriber
            # cancelled while it waits must not cancel the future the others wait on.
            await asyncio.shield(feed.moved)
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
