"""The UI's files ship with the package: in the installed package's resources, and in a built wheel."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FILES = (
    "app.html",
    "signin.html",
    "static/app.js",
    "static/ui.css",
    "static/vendor/leaflet/leaflet.js",
    "static/vendor/leaflet/LICENSE",
    "static/vendor/topojson-client/topojson-client.min.js",
    "static/vendor/world-atlas/countries-110m.json",
)


def test_the_ui_files_are_package_resources() -> None:
    web = resources.files("relto.web")
    for name in FILES:
        item = web
        for part in name.split("/"):
            item = item / part
        assert item.is_file(), f"relto.web/{name} is not in the installed package"


def test_a_built_wheel_ships_every_ui_file(tmp_path: Path) -> None:
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(ROOT),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    [wheel] = tmp_path.glob("relto-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {
        p.relative_to(ROOT / "src").as_posix() for p in (ROOT / "src" / "relto" / "web").rglob("*") if p.is_file()
    }
    shipped = {n for n in shipped if "__pycache__" not in n}
    assert shipped <= names, sorted(shipped - names)
    assert {f"relto/web/{f}" for f in FILES} <= names


def test_no_inline_script_or_style_in_the_pages() -> None:
    for page in ("app.html", "signin.html"):
        text = (ROOT / "src" / "relto" / "web" / page).read_text()
        assert "<script>" not in text and "<style" not in text and " style=" not in text and "javascript:" not in text
        assert " on" not in text.replace("one", "").split("<body")[1].split(">")[0]  # no event handler attributes
