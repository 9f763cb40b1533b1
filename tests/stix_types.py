"""Custom STIX types the tests use, registered with stix2 once per process (stix2 keeps one global registry).

OPENCTI: OpenCTI's own observable types, declared as pycti declares them (stix2 custom observables of a
`value`). pycti itself is not a test dependency (it pulls in OpenCTI's whole client); these are the same
shapes, so the objects are what an OpenCTI export or connector sends. AcmeSensor: an integrator's own
observable declared with stix2's `CustomObservable`.
"""

from __future__ import annotations

from typing import Any

import stix2
from stix2.properties import ListProperty, ReferenceProperty, StringProperty

OPENCTI = ("hostname", "text", "user-agent", "phone-number", "cryptocurrency-wallet", "credential", "tracking-number")


def _declare(type_: str) -> Any:
    properties = [
        ("value", StringProperty(required=True)),
        ("spec_version", StringProperty(fixed="2.1")),
        ("object_marking_refs", ListProperty(ReferenceProperty(valid_types="marking-definition", spec_version="2.1"))),
    ]
    return stix2.CustomObservable(type_, properties, ["value"])(type(type_.title().replace("-", ""), (), {}))


CLASSES: dict[str, Any] = {type_: _declare(type_) for type_ in OPENCTI}


def observable(type_: str, value: str, **extra: Any) -> Any:
    """An OpenCTI observable of this type (a stix2 object; its id is UUIDv5 of the value, as OpenCTI's)."""
    return CLASSES[type_](value=value, allow_custom=True, **extra)


@stix2.CustomObservable(
    "x-acme-sensor", [("name", StringProperty(required=True)), ("serial", StringProperty())], ["serial"]
)
class AcmeSensor:
    """A custom observable of an integrator's own, declared with stix2."""
