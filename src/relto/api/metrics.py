"""Prometheus metrics of one process (docs/operations.md#monitoring): a registry per app, never the global one.

What is counted as it happens (HTTP requests, live subscribers) lives in `Metrics`; what the node already knows
(what `Node.record` counted, peers, the decision log's backlog, cache sizes, feeds) is read at scrape time by
`NodeCollector`, so nothing on the read or write paths pays for it. With --workers N each process has its own
registry: a scrape sees the worker that answered it.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from relto.federation.peers import peer_view
from relto.node import Node
from relto.stream.feed import Feeds

PEER_STATES = ("new", "following", "catching up", "failing")
_RELEASE_EXITS = ("taxii", "ui", "stream", "federation")
# Decision paths that write objects into this node, and the exit each is counted under.
_WRITES = {"publish": "local", "federation.receive": "federation"}


def release_exit(path: str) -> str | None:
    """The exit path (taxii, ui, stream, federation) a decision path releases versions on; None: not a release."""
    head = path.split(".", 1)[0]
    if head in _RELEASE_EXITS and path != "federation.receive":
        return head
    return None


class Metrics:
    """One app's registry and the metrics updated as requests come and go."""

    def __init__(self, node: Node, feeds: Feeds) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "relto_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "relto_http_request_duration_seconds",
            "Time to answer an HTTP request (a live stream: its whole life), by method and route template.",
            ["method", "route"],
            registry=self.registry,
        )
        self.subscribers = Gauge(
            "relto_stream_subscribers", "Live stream subscribers connected now.", registry=self.registry
        )
        self.registry.register(NodeCollector(node, feeds))


class NodeCollector(Collector):
    """What the node knows, read when Prometheus scrapes."""

    def __init__(self, node: Node, feeds: Feeds) -> None:
        self.node = node
        self.feeds = feeds

    def collect(self) -> Iterator[Metric]:
        """The node's metric families as of now."""
        yield from self._tally()
        yield from self._peers()
        yield from self._feeds()
        node = self.node
        yield GaugeMetricFamily(
            "relto_decision_log_pending",
            "Decision records waiting to be written (the decision log's backlog).",
            value=node.decisions.pending,
        )
        yield GaugeMetricFamily(
            "relto_policy_compiled_entries",
            "Compiled visibility entries in the policy cache (one per nation, clearance, day and node kind).",
            value=len(node.policy.snapshot.compiled),
        )
        yield GaugeMetricFamily(
            "relto_policy_marking_sets", "Marking sets the compiled policy knows.", value=len(node.policy.snapshot.sets)
        )
        yield GaugeMetricFamily(
            "relto_authenticator_cache_entries",
            "Token key ids remembered by the authenticator's cache.",
            value=len(node.authenticator),
        )

    def _tally(self) -> Iterator[Metric]:
        items, records = self.node.tally.items(), self.node.tally.records()
        published = CounterMetricFamily(
            "relto_objects_published",
            "Versions written to this node: exit local (TAXII POST and the UI's publish form) or federation.",
            labels=["exit"],
        )
        released = CounterMetricFamily(
            "relto_versions_released", "Versions released to a party, by exit path.", labels=["exit"]
        )
        decisions = CounterMetricFamily(
            "relto_decisions", "Records through Node.record (the decision log), by decision path.", labels=["path"]
        )
        totals = dict.fromkeys(_RELEASE_EXITS, 0)
        for path, count in items.items():
            exit_path = release_exit(path)
            if exit_path is not None:
                totals[exit_path] += count
        for exit_path, count in totals.items():
            released.add_metric([exit_path], count)
        for path, exit_path in _WRITES.items():
            published.add_metric([exit_path], items.get(path, 0))
        for path, count in sorted(records.items()):
            decisions.add_metric([path], count)
        yield from (published, released, decisions)

    def _peers(self) -> Iterator[Metric]:
        lag = GaugeMetricFamily("relto_peer_lag_seconds", "How far behind a peer this node is.", labels=["peer"])
        received = CounterMetricFamily("relto_peer_received", "Versions received from a peer.", labels=["peer"])
        refused = CounterMetricFamily("relto_peer_refused", "Versions from a peer refused.", labels=["peer"])
        state = GaugeMetricFamily(
            "relto_peer_state", "1 for a peer's state, 0 for the others.", labels=["peer", "state"]
        )
        for peer in self.node.store.peers():
            view = peer_view(peer)
            name = str(view["name"])
            lag.add_metric([name], float(view["lag_seconds"]))
            received.add_metric([name], float(view["received"]))
            refused.add_metric([name], float(view["refused"]))
            for each in PEER_STATES:
                state.add_metric([name, each], 1.0 if view["state"] == each else 0.0)
        yield from (lag, received, refused, state)

    def _feeds(self) -> Iterator[Metric]:
        feeds = self.feeds.all()
        ring = GaugeMetricFamily("relto_stream_ring_events", "Events in a live feed's ring.", labels=["collection"])
        lag = GaugeMetricFamily(
            "relto_stream_feed_lag_events",
            "Sequences the node has handed out beyond a live feed's head (0: the feed is caught up).",
            labels=["collection"],
        )
        head = self.node.head() if feeds else 0
        for feed in feeds:
            ring.add_metric([feed.collection_id], len(feed.ring))
            lag.add_metric([feed.collection_id], max(0, head - feed.head))
        yield from (ring, lag)
