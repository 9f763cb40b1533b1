"""Settings: one table of names, defaults and help; RELTO_* environment variables overlay the defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields

from relto.domain.errors import ConfigurationError


@dataclass(frozen=True)
class Setting:
    """One setting: its name, default and what it is for."""

    name: str
    default: int
    help: str


SETTINGS = (
    Setting("max_content_length", 8 * 1024 * 1024, "largest request body accepted, in bytes (413 above)"),
    Setting("default_page_size", 1000, "objects per page when the client gives no limit"),
    Setting("max_page_size", 10000, "largest page a client may ask for with limit"),
    Setting("status_retention_hours", 72, "how long status resources are kept (TAXII asks for at least 24)"),
    Setting("stream_heartbeat_seconds", 15, "idle live streams get a comment line this often (keeps proxies open)"),
    Setting(
        "stream_ring_size",
        10000,
        "events kept in memory per collection for live subscribers; one that "
        "falls further behind is told so and closed (it resumes from its cursor)",
    ),
    Setting("stream_poll_ms", 1000, "how often live feeds look for writes no doorbell announced"),
    Setting("stream_stall_seconds", 30, "a live subscriber that accepts no data for this long is disconnected"),
    Setting("decision_log", 1, "1: record every release and write in the tamper-evident decision log; 0: off"),
    Setting(
        "decision_log_flush_ms",
        200,
        "how often the decision log is written (records of the last interval can be lost on a crash)",
    ),
    Setting(
        "max_marking_sets_per_nation",
        1000,
        "distinct combinations of markings one nation may create on this node (each costs every reader a little)",
    ),
    Setting(
        "publish_bytes_at_once",
        16 * 1024 * 1024,
        "bytes of posted envelopes read, parsed and stored at once in one process; posts beyond it wait their turn",
    ),
    Setting("max_envelope_objects", 50000, "most objects one posted envelope may hold (413 above)"),
)
_DEFAULT = {s.name: s.default for s in SETTINGS}
# On/off settings: 0 or 1; every other setting must be a positive whole number.
SWITCHES = frozenset({"decision_log"})


@dataclass(frozen=True)
class Settings:
    """The values in force; build with Settings.from_env() to apply RELTO_* variables."""

    max_content_length: int = _DEFAULT["max_content_length"]
    default_page_size: int = _DEFAULT["default_page_size"]
    max_page_size: int = _DEFAULT["max_page_size"]
    status_retention_hours: int = _DEFAULT["status_retention_hours"]
    stream_heartbeat_seconds: int = _DEFAULT["stream_heartbeat_seconds"]
    stream_ring_size: int = _DEFAULT["stream_ring_size"]
    stream_poll_ms: int = _DEFAULT["stream_poll_ms"]
    stream_stall_seconds: int = _DEFAULT["stream_stall_seconds"]
    decision_log: int = _DEFAULT["decision_log"]
    decision_log_flush_ms: int = _DEFAULT["decision_log_flush_ms"]
    max_marking_sets_per_nation: int = _DEFAULT["max_marking_sets_per_nation"]
    publish_bytes_at_once: int = _DEFAULT["publish_bytes_at_once"]
    max_envelope_objects: int = _DEFAULT["max_envelope_objects"]

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.name in SWITCHES:
                if getattr(self, f.name) not in (0, 1):
                    raise ConfigurationError(f"setting {f.name} must be 1 (on) or 0 (off)")
            elif getattr(self, f.name) < 1:
                raise ConfigurationError(f"setting {f.name} must be a positive whole number")
        if self.status_retention_hours < 24:
            raise ConfigurationError("status_retention_hours must be at least 24 (TAXII 2.1 section 4.3)")
        if self.default_page_size > self.max_page_size:
            raise ConfigurationError("default_page_size must not exceed max_page_size")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Defaults overlaid by RELTO_<NAME> environment variables."""
        env = os.environ if environ is None else environ
        values: dict[str, int] = {}
        for s in SETTINGS:
            raw = env.get(f"RELTO_{s.name.upper()}")
            if raw is not None:
                try:
                    values[s.name] = int(raw)
                except ValueError:
                    raise ConfigurationError(f"RELTO_{s.name.upper()} must be a whole number, got {raw!r}") from None
        return cls(**values)
