"""Billing pages: statements (page and PDF) for their recipient only, the cards page with
Stripe.js, and Stripe's webhook endpoint."""

import hashlib
import hmac
import json
import time

import pytest
from django.test import Client
from django.urls import reverse

from billing.localstripe import TEST_CARD_SUCCEEDS
from billing.models import Charge, StripeEvent
from billing.statements import statements_build
from tests.billing.conftest import WEBHOOK_SECRET
from tests.billing.test_payments import card_saved
from tests.billing.test_statements import NOVEMBER, lease_won
from tests.factories import OrganizationFactory, VerifiedProviderFactory, member_of

pytestmark = pytest.mark.django_db


def signed_in(organization) -> Client:
    client = Client()
    client.force_login(member_of(organization))
    return client


def test_a_statement_page_and_pdf_show_its_lines_to_its_recipient_only():
    buyer = OrganizationFactory(name="Acme Analytics")
    lease_won(buyer, VerifiedProviderFactory(legal_name="North Ltd"), 12_345)
    (statement,) = statements_build(period_start=NOVEMBER[0], period_end=NOVEMBER[1])
    owner = signed_in(buyer)

    listing = owner.get(reverse("statement_list")).content.decode()
    assert statement.number in listing and "123.45 USD" in listing
    page = owner.get(reverse("statement_detail", args=[statement.number])).content.decode()
    assert "North Ltd" in page and 'data-testid="total"' in page
    pdf = owner.get(reverse("statement_pdf", args=[statement.number]))
    assert pdf["Content-Type"] == "application/pdf" and pdf.content.startswith(b"%PDF")

    stranger = signed_in(OrganizationFactory())
    assert stranger.get(reverse("statement_detail", args=[statement.number])).status_code == 404
    assert stranger.get(reverse("statement_pdf", args=[statement.number])).status_code == 404
    assert statement.number not in stranger.get(reverse("statement_list")).content.decode()


def test_the_cards_page_loads_stripe_js_and_lists_the_cards(stripe_on_localstripe):
    buyer = OrganizationFactory()
    card_saved(buyer, TEST_CARD_SUCCEEDS, stripe_on_localstripe.url)
    page = signed_in(buyer).get(reverse("card_list")).content.decode()
    assert f'src="{stripe_on_localstripe.url}/js.stripe.com/v3/"' in page
    assert "•••• 4242" in page and 'id="card-element"' in page


def _signed(body: bytes, secret: str, timestamp: int) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def test_the_stripe_webhook_endpoint_refuses_what_is_not_signed_and_takes_each_event_once():
    event = {
        "id": "evt_test_1",
        "object": "event",
        "type": "customer.created",
        "created": int(time.time()),
        "data": {"object": {"id": "cus_1", "object": "customer"}},
    }
    body = json.dumps(event).encode()
    url = reverse("stripe_webhook")
    client = Client()

    assert client.post(url, body, content_type="application/json").status_code == 400
    old = _signed(body, WEBHOOK_SECRET, int(time.time()) - 3600)
    response = client.post(url, body, content_type="application/json", HTTP_STRIPE_SIGNATURE=old)
    assert response.status_code == 400
    assert not StripeEvent.objects.exists()

    good = _signed(body, WEBHOOK_SECRET, int(time.time()))
    for expected in ("ignored", "already_processed"):
        response = client.post(
            url, body, content_type="application/json", HTTP_STRIPE_SIGNATURE=good
        )
        assert response.status_code == 200 and response.content.decode() == expected
    assert StripeEvent.objects.count() == 1 and not Charge.objects.exists()
