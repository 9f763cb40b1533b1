"""The policy view: the marking sets and communities the node knows, and what each party may see of them.

The state is one immutable `Snapshot`, replaced whole under a lock when the store says the policy changed
(this or another process made a marking set, or a community changed). A reader takes the current snapshot
once and works on it alone, so a refresh in another thread never changes what it iterates.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dt_time

from relto.domain import policy
from relto.domain.communities import Community, membership_index
from relto.domain.markings import MarkingSet
from relto.domain.parties import Party
from relto.store.base import PolicyStore

_POLICY_CHECK = 0.25  # seconds between checks for marking-set and community changes


@dataclass(frozen=True)
class Snapshot:
    """The policy at one generation: never changed once made (but for its cache of compiled visibility)."""

    generation: tuple[int, int]
    sets: Mapping[int, MarkingSet]
    communities: Sequence[Community]
    # (nation, clearance, day, node kind, relay_for) -> the marking sets visible: filled as parties ask, dropped
    # with the snapshot
    compiled: dict[tuple[str, int, str, str, tuple[str, ...]], frozenset[int]] = field(
        default_factory=dict, compare=False
    )

    @property
    def max_set(self) -> int:
        """The newest marking set this snapshot knows."""
        return max(self.sets, default=0)


class PolicyView:
    """The one policy engine's state on a node: compiled visibility per party, refreshed from the store."""

    def __init__(self, store: PolicyStore) -> None:
        self.store = store
        self._lock = threading.Lock()  # one refresh at a time; readers never take it
        self._snapshot = Snapshot((-1, -1), {}, ())
        self._checked = 0.0
        self._day, self._day_ends = "", 0.0  # today's date and when it ends (time.time())

    @property
    def snapshot(self) -> Snapshot:
        """The current policy (take it once, and read only it)."""
        return self._snapshot

    @property
    def known_max_set(self) -> int:
        """The newest marking set the compiled policy knows."""
        return self._snapshot.max_set

    def refresh(self, force: bool = False) -> None:
        """Pick up marking sets and community changes made by this or another process.

        Asked at most every _POLICY_CHECK seconds unless forced: a reader that meets a marking set newer than
        its compiled policy forces it, so only community changes can be that late.
        """
        now = time.monotonic()
        if not force and now - self._checked < _POLICY_CHECK:
            return
        self._checked = now
        generation = self.store.policy_generation()
        if generation == self._snapshot.generation:
            return
        with self._lock:
            old = self._snapshot
            sets: Mapping[int, MarkingSet] = old.sets
            if generation[0] != old.generation[0]:
                new = self.store.marking_sets(after_id=old.max_set)
                if new:
                    sets = {**old.sets, **{ms.id: ms for ms in new}}
            communities = old.communities
            if generation[1] != old.generation[1]:
                communities = tuple(self.store.communities())
            self._snapshot = Snapshot(generation, sets, communities)

    def made(self, set_id: int) -> None:
        """A marking set was just made here: the next read recompiles the policy if it is new to it."""
        if set_id > self._snapshot.max_set:
            self._checked = 0.0

    def visible_sets(self, party: Party, refresh: bool = False) -> frozenset[int]:
        """The marking sets this party may read today: the one policy engine, compiled and cached."""
        self.refresh(force=refresh)
        snapshot = self._snapshot
        day = self._today()
        key = (party.nation, party.clearance, day, party.kind, party.relay_for)
        compiled = snapshot.compiled.get(key)
        if compiled is None:
            today = date.fromisoformat(day)
            members = membership_index(snapshot.communities, today)
            if party.is_node:
                nations = policy.relayed_nations(party.relay_for, members) if party.kind == "relay" else {party.nation}
                compiled = policy.node_visible_sets(nations, party.clearance, snapshot.sets.values(), members)
            else:
                compiled = policy.visible_sets(party.nation, party.clearance, snapshot.sets.values(), members)
            snapshot.compiled[key] = compiled
        return compiled

    def _today(self) -> str:
        """Today's date (UTC), ISO: worked out again only when the clock passes the end of the day it knows."""
        now = time.time()
        if now >= self._day_ends or now < self._day_ends - 86400:
            today = datetime.fromtimestamp(now, UTC).date()
            self._day = today.isoformat()
            self._day_ends = datetime.combine(today + timedelta(days=1), dt_time(), UTC).timestamp()
        return self._day

    def sees(self, party: Party, read_at: float | None = None) -> frozenset[int] | None:
        """The marking sets this party may see, or None when it may see every one.

        `read_at` (time.monotonic()) is when the versions to judge were read, if known: a policy refreshed
        since then knows every marking set they (and the fields and objects they name) were stored under.
        """
        visible = self.visible_sets(party)
        if len(visible) == len(self._snapshot.sets) and (read_at is None or self._checked < read_at):
            # Seeing every set we know of: make sure no other process made one before the versions were read
            # (one small query; the subscribers of one live feed share it).
            visible = self.visible_sets(party, refresh=True)
        if len(visible) == len(self._snapshot.sets):
            # A party that may see every marking set sees every object and every field. (The fields' sets
            # were made before their versions were stored, so the refresh above knows them all.)
            return None
        return visible

    def every_set(self) -> frozenset[int]:
        """The ids of every marking set known."""
        return frozenset(self._snapshot.sets)

    def marking_set(self, set_id: int) -> MarkingSet:
        """A marking set by id."""
        if set_id not in self._snapshot.sets:
            self.refresh(force=True)
        return self._snapshot.sets[set_id]
