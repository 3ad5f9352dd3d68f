import os
from pathlib import Path

import pytest
from django.db import connections

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))


@pytest.fixture
def browser_page(django_db_setup, live_server, monkeypatch):
    """A Chromium page (Debian's build, driven by Playwright) and the live server's URL.

    The test database is set up before the live server starts, so the server (and its
    connections) stops before the database is dropped."""
    if not CHROMIUM.exists():
        pytest.fail(f"Chromium is not installed at {CHROMIUM}; bin/test installs it from Debian.")
    # Playwright's sync API keeps an event loop running in this thread; the test's own ORM
    # calls are still plain synchronous calls.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        page = browser.new_page()
        page.set_default_timeout(15000)
        try:
            yield page, live_server.url
        finally:
            # With Playwright's loop running, the ORM calls of the test got connections of
            # their own; close them so the test database can be dropped.
            connections.close_all()
            browser.close()
