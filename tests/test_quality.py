"""The standards of the product, checked with the suite: ruff clean, mypy strict on src/."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def tool(name: str) -> str:
    path = shutil.which(name, path=str(Path(sys.executable).parent))
    if path is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[test]'")
    return path


def test_ruff_is_clean() -> None:
    done = subprocess.run([tool("ruff"), "check", "src", "tests", "bench"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_strict_is_clean() -> None:
    done = subprocess.run([tool("mypy")], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_web_framework_stays_inside_api() -> None:
    """DESIGN: the framework is imported in api/ alone; domain imports nothing of relto but itself."""
    src = ROOT / "src" / "relto"
    for path in src.rglob("*.py"):
        text = path.read_text()
        rel = path.relative_to(src)
        if rel.parts[0] != "api":
            assert "fastapi" not in text and "starlette" not in text, f"{rel} imports the web framework"
        if rel.parts[0] == "domain":
            imports = [line for line in text.splitlines() if line.startswith(("import ", "from "))]
            assert all("relto" not in line or "relto.domain" in line for line in imports), (
                f"{rel} imports outside domain"
            )


def test_api_knows_no_storage_back_end() -> None:
    """The API reaches storage only through the Node (the doorbell included), never a back-end module."""
    for path in (ROOT / "src" / "relto" / "api").rglob("*.py"):
        text = path.read_text()
        for backend in ("relto.store.postgres", "relto.store.sqlite", "relto.store.sql"):
            assert backend not in text, f"{path.name} imports {backend}"
