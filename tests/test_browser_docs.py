"""/docs and /redoc render in a real Chromium against a real server with no request leaving 127.0.0.1 (run offline
they would otherwise stay blank); a screenshot of each is kept (``FACELEDGER_SCREENSHOTS``)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

import browser
from browser import Browser, LiveServer

pytest_plugins = ["browser"]
REDOCLY_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


def _operations(server: LiveServer) -> int:
    spec = httpx.get(server.url("/openapi.json"), timeout=10).json()
    methods = {"get", "post", "put", "patch", "delete", "head", "options"}
    return sum(1 for item in spec["paths"].values() for method in item if method in methods)


@pytest.mark.slow
def test_swagger_ui_renders_offline(chromium: Browser, live_server: LiveServer) -> None:
    page = chromium.page
    page.goto(live_server.url("/docs"))
    page.locator(".opblock").first.wait_for()
    assert page.locator(".opblock").count() == _operations(live_server)
    assert page.locator(".info .title").inner_text().startswith("faceledger")
    assert page.get_by_text("/v1/identify", exact=True).count() >= 1
    # "Try it out" calls the server from the page: /healthz answers 200 in the page
    healthz = page.locator(".opblock", has=page.get_by_text("/healthz", exact=True))
    healthz.locator(".opblock-summary").click()
    healthz.get_by_role("button", name="Try it out").click()
    healthz.get_by_role("button", name="Execute").click()
    status = healthz.locator(".live-responses-table tbody .response-col_status").first
    status.wait_for()
    assert status.inner_text().strip() == "200"
    page.locator(".info .title").scroll_into_view_if_needed()
    shot = chromium.screenshot("docs")
    assert chromium.requests and chromium.left_loopback() == [], chromium.left_loopback()
    assert chromium.refused == [] and chromium.errors == []
    assert shot.stat().st_size > 20_000  # a blank page is a few kilobytes


@pytest.mark.slow
def test_redoc_renders_offline(chromium: Browser, live_server: LiveServer) -> None:
    page = chromium.page
    page.goto(live_server.url("/redoc"))
    operations = page.locator("[data-section-id^='operation/'] h2")
    operations.first.wait_for()
    assert operations.count() == _operations(live_server)
    assert page.locator("h1").first.inner_text().startswith("faceledger")
    shot = chromium.screenshot("redoc", full_page=False)
    assert chromium.requests and chromium.left_loopback() == [], chromium.left_loopback()
    # ReDoc 2 asks cdn.redoc.ly for the Redocly logo of its sidebar; the page's policy refuses it, unsent
    assert set(chromium.refused) <= {REDOCLY_LOGO}, chromium.refused
    assert [e for e in chromium.errors if REDOCLY_LOGO not in e] == []
    assert shot.stat().st_size > 20_000


def test_without_chromium_the_tests_fail_in_ci_and_skip_elsewhere(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(browser, "CHROMIUM", tmp_path / "no-chromium")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        browser.require_chromium()
    monkeypatch.setenv("CI", "")
    with pytest.raises(pytest.skip.Exception, match="apt-get install chromium"):
        browser.require_chromium()
