"""Fixtures of the web pages' tests: the demo's store served by ``lineage serve``'s app on
loopback, a read token, and one headless Debian Chromium for the session (Playwright drives
it; its own browser download is not used)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lineage.adapters.server.web import WebSettings
from lineage.demo.scenario import DemoResult, run_demo
from tests.server.conftest import InProcessServer

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
JAEGER = "http://jaeger.example:16686/jaeger"
SHOTS = Path(__file__).resolve().parents[1] / "artifacts" / "web"  # git-ignored


@dataclass
class Site:
    demo: DemoResult
    server: InProcessServer
    read_token: str

    def page_url(self, route: str) -> str:
        return f"{self.server.url}/ui/#{route}"


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    folder = tmp_path_factory.mktemp("web-demo")
    database = str(folder / "demo.db")
    demo = run_demo(database, folder / "files", steps=300)
    server = InProcessServer(database, WebSettings(jaeger_url=JAEGER), rate_per_s=1000.0,
                             burst=2000)
    try:
        yield Site(demo, server, server.token("default", "auditor", ("read",)))
    finally:
        server.stop()


def launch(playwright: Any) -> Any:
    """Debian's Chromium, headless, with nothing reaching out to the network."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        running = launch(playwright)
        try:
            yield running
        finally:
            running.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh tab (its own sessionStorage: logged out) in UTC, 1400x1000."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, timezone_id="UTC")
    tab = context.new_page()
    tab.set_default_timeout(20_000)
    try:
        yield tab
    finally:
        context.close()


def shoot(page: Any, name: str) -> Path:
    """A full-page screenshot, kept as a test artefact under tests/artifacts/web/."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
