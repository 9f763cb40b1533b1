"""`relto demo --federation`: a coalition hub (BEL) and national nodes (GBR, USA, KOR), each with its own data
folder and port, linked as docs/federation.md describes; every nation publishes on its own node (UKR and JPN,
which run no node here, on the hub).

Links: each national node issues the hub a relay token (for NATO, IP4, UKR and COALITION) and the hub follows it;
the hub issues each national node a peer token and the node follows the hub, trusting it for NATO, IP4 and UKR.
A nation whose request to join is pending in the story (KOR) shares outwards only: its node follows the hub from
the approval, and so receives then everything the hub already holds releasable to it (the backfill, as in the
walk-through of docs/federation.md; a node that had followed all along would be sent the same, since a feed
backfills what its token may newly read).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from relto.admin import issue_token
from relto.demo import coalition
from relto.demo.serving import Served, start, stop_all
from relto.federation.peers import add_peer, remove_peer
from relto.node import Node
from relto.store.base import CollectionRecord

HUB = "BEL"
NATIONAL = ("GBR", "USA", "KOR")
RELAY_FOR = "NATO,IP4,UKR,COALITION"
SPEAKS_FOR = "NATO,IP4,UKR"
HUB_USERS = ("UKR", "JPN", "KOR", "GBR")  # analysts signing in at the hub (UKR and JPN publish there)


@dataclass
class Federated:
    """The hub and the national nodes, served; tokens[node name][nation or "operator"]."""

    hub: Served
    nodes: dict[str, Served]
    collection_id: str
    tokens: dict[str, dict[str, str]] = field(default_factory=dict)
    following: dict[str, str] = field(default_factory=dict)  # nation -> name of its node's peer "hub"
    rounds: dict[str, int] = field(default_factory=dict)  # nation -> times its node has followed the hub

    def served(self) -> list[tuple[str, Served]]:
        """(name, node) for the hub then each national node."""
        return [(HUB, self.hub), *self.nodes.items()]

    def _home(self, nation: str) -> tuple[Node, str]:
        served = self.nodes.get(nation, self.hub)
        return served.node, self.tokens[nation if nation in self.nodes else HUB][nation]

    def publish(self, nation: str, objects: list[Any]) -> None:
        """Publish on the nation's own node (on the hub for nations without one)."""
        node, token = self._home(nation)
        coalition.publish(node, token, self.collection_id, objects)

    def join(self, nation: str, community: str) -> int:
        """`nation` joins on every node, and its node starts following the hub (the backfill arrives there).

        Returns how many more items its analyst sees on the hub."""
        hub_token = self.tokens[HUB][nation]
        before = coalition.visible(self.hub.node, hub_token, self.collection_id)
        for _, served in self.served():
            coalition.join(served.node, nation, community)
        if nation in self.nodes:
            self.follow_hub(nation)
        return coalition.visible(self.hub.node, hub_token, self.collection_id) - before

    def leave(self, nation: str, community: str) -> bool:
        """`nation` leaves on every node, and its node stops following the hub (a new replay starts)."""
        left = any([coalition.leave(s.node, nation, community) for _, s in self.served()])
        if left and nation in self.nodes and self.following.get(nation):
            remove_peer(self.nodes[nation].node, self.following.pop(nation))
        return left

    def ladder_levels(self) -> tuple[str, ...]:
        """The nodes' ladder."""
        return self.hub.node.ladder.levels

    def follow_hub(self, nation: str) -> None:
        """The hub issues the nation's node a peer token, and the node follows the hub with it."""
        self.rounds[nation] = self.rounds.get(nation, 0) + 1
        # A new name on each replay: a follower thread of a removed peer may still be finishing its last poll.
        name = "hub" if self.rounds[nation] == 1 else f"hub-{self.rounds[nation]}"
        token = issue_token(
            self.hub.node.store, nation=nation, clearance="SECRET", organisation="", name=nation.lower(), kind="peer"
        )
        add_peer(self.nodes[nation].node, name, self.hub.url, token, speaks_for=SPEAKS_FOR)
        self.following[nation] = name

    def stop(self) -> None:
        """Stop every node (national nodes first)."""
        stop_all([*self.nodes.values(), self.hub])


def _not_removed(record: logging.LogRecord) -> bool:
    """Drop the one expected warning of a replay: the follower of a peer just removed ends its last poll."""
    return not record.getMessage().endswith("it was removed")


def pending(story: dict[str, Any]) -> set[str]:
    """The nations that join a community during the story."""
    return {e["nation"] for e in story["events"] if e["kind"] == "join"}


def build(root: Path, host: str, port: int, story: dict[str, Any]) -> Federated:
    """Create, serve and link the hub (on `port`, or any free one) and the national nodes (on free ports)."""
    collection: CollectionRecord = coalition.collection_record()
    logging.getLogger("relto.federation").addFilter(_not_removed)
    hub_node = coalition.make_node(root / "hub", HUB, f"relto demo: coalition hub ({HUB})", collection, story)
    hub = start(hub_node, host, port)
    fed = Federated(hub, {}, collection.id)
    try:
        fed.tokens[HUB] = {"operator": coalition.operator_token(hub_node)}
        fed.tokens[HUB].update({n: coalition.analyst_token(hub_node, n) for n in HUB_USERS})
        for nation in NATIONAL:
            node = coalition.make_node(
                root / nation.lower(), nation, f"relto demo: {nation} national node", collection, story
            )
            served = start(node, host, 0)
            fed.nodes[nation] = served
            fed.tokens[nation] = {
                "operator": coalition.operator_token(node),
                nation: coalition.analyst_token(node, nation),
            }
            relay = issue_token(
                node.store,
                nation=HUB,
                clearance="SECRET",
                organisation="",
                name="hub",
                kind="relay",
                relay_for=RELAY_FOR,
            )
            add_peer(hub_node, nation.lower(), served.url, relay)
            if nation not in pending(story):
                fed.follow_hub(nation)
    except BaseException:
        fed.stop()
        raise
    return fed
