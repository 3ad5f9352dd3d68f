"""Helpers for tests that drive the real server (`manage.py serve`) in Chromium: the server for
the length of a fixture, with or without a task queue of the test's own, and a page signed in
through the login form, as a user would sign in."""

import contextlib
from collections.abc import Iterator
from pathlib import Path

from playwright.sync_api import expect

from tests.factories import PASSWORD
from tests.support.processes import serve_start, stop
from tests.support.queues import private_queue_close, private_queue_open

PAGE_TIMEOUT_MS = 15000  # how long a page waits, by default, for what it is told to find or do


@contextlib.contextmanager
def served(queue_name: str, log: Path, **env: str) -> Iterator[str]:
    """`manage.py serve` (see serve_start) while the block runs: its base URL. Stopped after
    the block, as it would be stopped in production."""
    process = None
    try:
        process, url = serve_start(queue_name, log, **env)
        yield url
    finally:
        stop(process)


@contextlib.contextmanager
def served_on_private_queue(settings, log: Path, **env: str) -> Iterator[str]:
    """`served` on a task queue of the test's own, added to the (pytest-django) `settings`;
    the queue's Redis keys are removed once the server has stopped."""
    private = private_queue_open(settings)
    try:
        with served(private.name, log, **env) as url:
            yield url
    finally:
        private_queue_close(private)


def page_signed_in(browser, server: str, user, path: str, **context_options):
    """A page in a new browser context (`context_options`, e.g. java_script_enabled=False),
    `user` signed in on the login form that was asked for `path`, once it has landed there."""
    page = browser.new_context(**context_options).new_page()
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    page.goto(f"{server}/accounts/login/?next={path}")
    page.locator("input[name=username]").fill(user.email)
    page.locator("input[name=password]").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{server}{path}")
    return page
