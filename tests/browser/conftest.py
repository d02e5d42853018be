"""Playwright driving Debian's Chromium against the whole stack; every page is watched for requests that leave
its own origin."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, Page, Request, async_playwright, expect

from suara_devstack.testing import ARTIFACTS

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = ARTIFACTS / "screenshots"
#: Generous for a loaded, shared 2-core machine; every wait in these tests is bounded by it.
WAIT_MS = 60_000
expect.set_options(timeout=WAIT_MS)


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        await chromium.close()


PageFactory = Callable[..., Awaitable[Page]]


@pytest.fixture
async def open_page(browser: Browser) -> AsyncIterator[PageFactory]:
    """New pages (`await open_page(width=360)`) whose requests must all stay on the page's own host and port."""
    contexts = []
    foreign: list[str] = []

    async def factory(*, width: int = 1280, height: int = 900) -> Page:
        context = await browser.new_context(viewport={"width": width, "height": height}, service_workers="block")
        context.set_default_timeout(WAIT_MS)
        contexts.append(context)
        page = await context.new_page()

        def watch(request: Request) -> None:
            target = urlsplit(request.url)
            if target.scheme not in ("http", "https", "ws", "wss"):
                return  # blob: and data: URLs are made by the page itself
            own = urlsplit(page.url if page.url.startswith("http") else request.frame.url)
            if request.is_navigation_request() and request.frame == page.main_frame and not page.url.startswith("http"):
                return  # the first navigation defines the page's own origin
            if target.netloc != own.netloc:
                foreign.append(request.url)

        page.on("request", watch)
        return page

    yield factory
    for context in contexts:
        await context.close()
    assert not foreign, f"requests to another host: {foreign}"


@pytest.fixture
def screenshot() -> Callable[[str], Path]:
    """Where a test saves the screenshot it names (test-artifacts/screenshots/<name>.png)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return lambda name: SCREENSHOTS / f"{name}.png"
