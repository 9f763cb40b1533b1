"""Fan-out: one task per collection reads new events from the store and keeps the newest in a ring.

The database is the log. A doorbell (this process's writes, or PostgreSQL NOTIFY from other processes) wakes
the feed; the feed reads events after its head through the node and wakes its subscribers. A lost or late
doorbell only delays events: the feed also polls. Subscribers never get their own copy of an event, so a slow
one costs no memory; one that falls out of the ring is cut and resumes from its cursor.

Subscribers whose parties the policy engine sees alike (an equal `relto.node.releaser.View`) share each event's
rendered frame: the first to need it renders it through the engine, the others take the bytes (`rendered`). New
events wake every subscriber once, through one future (`moved`); without events, a tick each second does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Protocol

from relto.domain.audit import Item
from relto.store.base import Event

log = logging.getLogger("relto.stream")

# One event as released to one view: its frame (b"" when withheld), and what the decision log records of it.
Rendered = tuple[bytes, Item | None]
# The ring's next events after one cursor as released to one view: their frames, the decision log's items, and
# the cursor after them.
Batch = tuple[bytes, tuple[Item, ...], int]

# Rendered frames are kept for this many of the newest events of the ring (the live subscribers are there; one
# further behind renders its own).
RENDERED_EVENTS = 512
# Waiting subscribers are woken at least this often (seconds), to send heartbeats and re-check their tokens.
TICK_SECONDS = 1.0


class Tail(Protocol):
    """Where a feed reads a collection's events (the Node: every read of the stream goes through it)."""

    def head(self) -> int:
        """The last sequence handed out."""
        ...

    def tail(self, collection_id: str, after_seq: int, limit: int) -> tuple[list[Event], int]:
        """Events after `after_seq`, unfiltered, and the sequence up to which the answer is complete."""
        ...


class Feed:
    """The shared tail of one collection."""

    def __init__(self, source: Tail, collection_id: str, *, ring_size: int, poll_seconds: float) -> None:
        self.source = source
        self.collection_id = collection_id
        self.ring: deque[Event] = deque()
        self.ring_size = ring_size
        self.head = 0  # the sequence up to which the ring is complete (other collections' events move it too)
        self.floor = 0  # the ring holds every event of this collection after this sequence
        self._moved: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # view -> event seq -> the event as released to that view; the views are what the policy engine
        # compiled for the parties (equal views: identical bytes), the events the newest of the ring.
        self._rendered: dict[Hashable, dict[int, Rendered]] = {}
        # (view, cursor) -> what follows it, rendered (a future: one subscriber works it out, the others wait)
        self._batches: dict[tuple[Hashable, int], asyncio.Future[Batch | None]] = {}
        self._rendered_floor = 0  # events at or below this sequence are no longer kept rendered
        self._unpruned = 0  # events added to the ring since rendered events were last dropped
        self._keep_rendered = max(2, min(RENDERED_EVENTS, ring_size))
        self.poll_seconds = poll_seconds
        # time.monotonic() when the last read from the store returned: a policy refreshed after it knows every
        # marking set that the ring's events (and the objects they name) were stored under.
        self.read_at = 0.0
        self.max_set = 0  # the newest marking set of any event read
        self._doorbell = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Begin at the store's current head: subscribers older than that catch up from the store."""
        self.head = self.floor = await asyncio.to_thread(self.source.head)
        self._task = asyncio.create_task(self._run(), name=f"relto-feed-{self.collection_id}")

    def ring_doorbell(self) -> None:
        """Something was written (maybe to this collection): look."""
        self._doorbell.set()

    @property
    def moved(self) -> asyncio.Future[None]:
        """Done when the head next moves, or at the next tick (one future for every subscriber waiting)."""
        return self._moved

    def rendered(self, view: Hashable) -> dict[int, Rendered]:
        """The newest events as already released to `view`, by sequence, for its subscribers to fill and share."""
        shared = self._rendered.get(view)
        if shared is None:
            shared = self._rendered[view] = {}
        return shared

    def batch(self, view: Hashable, cursor: int) -> asyncio.Future[Batch | None] | None:
        """What follows `cursor` as released to `view`, if a subscriber of that view is there or was: a future
        (done once that subscriber has it; None then means: it could not, work it out yourself)."""
        return self._batches.get((view, cursor))

    def promise_batch(self, view: Hashable, cursor: int) -> asyncio.Future[Batch | None]:
        """Say that the caller works out what follows `cursor` for `view`: the others of that view wait for it.
        The caller must set a result (None if it fails)."""
        promised: asyncio.Future[Batch | None] = asyncio.get_running_loop().create_future()
        if cursor >= self._rendered_floor:  # its events are all after the cursor: kept as long as they are
            self._batches[view, cursor] = promised
        return promised

    def drop_batch(self, view: Hashable, cursor: int) -> None:
        """Forget what follows `cursor` for `view` (it would not move a subscriber on)."""
        self._batches.pop((view, cursor), None)

    def keeps_rendered(self, seq: int) -> bool:
        """Whether an event is new enough to be kept rendered."""
        return seq > self._rendered_floor

    @property
    def oldest(self) -> int:
        """The lowest cursor that can still be served from the ring."""
        return self.floor

    def after(self, seq: int, limit: int) -> list[Event]:
        """Ring events after `seq` (the caller checked `seq >= self.oldest`), at most `limit`.

        Walks back from the newest end, so a caught-up subscriber pays for the new events only.
        """
        newer: list[Event] = []
        for event in reversed(self.ring):
            if event.seq <= seq:
                break
            newer.append(event)
        newer.reverse()
        return newer[:limit]

    async def _run(self) -> None:
        last_read = 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._doorbell.wait(), timeout=min(self.poll_seconds, TICK_SECONDS))
            rang = self._doorbell.is_set()
            self._doorbell.clear()
            head = self.head
            if rang or time.monotonic() - last_read >= self.poll_seconds:
                last_read = time.monotonic()
                try:
                    await self._read_new()
                except Exception:  # a database hiccup must not end the feed: log and retry on the next ring
                    log.exception("live feed of collection %s could not read new events", self.collection_id)
                    await asyncio.sleep(self.poll_seconds)
            if self.head == head:  # a tick, nothing new: waiting subscribers look at their heartbeat and token
                self._wake()

    def _wake(self) -> None:
        done, self._moved = self._moved, asyncio.get_running_loop().create_future()
        done.set_result(None)

    async def _read_new(self) -> None:
        while True:
            events, covered = await asyncio.to_thread(self.source.tail, self.collection_id, self.head, 1000)
            self.read_at = time.monotonic()
            for event in events:
                if len(self.ring) >= self.ring_size:
                    self.floor = self.ring.popleft().seq
                self.ring.append(event)
            if events:
                self.max_set = max(self.max_set, max(e.marking_set for e in events))
            self._unpruned += len(events)
            if self._unpruned >= self._keep_rendered // 2:
                self._forget_rendered()
            moved = covered > self.head
            self.head = max(self.head, covered)
            if moved:
                self._wake()
            if len(events) < 1000:
                return

    def _forget_rendered(self) -> None:
        """Drop rendered events older than the newest RENDERED_EVENTS (every half that, so cheap per event)."""
        self._unpruned = 0
        keep = self._keep_rendered
        self._rendered_floor = floor = self.ring[-keep - 1].seq if len(self.ring) > keep else self.floor
        self._batches = {key: batch for key, batch in self._batches.items() if key[1] > floor}
        for view, shared in list(self._rendered.items()):
            kept = {seq: r for seq, r in shared.items() if seq > floor}
            if kept:
                self._rendered[view] = kept
            else:
                del self._rendered[view]

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class Feeds:
    """The feeds of one process, created on first subscription, rung by every doorbell."""

    def __init__(self, source: Tail, *, ring_size: int, poll_seconds: float) -> None:
        self.source = source
        self.ring_size = ring_size
        self.poll_seconds = poll_seconds
        self._feeds: dict[str, Feed] = {}
        self._lock = asyncio.Lock()
        # Set (and replaced) by every ring: what federation feeds waiting for any write wait on.
        self._pulse = asyncio.Event()

    async def feed(self, collection_id: str) -> Feed:
        async with self._lock:
            feed = self._feeds.get(collection_id)
            if feed is None:
                feed = Feed(self.source, collection_id, ring_size=self.ring_size, poll_seconds=self.poll_seconds)
                await feed.start()
                self._feeds[collection_id] = feed
            return feed

    def all(self) -> list[Feed]:
        """The feeds open now (for the metrics)."""
        return list(self._feeds.values())

    @property
    def pulse(self) -> asyncio.Event:
        """Set by the next write in any collection: take it before reading, then wait on it."""
        return self._pulse

    def ring(self, collection_id: str | None = None) -> None:
        """Wake the feed of a collection (or all feeds), and whoever waits for any write."""
        self._pulse.set()
        self._pulse = asyncio.Event()
        if collection_id is None:
            for feed in self._feeds.values():
                feed.ring_doorbell()
        elif collection_id in self._feeds:
            self._feeds[collection_id].ring_doorbell()

    def threadsafe_ringer(self, loop: asyncio.AbstractEventLoop) -> Callable[[str], None]:
        """A doorbell button for code running in worker threads (the publish path)."""

        def press(collection_id: str) -> None:
            loop.call_soon_threadsafe(self.ring, collection_id)

        return press

    async def close(self) -> None:
        for feed in self._feeds.values():
            await feed.close()
