"""Read-ahead: while a reader parses a page, the node computes the next one, and serves it only if nothing changed.

A TAXII client pages through a collection one request at a time: it asks, waits, parses the page, asks for the
next. Parsing a page takes the client about as long as building it takes the node, so a node that starts on
page N+1 as soon as it has answered page N halves the time of a long read on a machine with a core to spare.

What is computed ahead is computed exactly as a read would be (`Node._page`, through the one policy engine), for
the same party, collection, filters and `next` cursor; nothing is recorded in the decision log until it is
served. It is served only to a request for that same party, collection, filters and cursor, and only if its
stamp, taken *before* it was computed, still holds when it is asked for: the store's head (any write or
deletion since moves it), the compiled policy's generation and newest marking set, and the marking sets the
party may see today. Any change, however unrelated, and the page is dropped and computed afresh: a page
computed ahead is never more than what a read would have answered at that moment.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from relto.domain.parties import Party
from relto.taxii.filters import Filters

Key = tuple[Party, str, Filters]
MAX_PAGES = 4  # pages kept ready at once (the least recently offered go first)
MAX_BYTES = 32 * 1024 * 1024  # a page larger than this is not computed ahead
MAX_AGE_SECONDS = 30.0  # a page nobody asked for within this is dropped
WAIT_SECONDS = 10.0  # how long a request waits for the page being computed for it


@dataclass(slots=True)
class _Ready:
    page: Any
    stamp: Hashable
    at: float


class ReadAhead:
    """Computes a reader's next page in a background thread; hands it out only while its stamp holds."""

    def __init__(
        self,
        compute: Callable[[Party, str, Filters], Any],
        stamp: Callable[[Party], Hashable],
        *,
        enabled: bool,
    ) -> None:
        self.compute = compute
        self.stamp = stamp
        self.enabled = enabled
        self.hits = 0
        self.misses = 0
        self._ready: dict[Key, _Ready] = {}
        self._wanted: dict[Key, None] = {}  # pages to compute, oldest first (at most MAX_PAGES)
        self._computing: Key | None = None
        self._changed = threading.Condition()
        self._worker: threading.Thread | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"ReadAhead(enabled={self.enabled}, ready={len(self._ready)}, hits={self.hits}, misses={self.misses})"

    def offer(self, party: Party, collection_id: str, filters: Filters) -> None:
        """Start computing this page (the next one of a page just served), unless off or closed."""
        if not self.enabled:
            return
        with self._changed:
            if self._closed:
                return
            self._wanted[(party, collection_id, filters)] = None
            while len(self._wanted) > MAX_PAGES:
                del self._wanted[next(iter(self._wanted))]
            if self._worker is None:
                self._worker = threading.Thread(target=self._run, name="relto-read-ahead", daemon=True)
                self._worker.start()
            self._changed.notify_all()

    def take(self, party: Party, collection_id: str, filters: Filters) -> Any | None:
        """The page computed ahead for exactly this read, if its stamp still holds; else None (read it)."""
        if not self.enabled or filters.next is None:
            return None
        key = (party, collection_id, filters)
        deadline = time.monotonic() + WAIT_SECONDS
        with self._changed:
            # The page may be under way right now: waiting for it costs less than computing it twice.
            while (self._computing == key or key in self._wanted) and time.monotonic() < deadline:
                self._changed.wait(deadline - time.monotonic())
            ready = self._ready.pop(key, None)
        if ready is None or time.monotonic() - ready.at > MAX_AGE_SECONDS:
            self.misses += 1
            return None
        if self.stamp(party) != ready.stamp:
            self.misses += 1
            return None
        self.hits += 1
        return ready.page

    def close(self) -> None:
        """Stop the background thread and drop every page."""
        with self._changed:
            self._closed = True
            self._wanted.clear()
            self._ready.clear()
            worker = self._worker
            self._changed.notify_all()
        if worker is not None:
            worker.join(WAIT_SECONDS)

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._wanted and not self._closed:
                    self._changed.wait()
                if self._closed:
                    return
                key = next(iter(self._wanted))
                del self._wanted[key]
                self._computing = key
            try:
                stamp = self.stamp(key[0])  # before the page: a change while it is computed invalidates it
                page = self.compute(*key)
            except Exception:  # the read itself will say what is wrong, if it still is
                page = None
            with self._changed:
                self._computing = None
                if page is not None and not self._closed and _size(page) <= MAX_BYTES:
                    self._ready[key] = _Ready(page, stamp, time.monotonic())
                    while len(self._ready) > MAX_PAGES:
                        del self._ready[next(iter(self._ready))]
                self._changed.notify_all()


def _size(page: Any) -> int:
    return sum(len(body) for body in page.bodies)
