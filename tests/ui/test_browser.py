"""The analyst UI in a real browser (Debian's Chromium through Playwright) against a real `relto serve`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.ui.browser import VIEWPORT, Site, browser, chromium_path, sign_in, site, stix

pytestmark = pytest.mark.skipif(chromium_path() is None, reason="Chromium is not installed (apt-get install chromium)")
INDICATOR = {
    "pattern": "[ipv4-addr:value = '203.0.113.9']",
    "pattern_type": "stix",
    "valid_from": "2026-01-01T00:00:00Z",
}


@pytest.fixture(scope="module")
def node_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with site(tmp_path_factory.mktemp("ui")) as running:
        yield running


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    with browser() as launched:
        yield launched


class Console:
    """The errors a page reports: console errors and uncaught exceptions."""

    def __init__(self, page: Any) -> None:
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))


@pytest.fixture
def context(chromium: Any) -> Iterator[Any]:
    made = chromium.new_context(viewport=VIEWPORT)
    yield made
    made.close()


def signed_in(context: Any, node_site: Site, who: str) -> tuple[Any, Console]:
    page = context.new_page()
    console = Console(page)
    sign_in(page, node_site.url, node_site.tokens[who])
    return page, console


def test_sign_in_refuses_a_bad_token_and_opens_the_feed(context: Any, node_site: Site) -> None:
    page = context.new_page()
    page.goto(node_site.url + "/")
    assert page.locator("form[action='/ui/session']").is_visible() and page.locator("#feed").count() == 0
    page.get_by_label("Your token").fill("rt_0000000000000000_wrong")
    page.get_by_role("button", name="Sign in").click()
    assert "refused" in page.locator("#signin-error").inner_text()
    assert not any(c["name"] == "relto_session" for c in context.cookies())
    page.get_by_label("Your token").fill(node_site.tokens["KOR"])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector("#feed")
    assert "KOR" in page.locator("#who").inner_text()


def test_cookie_flags_and_csrf(context: Any, node_site: Site) -> None:
    page, _ = signed_in(context, node_site, "GBR")
    [cookie] = [c for c in context.cookies() if c["name"] == "relto_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/"
    assert node_site.tokens["GBR"] not in cookie["value"]
    assert page.evaluate("document.cookie").find("relto_session") == -1  # out of the scripts' reach
    draft = {
        "collection": node_site.collection,
        "type": "threat-actor",
        "name": "x",
        "classification": "SECRET",
        "rel_to": ["GBR"],
    }
    assert page.request.post(node_site.url + "/ui/api/publish", data=draft).status == 403


def test_live_feed_brings_what_is_releasable_and_nothing_else(context: Any, node_site: Site) -> None:
    page, console = signed_in(context, node_site, "KOR")
    page.wait_for_selector("#live.on")
    hidden = stix("indicator", name="GBR eyes only", **INDICATOR)
    shared = stix("indicator", name="Shared with KOR", **INDICATOR)
    node_site.publish("GBR", [hidden], classification="SECRET", rel_to=["GBR", "UKR"])
    started = time.monotonic()
    node_site.publish("GBR", [shared], classification="SECRET", rel_to=["GBR", "KOR"], tlp="amber")
    page.wait_for_selector(f"li[data-id='{shared['id']}']", timeout=2000)
    assert time.monotonic() - started < 2.0
    assert page.locator(f"li[data-id='{hidden['id']}']").count() == 0
    assert "GBR eyes only" not in page.locator("#feed").inner_text()
    # the item view: the banner top and bottom, and the originator
    page.get_by_role("link", name="Shared with KOR").click()
    page.wait_for_selector("#banner-top")
    for where in ("#banner-top", "#banner-bottom"):
        assert page.locator(where + " .banner").get_attribute("data-banner") == "SECRET // REL TO GBR, KOR"
    assert "TLP:AMBER" in page.locator("#banner-top").inner_text()
    assert page.locator("#originator").inner_text() == "GBR"
    assert console.errors == []


def test_map_shows_a_marker_for_a_location(context: Any, node_site: Site) -> None:
    place = stix("location", name="Kyiv", latitude=50.45, longitude=30.52)
    node_site.publish("GBR", [place], classification="RESTRICTED", rel_to=["GBR", "UKR"])
    page, console = signed_in(context, node_site, "UKR")
    page.goto(node_site.url + "/#/map")
    page.wait_for_selector("path.relto-marker", state="attached")
    assert page.locator("path.relto-marker").count() >= 1
    assert "Kyiv" in page.locator("#map-list").inner_text()
    page.wait_for_selector(".leaflet-world-pane path", state="attached")  # the world outline
    assert console.errors == []


def test_view_as_ukr_removes_the_tearlined_description(context: Any, node_site: Site) -> None:
    page, console = signed_in(context, node_site, "GBR")
    page.goto(node_site.url + "/#/publish")
    page.select_option("#p-type", "threat-actor")
    page.fill("#p-name", "Sandstorm")
    page.fill("#p-description", "from a sensitive GBR source")
    page.locator("fieldset").nth(0).get_by_label("UKR").check()
    page.check("#p-tear")
    page.fill("#p-view-nation", "UKR")
    page.get_by_role("button", name="Preview what they receive").click()
    page.wait_for_selector("#preview")
    shown = page.locator("#preview").inner_text()
    assert "Sandstorm" in shown and "sensitive GBR source" not in shown
    page.fill("#p-view-nation", "KOR")
    page.get_by_role("button", name="Preview what they receive").click()
    page.wait_for_selector("#preview :text('KOR')")
    assert "withheld" in page.locator("#preview").inner_text()
    page.get_by_role("button", name="Publish", exact=True).click()
    page.wait_for_selector("#publish-result .ok")
    assert console.errors == []


def test_operator_issues_and_revokes_a_token(context: Any, node_site: Site) -> None:
    page, console = signed_in(context, node_site, "admin")
    page.goto(node_site.url + "/#/operator")
    page.wait_for_selector("#issue-form")
    page.fill("#t-nation", "USA")
    page.fill("#t-name", "browser-issued")
    page.click("#t-issue")
    token = page.locator("#new-token").inner_text()
    assert token.startswith("rt_")
    key_id = token.split("_")[1]
    page.get_by_role("button", name=f"Revoke {key_id}").click()
    page.wait_for_selector(f"tr[data-key='{key_id}'] :text('revoked')")
    page.click("#verify")
    page.wait_for_selector("#verify-out .ok")
    assert console.errors == []


def test_no_console_errors_on_the_main_pages(context: Any, node_site: Site) -> None:
    page, console = signed_in(context, node_site, "admin")
    for view, ready in (
        ("feed", "#feed"),
        ("map", "#map-list"),
        ("publish", "#publish-form"),
        ("operator", "#decisions"),
    ):
        page.goto(f"{node_site.url}/#/{view}")
        page.wait_for_selector(ready)
        page.wait_for_load_state("networkidle")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_selector("form[action='/ui/session']")
    assert console.errors == []


def test_a_report_published_in_one_window_arrives_live_in_another_nations(chromium: Any, node_site: Site) -> None:
    """The newcomer's first hour, in the browser: GBR publishes a marked report from the form; KOR's window, open
    beside it, shows it live; UKR's, not named in its REL TO, never does."""
    windows = {n: chromium.new_context(viewport=VIEWPORT) for n in ("GBR", "KOR", "UKR")}
    try:
        pages = {}
        for nation, ctx in windows.items():
            pages[nation] = ctx.new_page()
            sign_in(pages[nation], node_site.url, node_site.tokens[nation])
        for nation in ("KOR", "UKR"):
            pages[nation].wait_for_selector("#live.on")
        gbr = pages["GBR"]
        gbr.goto(node_site.url + "/#/publish")
        gbr.select_option("#p-type", "report")
        name = f"Convoy sighted near Vladivostok {time.monotonic_ns()}"
        gbr.fill("#p-name", name)
        gbr.fill("#p-description", "Fictional test report")
        gbr.fill("#p-lat", "43.12")  # Vladivostok: the report names a location, made with it
        gbr.fill("#p-lon", "131.89")
        gbr.locator("fieldset").nth(0).get_by_label("KOR").check()
        gbr.get_by_role("button", name="Publish", exact=True).click()
        gbr.wait_for_selector("#publish-result .ok, #publish-result .error")
        assert gbr.locator("#publish-result .ok").count() == 1, gbr.locator("#publish-result").inner_text()
        pages["KOR"].wait_for_selector(f"#feed :text('{name}')", timeout=2000)
        time.sleep(0.5)
        assert name not in pages["UKR"].locator("#feed").inner_text()
    finally:
        for ctx in windows.values():
            ctx.close()
