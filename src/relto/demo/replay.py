"""Replaying the scenario in real time: a background thread publishes each event at its offset (divided by
the speed), prints a line for it, and with `loop` starts again with fresh ids."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from relto.demo import scenario


class Stage(Protocol):
    """Where the story is played: one node, or a federation of them."""

    def publish(self, nation: str, objects: list[Any]) -> None:
        """Publish marked objects as an analyst of `nation` (on that nation's node)."""

    def join(self, nation: str, community: str) -> int:
        """Make `nation` a member of `community` from today; return how many more items it may now see."""

    def leave(self, nation: str, community: str) -> bool:
        """End `nation`'s membership of `community` (for a new replay); False when it was no member."""

    def ladder_levels(self) -> tuple[str, ...]:
        """The classification ladder of the nodes."""


def clock(seconds: float) -> str:
    """T+MM:SS."""
    whole = int(seconds)
    return f"T+{whole // 60:02d}:{whole % 60:02d}"


class Replayer:
    """The thread publishing the scenario's events at their offsets; `stop()` ends it between events."""

    def __init__(
        self, stage: Stage, say: Callable[[str], None], *, speed: float = 1.0, loop: bool = False, replay: bool = True
    ) -> None:
        self.stage, self.say, self.speed, self.loop, self.replay = stage, say, speed, loop, replay
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-replay", daemon=True)
        self.done = threading.Event()  # set when a (first) replay has published its last event

    def start(self) -> None:
        """Start replaying in the background."""
        self._thread.start()

    def stop(self) -> None:
        """Stop between events and wait for the thread."""
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        from relto.domain.levels import Ladder

        ladder = Ladder.of(list(self.stage.ladder_levels()))
        story = scenario.load()
        round_ = 1
        while not self._stop.is_set():
            if round_ > 1:
                self.say(f"\n--- replay {round_}: the story again, with fresh ids ---")
                for event in story["events"]:
                    if event["kind"] == "join" and self.stage.leave(event["nation"], event["community"]):
                        self.say(
                            f"operator resets: {event['nation']} is outside {event['community']} again (for the replay)"
                        )
            began = time.monotonic()
            for event in scenario.events(story):
                delay = began + event.at / self.speed - time.monotonic() if self.replay else 0.0
                if self._stop.wait(max(0.0, delay)):
                    return
                self._play(event, ladder)
            self.done.set()
            if not self.loop:
                return
            round_ += 1
            if self._stop.wait(5 / self.speed):
                return

    def _play(self, event: scenario.Event, ladder: Any) -> None:
        at = clock(event.at)
        try:
            if event.kind == "publish":
                self.stage.publish(event.publisher, scenario.marked(event.objects, event.marking, ladder))
                self.say(f"{at} {scenario.headline(event)}")
            elif event.kind == "join":
                self.say(f"{at} {event.say}")
                n = self.stage.join(event.publisher, event.community)
                self.say(f"       {event.publisher} joins: {n} items now releasable to {event.publisher}")
            else:
                self.say(f"{at} {event.say}")
        except Exception as exc:  # a demo keeps going: say what failed, play the next event
            self.say(f"{at} (demo step failed: {exc})")
