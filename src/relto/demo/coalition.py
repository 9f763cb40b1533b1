"""The demo's nodes: building one (communities with COALITION, the shared collection, the identities) and
playing the story on a single hub (`OneNode`)."""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from relto.admin import issue_token, join_community
from relto.demo import scenario
from relto.domain.communities import Community, Membership, default_communities
from relto.domain.errors import ReltoError
from relto.domain.levels import DEFAULT_LEVELS, Ladder
from relto.node import Node
from relto.settings import Settings
from relto.store import open_store
from relto.store.base import CollectionRecord, NodeInfo
from relto.taxii.filters import Filters

IDENTITY_MARKING = {"classification": "UNCLASSIFIED", "rel_to": ["NATO", "IP4", "UKR"], "tlp": "clear"}
_SINCE = date(2024, 6, 1)  # COALITION's founding members, for the demo


def today() -> date:
    """The day the policy engine evaluates memberships on (UTC)."""
    return datetime.now(UTC).date()


def coalition(story: dict[str, Any]) -> Community:
    """The scenario's sharing community: its members (communities expanded to today's members) from 2024-06-01."""
    spec = story["community"]
    known = {c.name: c for c in default_communities()}
    nations: list[str] = []
    for entry in spec["members"]:
        found = known.get(entry)
        nations.extend(sorted(found.members_on(today())) if found else [entry])
    spells = tuple(Membership(n, _SINCE) for n in dict.fromkeys(nations))
    return Community(spec["name"], spec["description"], spells)


def collection_record() -> CollectionRecord:
    """The one collection of the demo (the same id on every node of a federated demo)."""
    return CollectionRecord(
        id=str(uuid.uuid4()),
        title="Coalition intelligence (demo)",
        description="FICTIONAL SCENARIO DATA: a replay of October 2024 (North Korean troops in Russia)",
        created=0,
    )


def make_node(data: Path, nation: str, title: str, collection: CollectionRecord, story: dict[str, Any]) -> Node:
    """A new node of `nation` in `data`: default communities plus the scenario's, and the demo collection."""
    store = open_store(data=data)
    info = NodeInfo(node_id=str(uuid.uuid4()), nation=nation, levels=DEFAULT_LEVELS, title=title)
    store.initialise(info, [*default_communities(), coalition(story)])
    store.add_collection(collection)
    return Node(store, Settings.from_env())


def analyst_token(node: Node, nation: str) -> str:
    """A SECRET analyst's sign-in token of `nation` on this node."""
    return issue_token(
        node.store,
        nation=nation,
        clearance="SECRET",
        organisation=f"{nation} analysts (demo)",
        name=f"{nation} analyst",
    )


def operator_token(node: Node) -> str:
    """The node's admin token (its own nation, top clearance)."""
    return issue_token(
        node.store,
        nation=node.info.nation,
        clearance=node.ladder.levels[-1],
        organisation="",
        name="operator",
        admin=True,
    )


def publish(node: Node, token: str, collection_id: str, objects: list[Any]) -> None:
    """Publish as the token's holder; a refusal is a bug in the scenario, so it raises."""
    status = node.publish(node.authenticate(token), collection_id, objects)
    if status["failure_count"]:
        raise ReltoError(f"demo data refused: {status['failures']}")


def visible(node: Node, token: str, collection_id: str) -> int:
    """How many objects (marking-definitions aside) the token's holder may read in the collection."""
    rows = node.read(node.authenticate(token), collection_id, Filters(limit=10_000)).rows
    return sum(1 for r in rows if r.type != "marking-definition")


def join(node: Node, nation: str, community: str) -> None:
    """`nation` joins `community` on this node from today (a no-op when it is a member already)."""
    with contextlib.suppress(ReltoError):
        join_community(node, community, nation, today())


def leave(node: Node, nation: str, community: str) -> bool:
    """Undo `nation`'s membership of `community` on this node, history included (a replay starts the story
    again; two spells may not start on the same day); False when it was no member."""
    found = {c.name: c for c in node.communities()}.get(community)
    if found is None or not any(m.nation == nation for m in found.members):
        return False
    node.put_community(Community(found.name, found.description, tuple(m for m in found.members if m.nation != nation)))
    return True


@dataclass
class OneNode:
    """The story on a single hub: every nation publishes on it, with its own token."""

    node: Node
    collection_id: str
    tokens: dict[str, str] = field(default_factory=dict)

    def publish(self, nation: str, objects: list[Any]) -> None:
        """Publish as `nation`'s analyst."""
        publish(self.node, self.tokens[nation], self.collection_id, objects)

    def join(self, nation: str, community: str) -> int:
        """`nation` joins; return how many more items its analyst now sees."""
        before = visible(self.node, self.tokens[nation], self.collection_id)
        join(self.node, nation, community)
        return visible(self.node, self.tokens[nation], self.collection_id) - before

    def leave(self, nation: str, community: str) -> bool:
        """`nation` leaves (a new replay starts)."""
        return leave(self.node, nation, community)

    def ladder_levels(self) -> tuple[str, ...]:
        """The node's ladder."""
        return self.node.ladder.levels


def publish_identities(stage_publish: Any, story: dict[str, Any], ladder: Ladder) -> None:
    """Each nation publishes its (fictional) identity, releasable to every nation of the demo."""
    for nation, identity in scenario.identities(story):
        stage_publish(nation, scenario.marked([identity], IDENTITY_MARKING, ladder))
