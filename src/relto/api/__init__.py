"""The ASGI app: TAXII 2.1 routes, authentication, and the one table from errors to HTTP."""

from relto.api.app import create_app

__all__ = ["create_app"]
