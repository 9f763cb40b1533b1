"""The `relto` command, run as a user would (a real subprocess) or through click's runner."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
from click.testing import CliRunner

from relto.cli import main
from tests.conftest import relto

TOKEN = re.compile(r"^rt_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$")


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def test_init_prints_only_the_admin_token(tmp_path: Path) -> None:
    code, out, err = run("init", "--data", str(tmp_path), "--nation", "gbr")
    assert code == 0
    assert TOKEN.match(out.strip())
    assert "shown once" in err


def test_init_twice_is_a_clear_error(tmp_path: Path) -> None:
    run("init", "--data", str(tmp_path), "--nation", "GBR")
    code, _, err = run("init", "--data", str(tmp_path), "--nation", "GBR")
    assert code == 2
    assert "already initialised" in err


def test_commands_before_init_say_what_to_do(tmp_path: Path) -> None:
    code, _, err = run("collection", "add", "--data", str(tmp_path), "X")
    assert code == 2
    assert "relto init" in err


def test_bad_nation_and_clearance_are_explained(tmp_path: Path) -> None:
    run("init", "--data", str(tmp_path), "--nation", "GBR")
    code, _, err = run("token", "issue", "--data", str(tmp_path), "--nation", "Korea", "--clearance", "SECRET")
    assert code == 2 and "alpha-3" in err
    code, _, err = run("token", "issue", "--data", str(tmp_path), "--nation", "KOR", "--clearance", "COSMIC")
    assert code == 2 and "UNCLASSIFIED" in err and "TOP SECRET" in err


def test_tokens_are_listed_without_secrets_and_can_be_revoked(tmp_path: Path) -> None:
    run("init", "--data", str(tmp_path), "--nation", "GBR")
    _, token, _ = run("token", "issue", "--data", str(tmp_path), "--nation", "KOR", "--clearance", "secret")
    token = token.strip()
    secret = token.split("_", 2)[2]
    _, listing, _ = run("token", "list", "--data", str(tmp_path))
    assert "KOR\tSECRET" in listing and secret not in listing
    assert listing.splitlines()[0].split("\t")[:3] == ["KEY ID", "NATION", "CLEARANCE"]
    key_id = token.split("_")[1]
    assert run("token", "revoke", "--data", str(tmp_path), key_id)[0] == 0
    assert "revoked" in run("token", "list", "--data", str(tmp_path))[1]
    assert run("token", "revoke", "--data", str(tmp_path), key_id)[0] == 2


def test_environment_overlays_data_flag(tmp_path: Path) -> None:
    env = {"RELTO_DATA": str(tmp_path)}
    assert run("init", "--nation", "USA", env=env)[0] == 0
    code, out, _ = run("collection", "add", "Indicators", env=env)
    assert code == 0 and re.match(r"^[0-9a-f-]{36}$", out.strip())
    assert "Indicators" in run("collection", "list", env=env)[1]


def test_community_list_json_has_history(tmp_path: Path) -> None:
    run("init", "--data", str(tmp_path), "--nation", "GBR")
    code, out, _ = run("community", "list", "--data", str(tmp_path), "--json")
    assert code == 0
    communities = {c["name"]: c for c in orjson.loads(out)}
    assert set(communities) == {"NATO", "EU", "FVEY", "IP4"}
    nato = communities["NATO"]["members"]
    assert len({m["nation"] for m in nato if m["until"] is None}) == 32
    assert {"nation": "SWE", "since": "2024-03-07", "until": None} in nato
    assert {"nation": "GBR", "since": "1973-01-01", "until": "2020-02-01"} in communities["EU"]["members"]
    assert {m["nation"] for m in communities["IP4"]["members"]} == {"AUS", "JPN", "KOR", "NZL"}


def test_community_join_and_leave(tmp_path: Path) -> None:
    run("init", "--data", str(tmp_path), "--nation", "GBR")
    assert run("community", "join", "--data", str(tmp_path), "IP4", "UKR", "--since", "2024-01-01")[0] == 0
    assert "UKR" in run("community", "list", "--data", str(tmp_path))[1].split("IP4")[1]
    assert run("community", "leave", "--data", str(tmp_path), "IP4", "UKR", "--on", "2024-06-01")[0] == 0
    line = next(x for x in run("community", "list", "--data", str(tmp_path))[1].splitlines() if x.startswith("IP4"))
    assert "UKR" not in line
    code, _, err = run("community", "leave", "--data", str(tmp_path), "IP4", "UKR")
    assert code == 2 and "no open membership" in err


def test_mark_prints_refs_and_deterministic_definitions() -> None:
    code, out, _ = run("mark", "--classification", "SECRET", "--rel-to", "GBR,KOR,NATO", "--tlp", "amber", "--json")
    assert code == 0
    doc = orjson.loads(out)
    assert doc["refs"] == [d["id"] for d in doc["definitions"]]
    assert doc["refs"][1] == "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421"
    again = orjson.loads(run("mark", "--classification", "s", "--rel-to", "nato, kor,GBR")[1])
    assert again["refs"][0] == doc["refs"][0]
    assert doc["definitions"][0]["name"] == "SECRET REL TO GBR, KOR, NATO"


def test_mark_refuses_unknown_values() -> None:
    code, _, err = run("mark", "--classification", "SECRET", "--rel-to", "GB")
    assert code == 2 and "GB" in err


def test_demo_offers_replay_and_federation() -> None:
    # The demo itself runs as a real process in tests/test_demo.py.
    code, out, _ = run("demo", "--help")
    assert code == 0
    for option in ("--speed", "--loop", "--no-replay", "--federation", "--data", "--port"):
        assert option in out


def test_module_entry_point_runs() -> None:
    assert "relto" in relto("--version")


def test_serve_says_when_it_is_ready_logs_requests_and_stops_cleanly(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    import httpx

    from tests.conftest import free_port

    _, admin, _ = run("init", "--data", str(tmp_path / "n"), "--nation", "GBR")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "relto", "serve", "--data", str(tmp_path / "n"), "--port", str(port)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stderr is not None
        ready = server.stderr.readline()
        assert f"ready on http://127.0.0.1:{port}/" in ready
        # Said only once the port accepts connections: a request right away is answered.
        answer = httpx.get(f"http://127.0.0.1:{port}/taxii2/", headers={"Authorization": f"Bearer {admin.strip()}"})
        assert answer.status_code == 200
        assert '"GET /taxii2/ HTTP/1.1" 200' in server.stderr.readline()
        busy = run("serve", "--data", str(tmp_path / "n"), "--port", str(port))
        assert busy[0] == 2 and "cannot listen on" in busy[2] and "--port" in busy[2]
        server.send_signal(signal.SIGTERM)  # as a service manager stops it (Ctrl-C takes the same path)
        rest = server.communicate(timeout=15)[1]
        assert "relto: stopped" in rest and "Traceback" not in rest and "Aborted" not in rest
        assert server.returncode == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
