"""OpenCTI's own observable types, declared as pycti declares them: stix2 custom observables of a `value`.

pycti itself is not a test dependency (it pulls in OpenCTI's whole client); these are the same shapes, built
with stix2's `CustomObservable`, so the objects are what an OpenCTI export or connector sends. Imported once
per process: stix2 keeps one global registry of types.
"""

from __future__ import annotations

from typing import Any

import stix2
from stix2.properties import ListProperty, ReferenceProperty, StringProperty

TYPES = ("hostname", "text", "user-agent", "phone-number", "cryptocurrency-wallet", "credential", "tracking-number")


def _declare(type_: str) -> Any:
    properties = [
        ("value", StringProperty(required=True)),
        ("spec_version", StringProperty(fixed="2.1")),
        ("object_marking_refs", ListProperty(ReferenceProperty(valid_types="marking-definition", spec_version="2.1"))),
    ]
    return stix2.CustomObservable(type_, properties, ["value"])(type(type_.title().replace("-", ""), (), {}))


CLASSES: dict[str, Any] = {type_: _declare(type_) for type_ in TYPES}


def observable(type_: str, value: str, **extra: Any) -> Any:
    """An OpenCTI observable of this type (a stix2 object; its id is UUIDv5 of the value, as OpenCTI's)."""
    return CLASSES[type_](value=value, allow_custom=True, **extra)
