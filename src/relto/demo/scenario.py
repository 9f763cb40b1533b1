"""The demo's story: scenario.json read into timed events, each publishing fresh STIX objects marked for release.

Scenario objects name each other by local keys (`@sealift`); every replay gives them fresh ids, so `--loop`
publishes a new set each time. Identities (`@identity:GBR`) keep one id and version across replays. Every object
is labelled `fictional-demo` and its text starts with FICTIONAL (docs/demo.md).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import orjson

from relto.domain.levels import Ladder
from relto.domain.tearline import mark_objects

FICTIONAL = "FICTIONAL SCENARIO DATA — "
LABEL = "fictional-demo"
_NAMESPACE = uuid.UUID("5b0f3c9e-4d1a-4c63-9a55-1c0de0de0001")
_IDENTITY_TIME = "2024-06-01T00:00:00.000Z"
# The property that carries the text of each type (a note has no description).
_TEXT = {"note": "content"}


@dataclass(frozen=True)
class Event:
    """One step of the story: at `at` seconds, a note, a community join, or a nation publishing objects."""

    at: float
    kind: str  # "note", "join" or "publish"
    say: str = ""
    publisher: str = ""  # publish: the nation; join: the nation joining
    community: str = ""
    marking: dict[str, Any] = field(default_factory=dict)
    objects: tuple[dict[str, Any], ...] = ()


def load() -> dict[str, Any]:
    """The scenario as shipped with the package."""
    data: dict[str, Any] = orjson.loads(resources.files("relto.demo").joinpath("scenario.json").read_bytes())
    return data


def identity_id(nation: str) -> str:
    """The demo identity of a nation: the same id on every replay and every node."""
    return f"identity--{uuid.uuid5(_NAMESPACE, nation)}"


def fictional(obj: dict[str, Any]) -> dict[str, Any]:
    """The object labelled fictional, its text starting with FICTIONAL."""
    key = _TEXT.get(obj["type"], "description")
    text = obj.get(key, "")
    return {
        **obj,
        key: text if text.startswith(FICTIONAL) else FICTIONAL + (text or "demo object."),
        "labels": sorted({*obj.get("labels", []), LABEL}),
    }


def identities(scenario: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(nation, identity) for every publishing nation, unchanged across replays."""
    return [
        (
            nation,
            fictional(
                {
                    "type": "identity",
                    "spec_version": "2.1",
                    "id": identity_id(nation),
                    "created": _IDENTITY_TIME,
                    "modified": _IDENTITY_TIME,
                    "name": name,
                    "identity_class": "organization",
                    "sectors": ["defense", "government"],
                    "description": f"The demo's publishing organisation of {nation}.",
                }
            ),
        )
        for nation, name in scenario["identities"].items()
    ]


def events(scenario: dict[str, Any], now: datetime | None = None) -> list[Event]:
    """The scenario's events with fresh ids (one id per local key, shared by every event of this replay)."""
    stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    ids: dict[str, str] = {}

    def resolve(value: Any) -> Any:
        if isinstance(value, str) and value.startswith("@identity:"):
            return identity_id(value.removeprefix("@identity:"))
        if isinstance(value, str) and value.startswith("@"):
            if value not in ids:
                raise KeyError(f"scenario.json: {value} is used before the event that publishes it")
            return ids[value]
        if isinstance(value, list):
            return [resolve(v) for v in value]
        return value

    out = []
    for raw in scenario["events"]:
        objects = []
        for template in raw.get("objects", []):
            ids[template["id"]] = f"{template['type']}--{uuid.uuid4()}"
        for template in raw.get("objects", []):
            obj = {k: resolve(v) for k, v in template.items()}
            obj.update(
                spec_version="2.1",
                created=stamp,
                modified=stamp,
                created_by_ref=identity_id(raw["publisher"]),
            )
            objects.append(fictional(obj))
        out.append(
            Event(
                at=float(raw["at"]),
                kind=raw["kind"],
                say=raw.get("say", ""),
                publisher=raw.get("publisher", raw.get("nation", "")),
                community=raw.get("community", ""),
                marking=raw.get("marking", {}),
                objects=tuple(objects),
            )
        )
    return out


def marked(
    objects: list[dict[str, Any]] | tuple[dict[str, Any], ...], marking: dict[str, Any], ladder: Ladder
) -> list[Any]:
    """The objects with their markings (and the marking-definitions they name), ready to publish."""
    fields = {s: (f["classification"], f["rel_to"]) for s, f in marking.get("fields", {}).items()}
    done = mark_objects(
        list(objects),
        classification=marking["classification"],
        rel_to=marking["rel_to"],
        tlp=marking.get("tlp"),
        fields=fields,
        ladder=ladder,
    )
    result: list[Any] = done.envelope()["objects"]
    return result


def banner(marking: dict[str, Any]) -> str:
    """How the demo prints a marking: SECRET REL TO NATO, UKR."""
    return f"{marking['classification']} REL TO {', '.join(marking['rel_to'])}"


def headline(event: Event) -> str:
    """One line saying what the event publishes: the main object's name and how many objects come with it."""
    main = next((o for o in event.objects if o["type"] in ("report", "note", "sighting")), event.objects[0])
    if main["type"] == "sighting":
        places = ", ".join(o["name"] for o in event.objects if o["type"] == "location")
        what = f"a sighting near {places}"
    else:
        what = f'{main["type"]} "{main.get("name") or main.get("abstract") or main["id"]}"'
    extra = len(event.objects) - 1
    more = f" (+{extra} object{'s' if extra > 1 else ''})" if extra else ""
    return f"{event.publisher} publishes {what}{more} ({banner(event.marking)})"
