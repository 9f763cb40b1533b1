"""Fetch the UI's third-party files from the npm registry, pinned, into src/relto/web/static/vendor/.

Run once after changing a version: `python scripts/vendor_web.py`. Only the files the UI loads are kept,
with each package's licence; each tarball is checked against the integrity hash the registry publishes.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import shutil
import tarfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENDOR = ROOT / "src" / "relto" / "web" / "static" / "vendor"
REGISTRY = "https://registry.npmjs.org"

# package -> (version, {path in the tarball: path under vendor/})
PACKAGES: dict[str, tuple[str, dict[str, str]]] = {
    "leaflet": (
        "1.9.4",
        {
            "package/dist/leaflet.js": "leaflet/leaflet.js",
            "package/dist/leaflet.css": "leaflet/leaflet.css",
            "package/dist/images/marker-icon.png": "leaflet/images/marker-icon.png",
            "package/dist/images/marker-icon-2x.png": "leaflet/images/marker-icon-2x.png",
            "package/dist/images/marker-shadow.png": "leaflet/images/marker-shadow.png",
            "package/LICENSE": "leaflet/LICENSE",
        },
    ),
    "world-atlas": (
        "2.0.2",
        {"package/countries-110m.json": "world-atlas/countries-110m.json", "package/LICENSE": "world-atlas/LICENSE"},
    ),
    "topojson-client": (
        "3.1.0",
        {
            "package/dist/topojson-client.min.js": "topojson-client/topojson-client.min.js",
            "package/LICENSE": "topojson-client/LICENSE",
        },
    ),
}


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as answer:
        return bytes(answer.read())


def vendor(name: str, version: str, files: dict[str, str]) -> None:
    meta = json.loads(fetch(f"{REGISTRY}/{name}/{version}"))
    tarball = fetch(meta["dist"]["tarball"])
    algorithm, _, digest = meta["dist"]["integrity"].partition("-")
    if base64.b64encode(hashlib.new(algorithm, tarball).digest()).decode() != digest:
        raise SystemExit(f"{name}@{version}: the tarball does not match the registry's integrity hash")
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:
        for source, target in files.items():
            member = tar.extractfile(source)
            if member is None:
                raise SystemExit(f"{name}@{version} has no {source}")
            out = VENDOR / target
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(member.read())
    print(f"{name}@{version}: {len(files)} files")


def main() -> None:
    shutil.rmtree(VENDOR, ignore_errors=True)
    for name, (version, files) in PACKAGES.items():
        vendor(name, version, files)
    (VENDOR / "VERSIONS.json").write_text(json.dumps({n: v for n, (v, _) in PACKAGES.items()}, indent=2) + "\n")


if __name__ == "__main__":
    main()
