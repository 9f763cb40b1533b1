"""How `relto serve` logs: uvicorn's, relto's own and the access log through one configuration, as text or JSON.

JSON lines carry `ts` (UTC, ISO 8601), `level`, `logger` and `message`, then the record's fields (the access
log's method, path, route, status, duration_ms and client; the ready line's url). No formatter here prints a
header: tokens and session cookies travel only in headers, so they cannot reach a log line.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import orjson

FORMATS = ("text", "json")
_RESERVED = ("ts", "level", "logger", "message")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, message, and the record's `fields` (a dict), if any."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            doc.update((k, v) for k, v in fields.items() if k not in _RESERVED)
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


def log_config(access_log: bool, log_format: str = "text") -> dict[str, Any]:
    """logging.config.dictConfig for a server: uvicorn's messages at WARNING, relto's from INFO, and one line
    per request (relto.access) when `access_log`, all on stderr in `log_format` (text or json)."""
    if log_format not in FORMATS:
        raise ValueError(f"log format {log_format!r}: choose text or json")
    as_json = log_format == "json"
    formatters: dict[str, Any] = {
        "json": {"()": "relto.logs.JsonFormatter"},
        "plain": {"format": "%(asctime)s %(levelname)s %(message)s"},
        "access": {"format": "%(asctime)s %(message)s"},
    }

    def handler(formatter: str) -> dict[str, str]:
        return {
            "class": "logging.StreamHandler",
            "formatter": "json" if as_json else formatter,
            "stream": "ext://sys.stderr",
        }

    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": formatters,
        "handlers": {
            "plain": handler("plain"),
            "access": handler("access"),
        },
        "loggers": {
            "uvicorn": {"handlers": ["plain"], "level": "WARNING", "propagate": False},
            "uvicorn.error": {"handlers": ["plain"], "level": "WARNING", "propagate": False},
            # relto.access (relto.api.access) writes the access log: uvicorn's own knows no route or duration.
            "uvicorn.access": {"handlers": ["access"], "level": "WARNING", "propagate": False},
            "relto": {"handlers": ["plain"], "level": "INFO", "propagate": False},
            "relto.access": {"handlers": ["access"], "level": "INFO" if access_log else "WARNING", "propagate": False},
        },
    }
