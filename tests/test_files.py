"""The node's data folder and SQLite files are its owner's alone, and relto refuses to open them otherwise.

The commands run with a permissive umask (022, the usual default), so what keeps the files private is relto.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from relto.domain.communities import default_communities
from relto.domain.levels import DEFAULT_LEVELS, Ladder
from relto.domain.markings import releasability_marking
from relto.store import open_store
from relto.store.base import NodeInfo
from tests.conftest import TAXII, Database, relto, start_server


@pytest.fixture(autouse=True)
def loose_umask() -> Iterator[None]:
    """Group- and world-readable by default, in this process and the commands it starts."""
    before = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(before)


def modes(folder: Path) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in [folder, *folder.iterdir()]}


def refused(*args: str) -> subprocess.CompletedProcess[str]:
    """Run a relto command that must refuse: nonzero, one message, no traceback."""
    done = subprocess.run([sys.executable, "-m", "relto", *args], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    return done


def test_init_makes_the_folder_0700_and_the_database_0600(tmp_path: Path) -> None:
    data = tmp_path / "node"
    relto("init", "--data", str(data), "--nation", "GBR")
    found = modes(data)
    assert found.pop("node") == 0o700
    assert found and set(found.values()) == {0o600}, {n: oct(m) for n, m in found.items()}


def test_the_files_serve_writes_are_0600_and_it_runs_with_a_private_umask(tmp_path: Path) -> None:
    data = tmp_path / "node"
    admin = relto("init", "--data", str(data), "--nation", "GBR")
    cid = relto("collection", "add", "--data", str(data), "files")
    server = start_server(Database("sqlite", ("--data", str(data))), admin, logs=tmp_path)
    try:
        wide = releasability_marking("UNCLASSIFIED", ["GBR"], Ladder.of(DEFAULT_LEVELS))
        r = httpx.post(
            f"{server.url}/api/collections/{cid}/objects/",
            content=orjson.dumps({"objects": [wide]}),
            headers={"Authorization": f"Bearer {admin}", "Accept": TAXII, "Content-Type": TAXII},
        )
        assert r.status_code == 202, r.text
        serving = modes(data)
        umask = Path(f"/proc/{server.process.pid}/status").read_text().split("Umask:")[1].split()[0]
    finally:
        server.stop()
    assert {"relto.db", "relto.db-wal", "relto.db-shm"} <= set(serving), serving
    for when, found in (("while serving", serving), ("after", modes(data))):
        assert found.pop("node") == 0o700, when
        assert set(found.values()) == {0o600}, (when, {n: oct(m) for n, m in found.items()})
    assert int(umask, 8) == 0o077


@pytest.mark.parametrize(
    ("target", "mode", "fix"),
    [
        pytest.param("relto.db", 0o644, "chmod 600", id="database-readable"),
        pytest.param("relto.db", 0o620, "chmod 600", id="database-group-writable"),
        pytest.param("relto.db-wal", 0o604, "chmod 600", id="wal-readable"),
        pytest.param(".", 0o755, "chmod 700", id="folder-readable"),
    ],
)
def test_serve_refuses_files_others_may_use_and_says_how_to_fix_it(
    tmp_path: Path, target: str, mode: int, fix: str
) -> None:
    data = tmp_path / "node"
    relto("init", "--data", str(data), "--nation", "GBR")
    path = (data / target).resolve()
    path.touch()
    path.chmod(mode)
    err = refused("serve", "--data", str(data), "--port", "0").stderr
    assert err.startswith("Error: the node's files are open to other users"), err
    assert f"{path} is {stat.filemode(path.stat().st_mode)}" in err, err
    assert f"{fix} {path}" in err, err
    path.chmod(0o700 if path.is_dir() else 0o600)
    relto("token", "list", "--data", str(data))


def test_every_command_that_opens_the_node_refuses(tmp_path: Path) -> None:
    data = tmp_path / "node"
    relto("init", "--data", str(data), "--nation", "GBR")
    (data / "relto.db").chmod(0o640)
    for command in (["token", "list"], ["collection", "add", "X"], ["audit", "verify"]):
        assert "chmod 600" in refused(*command, "--data", str(data)).stderr, command


def test_a_sqlite_url_is_checked_like_a_data_folder(tmp_path: Path) -> None:
    database = tmp_path / "elsewhere.db"
    relto("init", "--database", f"sqlite:///{database}", "--nation", "GBR")
    assert stat.S_IMODE(database.stat().st_mode) == 0o600
    database.chmod(0o640)
    err = refused("token", "list", "--database", f"sqlite:///{database}").stderr
    assert f"chmod 600 {database}" in err, err


def test_init_tightens_an_existing_folder_others_may_read(tmp_path: Path) -> None:
    data = tmp_path / "made-by-hand"
    data.mkdir(mode=0o755)
    done = subprocess.run(
        [sys.executable, "-m", "relto", "init", "--data", str(data), "--nation", "GBR"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert f"Made {data} private (0700)" in done.stderr
    assert stat.S_IMODE(data.stat().st_mode) == 0o700


def test_open_store_creates_private_files_itself(tmp_path: Path) -> None:
    # The library, without the command's umask: the folder, the database and SQLite's WAL files it writes.
    data = tmp_path / "node"
    store = open_store(data=data)
    try:
        store.initialise(NodeInfo(node_id="t", nation="GBR", levels=DEFAULT_LEVELS, title="t"), default_communities())
        found = modes(data)
    finally:
        store.close()
    assert found.pop("node") == 0o700
    assert {"relto.db", "relto.db-wal", "relto.db-shm"} <= set(found), found
    assert set(found.values()) == {0o600}, {n: oct(m) for n, m in found.items()}
