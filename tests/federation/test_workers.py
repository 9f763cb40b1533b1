"""A follower on PostgreSQL served by several worker processes: exactly one process follows each peer, so the
upstream releases each version to it once (its decision log says so), and readers on every worker see it."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import orjson
import pytest

from relto.store.open import open_store
from tests.attacks.conftest import indicator, marking
from tests.conftest import Database, PostgresDatabases, new_database, relto, start_server
from tests.federation.test_multinode import NodeProc, auth, wait_for

pytestmark = pytest.mark.slow


def released_to(node: NodeProc, nation: str) -> list[str]:
    """Every id GBR's node released on the federation feed to node tokens of `nation` (its decision log)."""
    store = open_store(data=node.data)
    try:
        records = store.decisions(0, 10_000, nation=nation, path="federation")
    finally:
        store.close()
    return [stix_id for record in records for stix_id, _ in record.items]


def test_one_process_of_several_workers_follows(tmp_path: Path, postgres: PostgresDatabases | None) -> None:
    gbr = NodeProc("GBR", tmp_path / "gbr", "")
    gbr.admin = relto("init", "--data", str(gbr.data), "--nation", "GBR")
    collection = relto("collection", "add", "--data", str(gbr.data), "intel")
    writer = gbr.token("GBR", "TOP SECRET")
    peer_token = gbr.token("KOR", kind="peer")
    with new_database("postgres", tmp_path, postgres) as kor_db:
        assert isinstance(kor_db, Database)
        kor_admin = relto("init", *kor_db.args, "--nation", "KOR")
        reader = relto("token", "issue", *kor_db.args, "--nation", "KOR", "--clearance", "SECRET", "--read-only")
        gbr.start()
        try:
            relto("peer", "add", *kor_db.args, "gbr", gbr.url, "--token", peer_token)
            kor = start_server(kor_db, kor_admin, "--workers", "3", logs=tmp_path)
            try:
                to_kor = marking("SECRET", "GBR", "KOR")
                objects = [to_kor, *(indicator([to_kor], name=f"i{n}") for n in range(40))]
                posted = httpx.post(
                    f"{gbr.url}/api/collections/{collection}/objects/",
                    content=orjson.dumps({"objects": objects}),
                    headers=auth(writer),
                )
                assert posted.status_code == 202 and posted.json()["success_count"] == 41
                wanted = {o["id"] for o in objects}

                def seen() -> set[str]:
                    r = httpx.get(
                        f"{kor.url}/api/collections/{collection}/objects/", params={"limit": 500}, headers=auth(reader)
                    )
                    return {o["id"] for o in r.json().get("objects", [])} if r.status_code == 200 else set()

                wait_for(lambda: seen() == wanted, 30, "GBR's objects on every KOR worker")
                for _ in range(6):  # answered by whichever worker takes the connection
                    assert seen() == wanted
                time.sleep(2.5)  # GBR's decision log is written in batches
                sent = released_to(gbr, "KOR")
                assert sorted(sent) == sorted(wanted)  # each once: one follower, not one per worker
            finally:
                kor.stop()
        finally:
            gbr.stop()
