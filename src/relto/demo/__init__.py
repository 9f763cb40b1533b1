"""`relto demo`: a throwaway node with a small coalition and fictional sample intelligence."""

from __future__ import annotations

import socket
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

import orjson

from relto.admin import issue_token, serve
from relto.domain.communities import default_communities
from relto.domain.tearline import mark_objects
from relto.node import Node
from relto.settings import Settings
from relto.store import open_store
from relto.store.base import NodeInfo
from relto.taxii.filters import Filters

NATIONS = ("GBR", "USA", "KOR", "UKR")


def sample_items() -> list[dict[str, Any]]:
    """The fictional demo intelligence shipped with the package."""
    raw = resources.files("relto.demo").joinpath("intel.json").read_bytes()
    items: list[dict[str, Any]] = orjson.loads(raw)["items"]
    return items


def seed(node: Node, tokens: dict[str, str], collection_id: str) -> int:
    """Publish every sample item as its nation, with its markings; return how many were stored."""
    stored = 0
    for item in sample_items():
        marking = item["marking"]
        fields = {s: (f["classification"], f["rel_to"]) for s, f in marking.get("fields", {}).items()}
        marked = mark_objects(
            [item["object"]],
            classification=marking["classification"],
            rel_to=marking["rel_to"],
            tlp=marking.get("tlp"),
            fields=fields,
            ladder=node.ladder,
        )
        party = node.authenticate(tokens[item["publisher"]])
        status = node.publish(party, collection_id, marked.envelope()["objects"])
        if status["failure_count"]:
            raise RuntimeError(f"demo data failed to load: {status['failures']}")
        stored += 1
    return stored


def build(data: Path) -> tuple[Node, dict[str, str], str]:
    """Create the demo node in `data`: GBR hub, one token per nation, one collection, sample data."""
    store = open_store(data=data)
    info = NodeInfo(
        node_id="demo",
        nation="GBR",
        levels=("UNCLASSIFIED", "RESTRICTED", "CONFIDENTIAL", "SECRET", "TOP SECRET"),
        title="relto demo: coalition hub",
    )
    store.initialise(info, default_communities())
    tokens = {
        n: issue_token(store, nation=n, clearance="SECRET", organisation=f"{n} analysts (demo)", name=f"{n} analyst")
        for n in NATIONS
    }
    node = Node(store, Settings.from_env())
    coll = node.add_collection("Coalition intelligence (demo)", "Fictional demo data: North Korean forces, 2024")
    seed(node, tokens, coll.id)
    return node, tokens, coll.id


def _free_port(host: str, wanted: int) -> int:
    with socket.socket() as s:
        try:
            s.bind((host, wanted))
        except OSError:
            s.bind((host, 0))
        return int(s.getsockname()[1])


def run_demo(*, host: str, port: int, data: Path | None) -> None:
    """Build the demo node, print how to use it, and serve it until Ctrl-C."""
    with tempfile.TemporaryDirectory(prefix="relto-demo-") as tmp:
        where = data or Path(tmp)
        node, tokens, coll = build(where)
        actual = _free_port(host, port)
        base = f"http://{host}:{actual}"
        everything = Filters(limit=10_000)
        total = len(sample_items())
        say = print
        say("relto demo: a coalition hub run by GBR, with fictional intelligence on North Korean forces (2024).")
        say("Each nation's token sees only what is releasable to it:\n")
        for nation, value in tokens.items():
            rows = node.read(node.authenticate(value), coll, everything).rows
            seen = sum(1 for r in rows if r.type != "marking-definition")
            say(f"  {nation}  SECRET  sees {seen:>2} of {total} reports, indicators, ...   token: {value}")
        if port and actual != port:
            say(f"\nPort {port} is busy; using {actual}.")
        say(f"\nTAXII discovery:  {base}/taxii2/")
        say(f"Collection:       {base}/api/collections/{coll}/")
        say("\nTry it (each nation gets a different answer):")
        say(
            f"  curl -s -H 'Accept: application/taxii+json;version=2.1' -H 'Authorization: Bearer {tokens['KOR']}' "
            f"{base}/api/collections/{coll}/objects/ | python3 -m json.tool"
        )
        say(
            f"  python3 -c \"from taxii2client.v21 import Collection; c = Collection('{base}/api/collections/"
            f"{coll}/', user='ukr', password='{tokens['UKR']}'); print(len(c.get_objects()['objects']))\""
        )
        tearline = next(i["object"] for i in sample_items() if i["marking"].get("fields"))
        say(f"\nA tearline: GBR's report {tearline['name']!r} is releasable to NATO, IP4 and UKR,")
        say("but its x_source_detail field is SECRET REL GBR. Preview what KOR receives (GBR's token):")
        say(
            f"  curl -s -H 'Authorization: Bearer {tokens['GBR']}' "
            f"'{base}/api/collections/{coll}/objects/{tearline['id']}/preview/?nation=KOR' | python3 -m json.tool"
        )
        say("\nWatch live (each nation sees its own share, as it is published):")
        say(f"  relto watch {base}/api/collections/{coll}/ --from-start --token {tokens['UKR']}")
        say(f"\nData directory: {where} ({'kept' if data else 'deleted on exit'}). Ctrl-C stops.", flush=True)
        serve(node, host, actual)
