"""A provider manages its offers: prices are integers in minor units with a currency."""

import pytest

from providers.models import Offer, Service
from tests.api.helpers import assert_problem
from tests.factories import OfferFactory

pytestmark = pytest.mark.django_db

OFFERS = "/api/v1/offers/"
NEW_OFFER = {
    "service": "segmentation",
    "price_per_gb_minor": 1250,
    "price_per_minute_minor": 40,
    "currency": "EUR",
}


def test_offer_is_created_active(client_a, provider_a):
    response = client_a.post(OFFERS, NEW_OFFER, format="json")

    assert response.status_code == 201
    body = response.json()
    assert {k: body[k] for k in NEW_OFFER} == NEW_OFFER
    assert body["is_active"] is True
    offer = Offer.objects.get(provider=provider_a)
    assert (offer.price_per_gb_minor, offer.currency) == (1250, "EUR")


def test_offer_may_be_created_inactive(client_a):
    response = client_a.post(OFFERS, {**NEW_OFFER, "is_active": False}, format="json")

    assert response.status_code == 201
    assert Offer.objects.get().is_active is False


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (12.5, "whole number of minor units"),
        (12.0, "whole number of minor units"),
        ("1250", "whole number of minor units"),
        (True, "whole number of minor units"),
        (-1, "cannot be negative"),
        (2**63, "less than or equal to"),
    ],
)
@pytest.mark.parametrize("field", ["price_per_gb_minor", "price_per_minute_minor"])
def test_prices_must_be_non_negative_json_integers(client_a, field, value, message):
    response = client_a.post(OFFERS, {**NEW_OFFER, field: value}, format="json")

    body = assert_problem(response, status=400, code="validation_failed")
    assert message in body["errors"][field][0]
    assert not Offer.objects.exists()


def test_zero_prices_are_allowed(client_a):
    response = client_a.post(
        OFFERS, {**NEW_OFFER, "price_per_gb_minor": 0, "price_per_minute_minor": 0}, format="json"
    )

    assert response.status_code == 201


def test_unknown_service_and_currency_are_refused(client_a):
    response = client_a.post(
        OFFERS, {**NEW_OFFER, "service": "teleport", "currency": "XXX"}, format="json"
    )

    body = assert_problem(response, status=400, code="validation_failed")
    assert set(body["errors"]) == {"service", "currency"}


def test_prices_and_currency_are_required(client_a):
    response = client_a.post(OFFERS, {"service": "segmentation"}, format="json")

    body = assert_problem(response, status=400, code="validation_failed")
    assert set(body["errors"]) == {"price_per_gb_minor", "price_per_minute_minor", "currency"}


def test_second_offer_of_the_same_service_is_refused(client_a, provider_a):
    OfferFactory(provider=provider_a, service=Service.SEGMENTATION)

    response = client_a.post(OFFERS, NEW_OFFER, format="json")

    body = assert_problem(response, status=409, code="already_exists")
    assert body["errors"]["non_field_errors"] == ["This provider already offers this service."]


def test_offer_is_paused_with_patch(client_a, provider_a):
    offer = OfferFactory(provider=provider_a, price_per_gb_minor=300)

    response = client_a.patch(f"{OFFERS}{offer.pk}/", {"is_active": False}, format="json")

    assert response.status_code == 200
    offer.refresh_from_db()
    assert (offer.is_active, offer.price_per_gb_minor) == (False, 300)


def test_offer_price_is_changed_with_put(client_a, provider_a):
    offer = OfferFactory(provider=provider_a)

    response = client_a.put(
        f"{OFFERS}{offer.pk}/", {**NEW_OFFER, "price_per_gb_minor": 999}, format="json"
    )

    assert response.status_code == 200
    offer.refresh_from_db()
    assert (offer.price_per_gb_minor, offer.currency, offer.is_active) == (999, "EUR", True)


def test_patch_with_a_float_price_is_refused(client_a, provider_a):
    offer = OfferFactory(provider=provider_a, price_per_gb_minor=300)

    response = client_a.patch(f"{OFFERS}{offer.pk}/", {"price_per_gb_minor": 3.5}, format="json")

    assert_problem(response, status=400, code="validation_failed")
    offer.refresh_from_db()
    assert offer.price_per_gb_minor == 300


def test_offer_is_deleted(client_a, provider_a):
    offer = OfferFactory(provider=provider_a)

    assert client_a.delete(f"{OFFERS}{offer.pk}/").status_code == 204
    assert not Offer.objects.exists()


@pytest.mark.parametrize("method", ["patch", "delete"])
def test_an_offer_deleted_while_the_request_runs_is_answered_as_gone(
    client_a, provider_a, monkeypatch, method
):
    """Another request deletes the offer after this one has read it and before its service
    locks it: a 404 problem, not a server error."""
    from providers.api.views import OfferViewSet

    offer = OfferFactory(provider=provider_a)
    read = OfferViewSet.get_object

    def read_then_deleted_by_another(view):
        found = read(view)
        Offer.objects.filter(pk=found.pk).delete()
        return found

    monkeypatch.setattr(OfferViewSet, "get_object", read_then_deleted_by_another)

    response = getattr(client_a, method)(
        f"{OFFERS}{offer.pk}/", {"is_active": False}, format="json"
    )

    body = assert_problem(response, status=404, code="not_found")
    assert body["detail"] == "It no longer exists: it was deleted while this request ran."
