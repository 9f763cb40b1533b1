"""Screenshots of the UI's main pages for the docs: `python scripts/screenshots.py` writes docs/screenshots/*.png.

It starts a real node with some releasable intelligence and drives Debian's Chromium exactly as the browser
tests do (tests/ui/browser.py), at 1366x768.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.ui.browser import VIEWPORT, Site, browser, sign_in, site, stix  # noqa: E402

OUT = ROOT / "docs" / "screenshots"


def seed(s: Site) -> str:
    """Publish a little of everything as GBR; return the id of the item shown."""
    kyiv = stix("location", name="Kyiv", latitude=50.45, longitude=30.52)
    seoul = stix("location", name="Seoul", latitude=37.57, longitude=126.98)
    actor = stix("threat-actor", name="Sandstorm", description="Destructive operations against energy grids.")
    indicator = stix(
        "indicator",
        name="Sandstorm C2 server",
        description="Beaconing every 60 s over TLS.",
        pattern="[ipv4-addr:value = '203.0.113.9']",
        pattern_type="stix",
        valid_from="2026-01-01T00:00:00Z",
    )
    related = stix("relationship", relationship_type="located-at", source_ref=actor["id"], target_ref=kyiv["id"])
    report = stix(
        "report",
        name="Grid intrusions, week 48",
        description="Summary for coalition partners.",
        published="2026-11-30T00:00:00Z",
        object_refs=[actor["id"], indicator["id"], kyiv["id"]],
    )
    s.publish("GBR", [seoul], classification="UNCLASSIFIED", rel_to=["GBR", "KOR"], tlp="green")
    s.publish("GBR", [kyiv, actor, related], classification="RESTRICTED", rel_to=["GBR", "UKR", "NATO"], tlp="green")
    s.publish("GBR", [indicator], classification="SECRET", rel_to=["GBR", "KOR", "NATO"], tlp="amber")
    s.publish("GBR", [report], classification="SECRET", rel_to=["GBR", "NATO"], tlp="amber")
    return str(report["id"])


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder, site(Path(folder)) as s, browser() as chromium:
        item = seed(s)
        page = chromium.new_context(viewport=VIEWPORT).new_page()
        sign_in(page, s.url, s.tokens["admin"])
        shots = [
            ("feed", "/#/feed", "#feed li"),
            ("map", "/#/map", "path.relto-marker"),
            ("item", f"/#/item/{s.collection}/{item}", "#banner-bottom"),
            ("publish", "/#/publish", "#publish-form"),
            ("operator", "/#/operator", "#decisions"),
        ]
        for name, path, ready in shots:
            page.goto(s.url + path)
            page.wait_for_selector(ready, state="attached")
            page.wait_for_load_state("networkidle")
            page.screenshot(path=str(OUT / f"{name}.png"))
            print(OUT / f"{name}.png")


if __name__ == "__main__":
    main()
