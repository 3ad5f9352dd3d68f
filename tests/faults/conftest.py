"""The fault tests drive Chromium with the browser tests' fixture."""

from tests.browser.conftest import chromium_browser  # noqa: F401 (a fixture)
