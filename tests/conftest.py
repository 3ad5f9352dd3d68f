from pathlib import Path

import pytest
import pytest_asyncio
from asgiref.sync import sync_to_async
from django.db import connections
from django.test import Client

from billing.localstripe import LocalStripe, localstripe_start, localstripe_stop
from tests.factories import PASSWORD, UserFactory

WEBHOOK_SECRET = "whsec_billing_tests"


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.JOB_STORAGE_DIR = tmp_path / "jobs"


@pytest.fixture(autouse=True)
def _webhook_receivers_on_loopback(settings):
    # the tests' webhook receivers listen on 127.0.0.1, as a developer's would; the tests of
    # the production rule turn this off
    settings.WEBHOOK_PRIVATE_TARGETS = True


@pytest.fixture(autouse=True)
def _rate_limits_try_the_cache_first():
    # a test that saw the cache fail must not send the next test's counts to the database
    from marketplace import ratelimit

    ratelimit._cache_retry_at = 0.0


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # PBKDF2 is slow by design; tests create many users and hash nothing secret.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def user(db):
    return UserFactory()


@pytest.fixture
def login_client():
    """Returns a function that signs a user in on a fresh client."""

    def make(user) -> Client:
        client = Client()
        assert client.login(email=user.email, password=PASSWORD)
        return client

    return make


def pytest_sessionfinish(session, exitstatus):
    """Remove the WAL side files SQLite leaves beside this run's test database."""
    from django.conf import settings

    name = settings.DATABASES["default"].get("TEST", {}).get("NAME")
    if name and settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        for suffix in ("-wal", "-shm"):
            Path(f"{name}{suffix}").unlink(missing_ok=True)


@pytest_asyncio.fixture
async def async_db_connections_closed():
    """For async tests: close the connections Channels opened in its sync thread, so the
    test database can be dropped at the end of the run."""
    yield
    await sync_to_async(connections.close_all)()


@pytest.fixture(scope="session")
def localstripe_server(tmp_path_factory) -> LocalStripe:
    """localstripe on a free loopback port, its data in memory, for the whole test session."""
    server = localstripe_start(log_path=tmp_path_factory.mktemp("localstripe") / "output.log")
    yield server
    localstripe_stop(server)


@pytest.fixture
def stripe_on_localstripe(settings, localstripe_server) -> LocalStripe:
    """The gateway talks to the session's localstripe: no Stripe key, a webhook secret of the
    tests."""
    settings.STRIPE_SECRET_KEY = ""
    settings.STRIPE_PUBLISHABLE_KEY = ""
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.LOCALSTRIPE_URL = localstripe_server.url
    return localstripe_server
