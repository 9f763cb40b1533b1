"""Class 10: the node's data files are readable by its own user alone."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.attacks.conftest import indicator, marking
from tests.conftest import BACKENDS, TAXII, Database, free_port, relto, start_server

pytestmark = pytest.mark.slow

REFUSAL_SECONDS = 10


def modes(folder: Path) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()}


@pytest.mark.parametrize("backend", BACKENDS)
def test_data_files_are_private_and_serve_refuses_readable_ones(backend: str, tmp_path: Path) -> None:
    """Class 10 (data files): another local account must not read the node's database. `relto init` makes the data
    directory 0700 and its files 0600 (so do the WAL files `relto serve` writes), and `relto serve` refuses to run on
    a database file someone made readable to others."""
    if backend != "sqlite":
        pytest.skip("data-file modes concern the SQLite back-end (a data directory)")
    data = tmp_path / "node"
    admin = relto("init", "--data", str(data), "--nation", "GBR")
    folder_mode = stat.S_IMODE(data.stat().st_mode)
    after_init = modes(data)

    cid = relto("collection", "add", "--data", str(data), "files")
    server = start_server(Database("sqlite", ("--data", str(data))), admin, logs=tmp_path)
    try:
        wide = marking("UNCLASSIFIED", "GBR", "KOR")
        r = httpx.post(
            f"{server.url}/api/collections/{cid}/objects/",
            content=json.dumps({"objects": [wide, indicator([wide])]}),
            headers={"Authorization": f"Bearer {admin}", "Accept": TAXII, "Content-Type": TAXII},
        )
        assert r.status_code == 202 and not r.json().get("failures"), r.text
        while_serving = modes(data)
    finally:
        server.stop()
    after_serving = modes(data)

    database = data / "relto.db"
    database.chmod(0o644)
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "relto", "serve", "--data", str(data), "--port", str(free_port())],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _, stderr = process.communicate(timeout=REFUSAL_SECONDS)
        exited = True
    except subprocess.TimeoutExpired:
        process.terminate()
        _, stderr = process.communicate(timeout=15)
        exited = False
    took = time.monotonic() - started

    assert folder_mode == 0o700, oct(folder_mode)
    for when, found in (("init", after_init), ("serve", while_serving), ("after serve", after_serving)):
        loose = {name: oct(mode) for name, mode in found.items() if mode != 0o600}
        assert loose == {}, f"files readable by others after {when}"
    assert {"relto.db", "relto.db-wal", "relto.db-shm"} <= set(while_serving), while_serving
    assert exited, f"relto serve kept running on a database file readable by others (0644): {stderr[-500:]}"
    assert process.returncode != 0 and took < REFUSAL_SECONDS
    assert "chmod" in stderr and "relto.db" in stderr, stderr
