"""relto serve's logs (relto/logs.py): text or JSON lines, the access log by route, never a token."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import orjson
import pytest

from relto.logs import JsonFormatter, log_config
from tests.conftest import free_port, relto


def test_a_json_line_has_the_four_keys_and_the_fields() -> None:
    record = logging.LogRecord("relto.access", logging.INFO, __file__, 1, "GET %s", ("/x",), None)
    record.fields = {"status": 200, "message": "not this one"}
    doc = orjson.loads(JsonFormatter().format(record))
    assert doc["level"] == "INFO" and doc["logger"] == "relto.access" and doc["message"] == "GET /x"
    assert doc["status"] == 200 and doc["ts"].endswith("Z")


def test_only_text_and_json_are_formats() -> None:
    assert log_config(True, "json")["loggers"]["relto.access"]["level"] == "INFO"
    assert log_config(False)["loggers"]["relto.access"]["level"] == "WARNING"
    with pytest.raises(ValueError, match="text or json"):
        log_config(True, "xml")


def test_serve_logs_json_lines_with_the_access_log_and_no_token(tmp_path: Path) -> None:
    admin = relto("init", "--data", str(tmp_path / "n"), "--nation", "GBR")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "relto", "serve", "--data", str(tmp_path / "n"), "--port", str(port)],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "RELTO_LOG_FORMAT": "json"},
    )
    try:
        assert server.stderr is not None
        ready = orjson.loads(server.stderr.readline())
        assert ready["logger"] == "relto" and "ready on" in ready["message"]
        assert ready["url"] == f"http://127.0.0.1:{port}/"
        headers = {"Authorization": f"Bearer {admin}", "Cookie": "relto_session=secret-cookie"}
        answer = httpx.get(f"http://127.0.0.1:{port}/api/collections/?x=1", headers=headers)
        assert answer.status_code == 200
        access = orjson.loads(server.stderr.readline())
        assert access["logger"] == "relto.access" and access["level"] == "INFO"
        assert access["method"] == "GET" and access["route"] == "/api/collections/" and access["status"] == 200
        assert access["path"] == "/api/collections/" and access["client"].startswith("127.0.0.1:")
        assert isinstance(access["duration_ms"], float)
        server.send_signal(signal.SIGTERM)
        rest = server.communicate(timeout=15)[1]
        assert server.returncode == 0
        lines = [orjson.loads(line) for line in rest.splitlines()]
        assert lines[-1]["message"] == "stopped"
        everything = rest + str(ready) + str(access)
        assert admin not in everything and admin.split("_")[-1] not in everything and "secret-cookie" not in everything
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
