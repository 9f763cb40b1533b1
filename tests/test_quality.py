"""The standards of the product, checked with the suite: ruff clean, mypy strict on src/."""

from __future__ import annotations

import ast
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


def _imports(src: Path) -> dict[str, set[str]]:
    """Module -> the relto modules it imports, at any depth of the file (imports inside functions count too)."""
    modules = {
        ".".join(p.relative_to(src.parent).with_suffix("").parts).removesuffix(".__init__"): p
        for p in src.rglob("*.py")
    }
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parent, *([base] if base else [])])
                # `from relto.store import base` imports the module relto.store.base.
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            else:
                continue
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles_inside_relto() -> None:
    """Arrows point one way (DESIGN): no module of relto imports, even lazily, one that imports it back."""
    cycles = _cycles(_imports(ROOT / "src" / "relto"))
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)
