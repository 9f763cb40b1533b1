"""`relto demo`: a throwaway coalition node (or a small federation of them) replaying a fictional story set
on the public facts of October 2024 (docs/demo.md).

The parts: scenario.py (the story as timed events with fresh ids), replay.py (the thread that publishes them),
coalition.py (building a node, and the story on one hub), federation.py (a hub and national nodes, linked),
serving.py (in-process servers that stop together on Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import shlex
import shutil
import sys
import tempfile
from pathlib import Path

from relto.demo import coalition, scenario
from relto.demo.replay import Replayer, Stage, clock
from relto.demo.serving import Served, start, stopped_by_signals, wait_for_stop

NATIONS = ("GBR", "USA", "KOR", "UKR", "JPN")


def relto_command() -> str:
    """How to run this same relto from any shell: the running executable's absolute path."""
    argv0 = sys.argv[0]
    if argv0.endswith(".py") or not argv0:  # python -m relto
        return f"{shlex.quote(sys.executable)} -m relto"
    found = shutil.which(argv0) or argv0
    return shlex.quote(str(Path(found).absolute()))


def say(line: str = "") -> None:
    """Print a line now (the demo's output is read live, often through a pipe)."""
    print(line, flush=True)


def run_demo(
    *,
    host: str,
    port: int,
    data: Path | None,
    speed: float = 1.0,
    loop: bool = False,
    replay: bool = True,
    federation: bool = False,
) -> None:
    """Build the demo, print how to use it, replay the story while serving, and stop cleanly on Ctrl-C or
    SIGTERM (removing the throwaway folder)."""
    with stopped_by_signals():
        where = data or Path(tempfile.mkdtemp(prefix="relto-demo-"))
        try:
            run = _run_federation if federation else _run_one
            run(where, host, port, speed=speed, loop=loop, replay=replay, kept=data is not None)
        except KeyboardInterrupt:
            pass  # Ctrl-C or SIGTERM: the normal way to end the demo
        finally:
            if data is None:
                shutil.rmtree(where, ignore_errors=True)


def _intro(story: dict[str, object]) -> None:
    say("relto demo: a coalition intelligence-sharing node replaying a story set in October 2024:")
    say("North Korean troops move to Russia, and KOR's request to join the coalition's sharing is approved.")
    say("The dates and places are public facts; every item is FICTIONAL SCENARIO DATA (label fictional-demo).")


def _story_note(join_at: float, speed: float, replay: bool, loop: bool) -> None:
    events = scenario.load()["events"]
    length = max(e["at"] for e in events)
    pace = "all at once (--no-replay)" if not replay else f"over {length / speed:.0f} s (speed x{speed:g})"
    say(f"\nThe story: {len(events)} events {pace}{', then again (--loop)' if loop else ''}. KOR is outside")
    say(f"COALITION until {clock(join_at)}; then everything REL TO COALITION becomes visible to KOR (the backfill).")


def _watch_lines(collection_url: str, tokens: dict[str, str]) -> None:
    say("\nWatch the live feed from a terminal (each nation sees its own share):")
    for nation in ("GBR", "KOR"):
        say(f"  {relto_command()} watch {collection_url} --from-start --token {tokens[nation]}")


def _serve_story(stage: Stage, where: Path, kept: bool, speed: float, loop: bool, replay: bool) -> None:
    say(f"\nData directory: {where} ({'kept' if kept else 'deleted on exit'}). Ctrl-C stops.\n")
    replayer = Replayer(stage, say, speed=speed, loop=loop, replay=replay)
    replayer.start()
    try:
        wait_for_stop()
    finally:
        replayer.stop()
        say("\nrelto demo: stopping.")


def _join_at() -> float:
    return next(float(e["at"]) for e in scenario.load()["events"] if e["kind"] == "join")


def _tokens(tokens: dict[str, str]) -> None:
    for nation, value in tokens.items():
        if nation != "operator":
            say(f"  {nation:<5} SECRET  token: {value}")


def _run_one(where: Path, host: str, port: int, *, speed: float, loop: bool, replay: bool, kept: bool) -> None:
    story = scenario.load()
    record = coalition.collection_record()
    node = coalition.make_node(where, "BEL", "relto demo: coalition hub (BEL)", record, story)
    stage = coalition.OneNode(node, record.id, {n: coalition.analyst_token(node, n) for n in NATIONS})
    stage.tokens["operator"] = coalition.operator_token(node)
    coalition.publish_identities(stage.publish, story, node.ladder)
    served: Served = start(node, host, port)
    try:
        base = served.url
        collection_url = f"{base}api/collections/{record.id}/"
        _intro(story)
        if port and f":{port}/" not in base:
            say(f"\nPort {port} is busy; using {base}.")
        say(f"\nNode (web UI):    {base}")
        say(f"TAXII discovery:  {base}taxii2/")
        say(f"Collection:       {collection_url}")
        say("\nSign in with one token per nation (each sees only what is releasable to it):")
        _tokens(stage.tokens)
        say(f"  operator (BEL, admin)  token: {stage.tokens['operator']}")
        say(f"\nOpen two browser windows at {base}: sign in as GBR in one and as KOR in the other,")
        say("and watch the same feed arrive differently (a tearline, FVEY-only items, the backfill).")
        _watch_lines(collection_url, stage.tokens)
        _story_note(_join_at(), speed, replay, loop)
        _serve_story(stage, where, kept, speed, loop, replay)
    finally:
        served.stop()


def _run_federation(where: Path, host: str, port: int, *, speed: float, loop: bool, replay: bool, kept: bool) -> None:
    from relto.demo import federation

    story = scenario.load()
    fed = federation.build(where, host, port, story)
    try:
        coalition.publish_identities(fed.publish, story, fed.hub.node.ladder)
        _intro(story)
        say("\nA federation: a coalition hub (BEL) and national nodes of GBR, USA and KOR, each its own node with its")
        say("own data folder, linked as docs/federation.md describes. Each nation publishes on its own node")
        say("(UKR and JPN on the hub); watch the same story converge on every node.")
        for name, served in fed.served():
            label = "hub (BEL)" if name == federation.HUB else f"{name} node"
            say(f"\n{label:<10} {served.url}   TAXII: {served.url}taxii2/")
            say(f"  collection: {served.url}api/collections/{fed.collection_id}/")
            _tokens(fed.tokens[name])
            say(f"  operator ({served.node.info.nation}, admin)  token: {fed.tokens[name]['operator']}")
        kor = fed.nodes["KOR"].url
        say(f"\nOpen two browser windows: GBR at {fed.nodes['GBR'].url} and KOR at {kor}.")
        say("\nWatch the live feed from a terminal, each on its own nation's node:")
        for nation in ("GBR", "KOR"):
            url = f"{fed.nodes[nation].url}api/collections/{fed.collection_id}/"
            say(f"  {relto_command()} watch {url} --from-start --token {fed.tokens[nation][nation]}")
        _story_note(_join_at(), speed, replay, loop)
        _serve_story(fed, where, kept, speed, loop, replay)
    finally:
        fed.stop()
