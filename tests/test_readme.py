"""The README's tour works as pasted: its shell and Python blocks run in order, in one shell, on a fresh node."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import free_port

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"```(sh|python)\n(.*?)```", re.S)

pytestmark = pytest.mark.slow


def tour() -> list[tuple[str, str]]:
    """The (language, code) blocks of the tour, in order (the two install commands above it are CI's own)."""
    text = README.read_text()
    return BLOCK.findall(text[text.index("## A short tour") :])


def script(blocks: list[tuple[str, str]], folder: Path) -> str:
    """One bash script: shell blocks as written, Python blocks run by the venv's python at their place.

    Two things are the test's own: `relto watch` (which follows until Ctrl-C) gets a Ctrl-C after a few seconds,
    and the servers the tour starts are stopped when the script ends, however it ends."""
    lines = [
        "set -euo pipefail",
        # the servers the tour starts stop with it (each runs under a subshell: `relto` is a function here)
        "trap 'for p in $(jobs -p); do pkill -TERM -P $p; kill $p; done 2>/dev/null || true; wait' EXIT",
        # `relto watch` follows until Ctrl-C: it gets one after a few seconds
        'relto() { if [ "$1" = watch ]; then timeout -s INT 6 "$(command -v relto)" "$@" || [ $? = 124 ]; '
        'else command relto "$@"; fi; }',
    ]
    for n, (language, code) in enumerate(blocks):
        lines.append(f"echo '--- block {n}'")
        if language == "sh":
            lines.append(code)
        else:
            path = folder / f"block{n}.py"
            path.write_text(code)
            lines.append(f"python3 {path}")
    return "\n".join(lines)


def test_the_tour_runs_as_pasted(tmp_path: Path) -> None:
    venv = Path(sys.executable).parent.parent
    (tmp_path / ".venv").symlink_to(venv)
    ports = {"8000": str(free_port()), "8001": str(free_port())}  # the README's ports may be taken here
    blocks = [(lang, re.sub(r"\b800[01]\b", lambda m: ports[m[0]], code)) for lang, code in tour()]
    assert [lang for lang, _ in blocks].count("python") == 1 and len(blocks) >= 6
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELTO_") and k != "VIRTUAL_ENV"}
    done = subprocess.run(
        ["bash", "-c", script(blocks, tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**env, "PYTHONUNBUFFERED": "1"},
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    assert "KOR receives: ['Relay address seen near Vladivostok']" in out
    watched = out.split("--- block 4")[0].split("--- block 3")[1]
    assert "Relay address seen near Vladivostok" in watched and "SECRET REL TO GBR, KOR, NATO" in watched
    assert "add --after" in watched  # Ctrl-C says where to resume
    previewed = out.split("--- block 4")[1].split("--- block 5")[0]
    assert "Troop movements to Vladivostok" in previewed and "From a sensitive source" not in previewed
    assert "OK:" in out and "taxii.objects" in out  # audit verify, and audit show lists KOR's reads
    assert "gbr\thttp://127.0.0.1:" in out  # peer list
