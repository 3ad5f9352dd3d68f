"""The public provider directory: verified providers only, readable without credentials."""

import pytest
from rest_framework.test import APIClient

from providers.models import ProviderStatus, Service
from tests.api.helpers import assert_problem
from tests.factories import (
    NetworkFactory,
    OfferFactory,
    ProviderProfileFactory,
    VerifiedProviderFactory,
)

pytestmark = pytest.mark.django_db


def test_anonymous_list_shows_verified_providers_only(provider_a):
    ProviderProfileFactory(organization__slug="pending-co")
    VerifiedProviderFactory(organization__slug="gone", organization__is_active=False)
    ProviderProfileFactory(organization__slug="suspended-co", status=ProviderStatus.SUSPENDED)

    response = APIClient().get("/api/v1/providers/")

    assert response.status_code == 200
    assert [p["slug"] for p in response.json()["results"]] == ["alpha"]


def test_unverified_provider_detail_is_404(db):
    ProviderProfileFactory(organization__slug="pending-co")

    response = APIClient().get("/api/v1/providers/pending-co/")

    assert_problem(response, status=404, code="not_found")


def test_provider_detail_has_networks_and_active_offers_only(provider_a):
    NetworkFactory(provider=provider_a, name="Backbone", technology="lte", region="us-east")
    OfferFactory(provider=provider_a, service=Service.SEGMENTATION, price_per_gb_minor=250)
    OfferFactory(provider=provider_a, service=Service.DEDUPE, is_active=False)

    response = APIClient().get("/api/v1/providers/alpha/")

    assert response.status_code == 200
    body = response.json()
    assert body["slug"] == "alpha"
    assert body["name"] == "Alpha Networks"
    assert body["verified_at"].endswith("Z")
    assert body["networks"] == [{"name": "Backbone", "technology": "lte", "region": "us-east"}]
    assert body["offers"] == [
        {
            "service": "segmentation",
            "price_per_gb_minor": 250,
            "price_per_minute_minor": 10,
            "currency": "USD",
        }
    ]


def test_public_directory_does_not_reveal_contact_details(provider_a):
    body = APIClient().get("/api/v1/providers/alpha/").json()

    assert "contact_email" not in body
    assert "contact_phone" not in body


def test_anonymous_cannot_write_to_the_directory(provider_a):
    response = APIClient().post("/api/v1/providers/", {}, format="json")

    assert_problem(response, status=401, code="not_authenticated")


def test_directory_accepts_an_api_key_too(client_b, provider_a):
    response = client_b.get("/api/v1/providers/alpha/")

    assert response.status_code == 200


def test_directory_with_an_unknown_api_key_is_401(provider_a, key_client):
    response = key_client("sx_nope_nope").get("/api/v1/providers/")

    assert_problem(response, status=401, code="invalid_api_key")
