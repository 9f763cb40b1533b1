"""The policy view: readers on many threads while marking sets are made and the policy refreshed."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator

import pytest

from relto.domain.markings import MarkingSet
from relto.domain.parties import Party
from relto.node import Node

READERS = 4
NEW_SETS = 150


@pytest.fixture
def busy_interpreter() -> Iterator[None]:
    """Switch threads as often as the interpreter can, so a reader is cut off mid-iteration."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def party(nation: str, clearance: int) -> Party:
    return Party(token_id=0, nation=nation, clearance=clearance, can_write=False)


@pytest.mark.usefixtures("busy_interpreter")
def test_readers_on_threads_while_the_policy_refreshes(node: Node) -> None:
    """Issue 11: visible_sets iterated the marking sets while a refresh added to them ("dictionary changed
    size during iteration", a 500 on a thread-pool read). The policy is now a snapshot swapped whole."""
    for i in range(1000):  # enough sets that compiling a party's view takes a while
        node.store.marking_set_id(f"USA|seed{i}", MarkingSet(0, "USA", 0, (("USA", "GBR"),), None))
    node.visible_sets(party("USA", 0), refresh=True)
    errors: list[BaseException] = []
    done = threading.Event()
    parties = [party(n, c) for n in ("GBR", "USA", "KOR", "UKR") for c in range(5)]

    def read() -> None:
        try:
            while not done.is_set():
                for p in parties:
                    node.visible_sets(p)
        except BaseException as exc:
            errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(READERS)]
    for t in readers:
        t.start()
    try:
        for i in range(NEW_SETS):
            set_id = node.store.marking_set_id(f"GBR|new{i}", MarkingSet(0, "GBR", 0, (("GBR",),), None))
            assert set_id is not None
            node.visible_sets(parties[0], refresh=True)
            if errors:
                break
    finally:
        done.set()
        for t in readers:
            t.join()
    assert not errors, errors[0]
    # And the answer is the same as a fresh node's: nothing was lost in the swaps.
    fresh = Node(node.store)
    for p in parties:
        assert node.visible_sets(p, refresh=True) == fresh.visible_sets(p, refresh=True)
