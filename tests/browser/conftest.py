import os
import uuid
from pathlib import Path

import pytest
from django.db import connections

from tests.conftest import WEBHOOK_SECRET
from tests.support.browser import served_on_private_queue

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def chromium_browser(monkeypatch):
    """Debian's Chromium, driven by Playwright. Ask for the server fixtures before this one,
    so the browser closes (and the test's connections with it) before the server stops."""
    if not CHROMIUM.exists():
        pytest.fail(f"Chromium is not installed at {CHROMIUM}; bin/test installs it from Debian.")
    # Playwright's sync API keeps an event loop running in this thread; the test's own ORM
    # calls are still plain synchronous calls.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            # With Playwright's loop running, the ORM calls of the test got connections of
            # their own; close them so the test database can be dropped.
            connections.close_all()
            browser.close()


@pytest.fixture
def browser_page(django_db_setup, live_server, chromium_browser):
    """A Chromium page and the live server's URL.

    The test database is set up before the live server starts, so the server (and its
    connections) stops before the database is dropped."""
    page = chromium_browser.new_page()
    page.set_default_timeout(15000)
    yield page, live_server.url


@pytest.fixture
def localstripe_server(transactional_db, settings, stripe_on_localstripe, tmp_path):
    """`manage.py serve` on a free port, on the test database and a private task queue, its
    gateway on the session's localstripe (no Stripe key); its address. No task worker or
    periodic jobs: nothing but the pages may charge or change a card."""
    with served_on_private_queue(
        settings,
        tmp_path / "serve.log",
        EMBEDDED_WORKER="false",
        CHANNELS_PREFIX=f"sx-test-{uuid.uuid4().hex[:12]}",
        STRIPE_SECRET_KEY="",
        STRIPE_PUBLISHABLE_KEY="",
        STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
        LOCALSTRIPE_URL=stripe_on_localstripe.url,
    ) as url:
        yield url
