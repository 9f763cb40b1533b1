"""Domain exceptions. They carry no HTTP codes: api/errors.py maps them to TAXII error bodies.

ReltoError
├── InvalidRequest           the request itself is malformed (a filter, a parameter)
│   ├── InvalidEnvelope      the body is JSON but not a TAXII envelope
│   ├── MalformedJSON        the body is not JSON at all
│   ├── NotAcceptable        the client accepts no media type we produce
│   ├── UnsupportedMediaType the body is in a media type we do not take
│   ├── PayloadTooLarge      the body is over max_content_length
│   └── InvalidValue         a value someone gave is not valid (a nation code, level, REL TO, selector)
├── InvalidObject            one STIX object fails a check (reported per object in a status)
├── Unauthenticated          no credential, or one we do not know
├── Forbidden                known party, not allowed to do this
├── NotFound                 no such thing, or not visible to this party (the same answer)
└── ConfigurationError       the node is set up wrongly (settings, data directory, database)
"""

from __future__ import annotations


class ReltoError(Exception):
    """Base of every error relto raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(ReltoError):
    """The request is malformed: say what to fix."""


class InvalidEnvelope(InvalidRequest):
    """The body parsed as JSON but is not a TAXII envelope."""


class MalformedJSON(InvalidRequest):
    """The body is not valid JSON."""


class NotAcceptable(InvalidRequest):
    """No media type in the Accept header is one we produce."""


class UnsupportedMediaType(InvalidRequest):
    """The request body's Content-Type is not one we accept."""


class PayloadTooLarge(InvalidRequest):
    """The request body is larger than the node accepts."""


class InvalidValue(InvalidRequest):
    """A value given by a person or a client (a nation code, level, REL TO, selector) is not valid."""


class InvalidObject(ReltoError):
    """A STIX object failed a check; the message says which property and why."""


class Unauthenticated(ReltoError):
    """No credential was given, or it is not valid."""


class Forbidden(ReltoError):
    """The party is known but may not do this."""


class NotFound(ReltoError):
    """Nothing there, or nothing this party may see: the two are indistinguishable on purpose."""


class ConfigurationError(ReltoError):
    """The node is set up wrongly: a setting, its data directory or its database."""
