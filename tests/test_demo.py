"""`relto demo`, run as a user would (a real process): the story, each nation's view, KOR's backfill, a clean
stop, and the federated demo converging."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from relto.demo import scenario
from tests.conftest import TAXII

SEALIFT = "Pacific Fleet sealift"
ASSESSMENT = "Assessment: North Korean units bound for the Kursk front"
AIRLIFT = "An-124 flights"


class Demo:
    """A running `relto demo`: its output so far (read on a thread, so the pipe never fills)."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "relto", "demo", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 25) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.text, re.M)
            if found:
                return found
            assert self.process.poll() is None, self.text
            time.sleep(0.05)
        raise AssertionError(f"no {pattern!r} in:\n{self.text}")

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise


@contextmanager
def demo(*args: str) -> Iterator[Demo]:
    running = Demo(*args)
    try:
        yield running
    finally:
        if running.process.poll() is None:
            running.process.kill()
            running.process.wait()
        running._reader.join(timeout=5)
        if running.process.stdout is not None:
            running.process.stdout.close()


def objects(collection_url: str, token: str) -> list[dict[str, Any]]:
    r = httpx.get(
        collection_url + "objects/",
        headers={"Authorization": f"Bearer {token}", "Accept": TAXII},
        params={"limit": 1000},
    )
    assert r.status_code == 200, r.text
    return [o for o in r.json()["objects"] if o["type"] != "marking-definition"]


def named(items: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    return [o for o in items if o.get("name", "").startswith(prefix)]


def test_every_scenario_object_says_it_is_fictional() -> None:
    story = scenario.load()
    everything = [o for e in scenario.events(story) for o in e.objects] + [i for _, i in scenario.identities(story)]
    assert len(everything) > 20
    for obj in everything:
        assert scenario.LABEL in obj["labels"]
        assert obj.get("description", obj.get("content", "")).startswith(scenario.FICTIONAL)


def test_the_story_gives_each_nation_its_view_and_kor_its_backfill() -> None:
    with demo("--speed", "6") as d:
        intro = d.wait_for(r"Ctrl-C stops")
        assert intro
        tokens = dict(re.findall(r"^\s+([A-Z]{3})\s+SECRET\s+token: (\S+)$", d.text, re.M))
        assert {"GBR", "USA", "KOR", "UKR", "JPN"} <= set(tokens)
        assert re.search(r"operator \(BEL, admin\)\s+token: rt_", d.text)
        assert re.search(r"^Node \(web UI\):\s+http://127\.0\.0\.1:\d+/$", d.text, re.M)
        url = d.wait_for(r"^Collection:\s+(\S+)$").group(1)
        command = shlex.split(d.wait_for(r"^\s+(.+) watch " + re.escape(url)).group(1))
        assert Path(command[0]).is_absolute()
        assert subprocess.run([*command, "watch", "--help"], capture_output=True).returncode == 0  # works as pasted

        d.wait_for(r"GBR publishes report \"" + SEALIFT)
        assert named(objects(url, tokens["GBR"]), SEALIFT)
        assert not named(objects(url, tokens["KOR"]), SEALIFT), "REL TO COALITION before KOR joins"

        joined = d.wait_for(r"KOR joins: (\d+) items now releasable to KOR")
        assert int(joined.group(1)) >= 4
        assert named(objects(url, tokens["KOR"]), SEALIFT), "the backfill"

        d.wait_for(r"GBR publishes report \"" + ASSESSMENT)
        gbr, kor = objects(url, tokens["GBR"]), objects(url, tokens["KOR"])
        assert "x_source_detail" in named(gbr, ASSESSMENT)[0]
        assert "x_source_detail" not in named(kor, ASSESSMENT)[0], "the tearline"
        assert named(gbr, AIRLIFT) and not named(kor, AIRLIFT), "REL TO FVEY"
        assert {o["id"] for o in gbr} != {o["id"] for o in kor}
        for obj in gbr + kor:
            assert scenario.LABEL in obj["labels"], obj
        assert d.stop(signal.SIGINT) == 0


def test_sigterm_stops_cleanly_and_removes_the_folder() -> None:
    with demo("--no-replay") as d:
        folder = Path(d.wait_for(r"^Data directory: (\S+) \(deleted on exit\)").group(1))
        d.wait_for(r"end of the scenario")
        assert folder.is_dir()
        assert d.stop(signal.SIGTERM) == 0
        assert not folder.exists()


def test_federation_converges_on_kors_node() -> None:
    with demo("--federation", "--speed", "20") as d:
        folder = Path(d.wait_for(r"^Data directory: (\S+) \(deleted on exit\)").group(1))
        kor_node = d.wait_for(r"^KOR node\s+(\S+)").group(1)
        section = d.text[d.text.index("KOR node") :]
        kor_token = re.search(r"KOR\s+SECRET\s+token: (\S+)", section)
        url = re.search(r"collection: (\S+)", section)
        assert kor_token and url and url.group(1).startswith(kor_node)
        d.wait_for(r"end of the scenario")
        deadline = time.monotonic() + 20
        while True:
            seen = objects(url.group(1), kor_token.group(1))
            if named(seen, ASSESSMENT) and named(seen, SEALIFT):
                break
            assert time.monotonic() < deadline, [o.get("name") for o in seen]
            time.sleep(0.3)
        assert "x_source_detail" not in named(seen, ASSESSMENT)[0]
        assert not named(seen, AIRLIFT)
        assert d.stop(signal.SIGTERM) == 0
        assert not folder.exists()


def test_loop_replays_the_story_with_fresh_ids_and_the_backfill_again() -> None:
    with demo("--speed", "60", "--loop") as d:
        url = d.wait_for(r"^Collection:\s+(\S+)$").group(1)
        gbr = re.search(r"^\s+GBR\s+SECRET\s+token: (\S+)$", d.text, re.M)
        assert gbr
        d.wait_for(r"KOR joins: \d+ items(?s:.*)KOR joins: \d+ items", timeout=20)
        assert "replay 2" in d.text
        assert len(named(objects(url, gbr.group(1)), SEALIFT)) >= 2  # each replay publishes new objects
        assert d.stop(signal.SIGINT) == 0
