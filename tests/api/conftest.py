"""Fixtures for the partner API tests: API keys, authenticated clients, two providers."""

from uuid import uuid4

import pytest
from rest_framework.test import APIClient

from marketplace.models import ApiKeyScope, OrganizationKind
from marketplace.services import api_key_create
from tests.factories import OrganizationFactory, VerifiedProviderFactory, member_of


@pytest.fixture(autouse=True)
def _private_throttle_cache(settings):
    # Throttle counters live in the cache; a cache of its own per test keeps them from
    # leaking between tests or into a Redis shared with other test runs.
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": f"api-tests-{uuid4()}",
        }
    }


@pytest.fixture
def issue_key(db):
    """Returns a function that issues an API key for an organization and returns the key."""

    def issue(organization, *, scope: str = ApiKeyScope.WRITE) -> str:
        _, key = api_key_create(
            organization=organization,
            name="test key",
            scope=scope,
            created_by=member_of(organization),
        )
        return key

    return issue


@pytest.fixture
def key_client():
    """Returns a function that makes an API client sending ``Authorization: Bearer <key>``."""

    def make(key: str) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
        return client

    return make


@pytest.fixture
def provider_a(db):
    return VerifiedProviderFactory(organization__name="Alpha Networks", organization__slug="alpha")


@pytest.fixture
def provider_b(db):
    return VerifiedProviderFactory(organization__name="Beta Telecom", organization__slug="beta")


@pytest.fixture
def client_a(provider_a, issue_key, key_client) -> APIClient:
    """A write-scoped API client of provider A."""
    return key_client(issue_key(provider_a.organization))


@pytest.fixture
def client_b(provider_b, issue_key, key_client) -> APIClient:
    return key_client(issue_key(provider_b.organization))


@pytest.fixture
def recipient_org(db):
    return OrganizationFactory(kind=OrganizationKind.RECIPIENT)
