"""The Stripe gateway against a real localstripe process: customers, cards saved through
SetupIntents, off-session charges with the test cards, finding a charge by its metadata,
an unreachable Stripe, webhooks signed by localstripe, and what localstripe does with
idempotency keys."""

import hashlib
import hmac
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from billing import stripe_gateway as gateway
from billing.localstripe import (
    TEST_CARD_DECLINED_AT_ATTACH,
    TEST_CARD_DECLINED_AT_CHARGE,
    TEST_CARD_REQUIRES_AUTHENTICATION,
    TEST_CARD_SUCCEEDS,
    LocalStripeError,
    LocalStripePortTaken,
    localstripe_card_create,
    localstripe_payment_intent_authenticate,
    localstripe_setup_intent_confirm,
    localstripe_start,
    localstripe_stop,
)
from tests.billing.conftest import WEBHOOK_SECRET


@pytest.fixture
def customer_id():
    return gateway.customer_create(
        name="Acme Networks", email="billing@acme.example", metadata={"organization": "17"}
    )


def _card_saved(url_base: str, customer_id: str, number: str) -> gateway.CardInfo:
    """A card saved the way the browser saves it: SetupIntent, Stripe.js confirmation."""
    intent = gateway.setup_intent_create(customer_id=customer_id)
    localstripe_setup_intent_confirm(
        url_base=url_base, client_secret=intent.client_secret, number=number
    )
    return gateway.setup_intent_complete(setup_intent_id=intent.id, customer_id=customer_id)


def _charge(customer_id: str, card: gateway.CardInfo, **metadata) -> gateway.PaymentIntentInfo:
    return gateway.payment_intent_create(
        amount_minor=12_345,
        currency="EUR",
        customer_id=customer_id,
        payment_method_id=card.id,
        idempotency_key=f"charge-{uuid.uuid4()}",
        metadata=metadata or {"charge": str(uuid.uuid4())},
    )


# --- Customers and cards ------------------------------------------------------------------------


def test_customer_is_created(customer_id):
    assert customer_id.startswith("cus_")
    assert gateway.payment_methods_list(customer_id=customer_id) == []


def test_card_confirmed_in_a_setup_intent_is_saved_and_listed(stripe_on_localstripe, customer_id):
    intent = gateway.setup_intent_create(customer_id=customer_id)
    assert intent.status == "requires_payment_method"
    assert intent.client_secret.startswith(f"{intent.id}_secret_")

    localstripe_setup_intent_confirm(
        url_base=stripe_on_localstripe.url,
        client_secret=intent.client_secret,
        number=TEST_CARD_SUCCEEDS,
        exp_month=7,
        exp_year=2031,
    )
    assert gateway.setup_intent_retrieve(intent.id).status == "succeeded"
    card = gateway.setup_intent_complete(setup_intent_id=intent.id, customer_id=customer_id)

    assert (card.brand, card.last4, card.exp_month, card.exp_year) == ("visa", "4242", 7, 2031)
    assert card.customer_id == customer_id
    assert gateway.payment_methods_list(customer_id=customer_id) == [card]
    # completing again (a reloaded page, a webhook) saves nothing twice
    assert gateway.setup_intent_complete(setup_intent_id=intent.id, customer_id=customer_id) == card
    assert gateway.payment_methods_list(customer_id=customer_id) == [card]


def test_setup_intent_of_another_customer_saves_nothing(stripe_on_localstripe, customer_id):
    other = gateway.customer_create(name="Other", email="o@example.com", metadata={})
    intent = gateway.setup_intent_create(customer_id=other)
    localstripe_setup_intent_confirm(
        url_base=stripe_on_localstripe.url,
        client_secret=intent.client_secret,
        number=TEST_CARD_SUCCEEDS,
    )

    with pytest.raises(gateway.GatewayError) as refused:
        gateway.setup_intent_complete(setup_intent_id=intent.id, customer_id=customer_id)

    assert refused.value.code == "setup_intent_customer_mismatch"
    assert gateway.payment_methods_list(customer_id=customer_id) == []


def test_unconfirmed_setup_intent_saves_nothing(customer_id):
    intent = gateway.setup_intent_create(customer_id=customer_id)

    with pytest.raises(gateway.GatewayError) as refused:
        gateway.setup_intent_complete(setup_intent_id=intent.id, customer_id=customer_id)

    assert refused.value.code == "setup_intent_requires_payment_method"


def test_card_declined_at_attach_raises_card_declined(stripe_on_localstripe, customer_id):
    method_id = localstripe_card_create(
        url_base=stripe_on_localstripe.url, number=TEST_CARD_DECLINED_AT_ATTACH
    )

    with pytest.raises(gateway.CardDeclined) as declined:
        gateway.payment_method_attach(payment_method_id=method_id, customer_id=customer_id)

    assert declined.value.code == "card_declined"
    assert declined.value.message == "Your card was declined."
    assert gateway.payment_methods_list(customer_id=customer_id) == []


def test_card_declined_in_the_browser_leaves_the_setup_intent_canceled(
    stripe_on_localstripe, customer_id
):
    intent = gateway.setup_intent_create(customer_id=customer_id)

    with pytest.raises(LocalStripeError) as declined:
        localstripe_setup_intent_confirm(
            url_base=stripe_on_localstripe.url,
            client_secret=intent.client_secret,
            number=TEST_CARD_DECLINED_AT_ATTACH,
        )

    assert (declined.value.status, declined.value.code) == (402, "card_declined")
    assert gateway.setup_intent_retrieve(intent.id).status == "canceled"
    with pytest.raises(gateway.GatewayError):
        gateway.setup_intent_complete(setup_intent_id=intent.id, customer_id=customer_id)
    assert gateway.payment_methods_list(customer_id=customer_id) == []


@pytest.mark.parametrize("authenticated", [True, False])
def test_card_requiring_authentication_is_saved_only_once_authenticated(
    stripe_on_localstripe, customer_id, authenticated
):
    intent = gateway.setup_intent_create(customer_id=customer_id)

    answer = localstripe_setup_intent_confirm(
        url_base=stripe_on_localstripe.url,
        client_secret=intent.client_secret,
        number=TEST_CARD_REQUIRES_AUTHENTICATION,
        authenticate=authenticated,
    )

    if authenticated:
        assert answer["status"] == "succeeded"
        card = gateway.setup_intent_complete(setup_intent_id=intent.id, customer_id=customer_id)
        assert gateway.payment_methods_list(customer_id=customer_id) == [card]
    else:
        assert gateway.setup_intent_retrieve(intent.id).status == "canceled"
        assert gateway.payment_methods_list(customer_id=customer_id) == []


def test_detached_card_is_no_longer_listed(stripe_on_localstripe, customer_id):
    kept = _card_saved(stripe_on_localstripe.url, customer_id, TEST_CARD_SUCCEEDS)
    removed = _card_saved(stripe_on_localstripe.url, customer_id, TEST_CARD_SUCCEEDS)
    assert {card.id for card in gateway.payment_methods_list(customer_id=customer_id)} == {
        kept.id,
        removed.id,
    }

    gateway.payment_method_detach(removed.id)

    assert gateway.payment_methods_list(customer_id=customer_id) == [kept]


def test_unknown_card_is_a_gateway_error_with_its_status(customer_id):
    with pytest.raises(gateway.GatewayError) as refused:
        gateway.payment_method_detach("pm_doesnotexist")

    assert refused.value.http_status == 404


# --- Charges ------------------------------------------------------------------------------------


def test_off_session_charge_with_a_good_card_succeeds(stripe_on_localstripe, customer_id):
    card = _card_saved(stripe_on_localstripe.url, customer_id, TEST_CARD_SUCCEEDS)

    payment = gateway.payment_intent_create(
        amount_minor=12_345,
        currency="EUR",
        customer_id=customer_id,
        payment_method_id=card.id,
        idempotency_key="charge-statement-1-attempt-1",
        metadata={"charge": "41", "statement": "1"},
    )

    assert payment.succeeded
    assert (payment.amount_minor, payment.currency) == (12_345, "EUR")
    assert (payment.customer_id, payment.payment_method_id) == (customer_id, card.id)
    assert payment.metadata == {"charge": "41", "statement": "1"}
    assert gateway.payment_intent_retrieve(payment.id) == payment


def test_charge_declined_at_charge_raises_card_declined_with_code(
    stripe_on_localstripe, customer_id
):
    # the card saves fine; only charging it fails
    card = _card_saved(stripe_on_localstripe.url, customer_id, TEST_CARD_DECLINED_AT_CHARGE)

    with pytest.raises(gateway.CardDeclined) as declined:
        _charge(customer_id, card, charge="42")

    assert declined.value.code == "card_declined"
    payment = gateway.payment_intent_retrieve(declined.value.payment_intent_id)
    assert not payment.succeeded
    assert payment.status == "requires_payment_method"
    assert payment.last_error_code == "card_declined"
    assert payment.metadata == {"charge": "42"}


def test_charge_needing_authentication_raises_and_succeeds_once_authenticated(
    stripe_on_localstripe, customer_id
):
    card = _card_saved(stripe_on_localstripe.url, customer_id, TEST_CARD_REQUIRES_AUTHENTICATION)

    with pytest.raises(gateway.AuthenticationRequired) as required:
        _charge(customer_id, card, charge="43")

    waiting = required.value.payment_intent
    assert waiting.status == "requires_action"
    assert waiting.requires_authentication and not waiting.succeeded
    assert waiting.next_action_type == "use_stripe_sdk"
    assert waiting.client_secret.startswith(f"{waiting.id}_secret_")

    # the card holder follows the link and completes the authentication in Stripe.js
    localstripe_payment_intent_authenticate(
        url_base=stripe_on_localstripe.url, client_secret=waiting.client_secret
    )

    assert gateway.payment_intent_retrieve(waiting.id).succeeded


def test_failed_authentication_leaves_the_charge_unpaid(stripe_on_localstripe, customer_id):
    card = _card_saved(stripe_on_localstripe.url, customer_id, TEST_CARD_REQUIRES_AUTHENTICATION)
    with pytest.raises(gateway.AuthenticationRequired) as required:
        _charge(customer_id, card)

    localstripe_payment_intent_authenticate(
        url_base=stripe_on_localstripe.url,
        client_secret=required.value.payment_intent.client_secret,
        success=False,
    )

    payment = gateway.payment_intent_retrieve(required.value.payment_intent.id)
    assert payment.status == "requires_payment_method"
    assert payment.last_error_code == "payment_intent_authentication_failure"


def test_charge_arguments_are_checked_before_calling_stripe(customer_id):
    with pytest.raises(ValueError, match="idempotency key"):
        gateway.payment_intent_create(
            amount_minor=100,
            currency="EUR",
            customer_id=customer_id,
            payment_method_id="pm_x",
            idempotency_key="",
            metadata={},
        )
    with pytest.raises(ValueError, match="positive integer"):
        gateway.payment_intent_create(
            amount_minor=0,
            currency="EUR",
            customer_id=customer_id,
            payment_method_id="pm_x",
            idempotency_key="k",
            metadata={},
        )


def test_payment_intents_find_returns_the_charges_with_that_metadata(
    stripe_on_localstripe, customer_id
):
    card = _card_saved(stripe_on_localstripe.url, customer_id, TEST_CARD_SUCCEEDS)
    other_customer = gateway.customer_create(name="Other", email="o@example.com", metadata={})
    other_card = _card_saved(stripe_on_localstripe.url, other_customer, TEST_CARD_SUCCEEDS)
    wanted = _charge(customer_id, card, charge="501")
    _charge(customer_id, card, charge="502")
    _charge(other_customer, other_card, charge="501")

    found = gateway.payment_intents_find(
        customer_id=customer_id, metadata_key="charge", metadata_value="501"
    )

    assert found == [wanted]
    assert (
        gateway.payment_intents_find(
            customer_id=customer_id, metadata_key="charge", metadata_value="503"
        )
        == []
    )
    assert (
        gateway.payment_intents_find(
            customer_id=customer_id,
            metadata_key="charge",
            metadata_value="501",
            created_after=datetime.now(UTC) + timedelta(minutes=1),
        )
        == []
    )


def test_localstripe_ignores_idempotency_keys(stripe_on_localstripe, customer_id):
    """Real Stripe answers a repeated key with the first PaymentIntent; localstripe charges
    again. So the charge service must never count on the key alone (see the gateway's
    docstring)."""
    card = _card_saved(stripe_on_localstripe.url, customer_id, TEST_CARD_SUCCEEDS)
    request = {
        "amount_minor": 700,
        "currency": "USD",
        "customer_id": customer_id,
        "payment_method_id": card.id,
        "idempotency_key": "the-same-key",
        "metadata": {"charge": "600"},
    }

    first = gateway.payment_intent_create(**request)
    second = gateway.payment_intent_create(**request)

    assert first.id != second.id
    assert first.succeeded and second.succeeded
    found = gateway.payment_intents_find(
        customer_id=customer_id, metadata_key="charge", metadata_value="600"
    )
    assert len(found) == 2


# --- Stripe unreachable -------------------------------------------------------------------------


def test_stopped_stripe_makes_the_gateway_unavailable(settings, customer_id):
    own = localstripe_start()
    try:
        settings.LOCALSTRIPE_URL = own.url
        customer = gateway.customer_create(name="Brief", email="b@example.com", metadata={})
        method_id = localstripe_card_create(url_base=own.url, number=TEST_CARD_SUCCEEDS)
        card = gateway.payment_method_attach(payment_method_id=method_id, customer_id=customer)
    finally:
        localstripe_stop(own)

    with pytest.raises(gateway.GatewayUnavailable, match="outcome is unknown"):
        _charge(customer, card)
    with pytest.raises(gateway.GatewayUnavailable):
        gateway.payment_intents_find(
            customer_id=customer, metadata_key="charge", metadata_value="1"
        )
    # an unknown outcome is not a refusal: `except GatewayError` does not swallow it
    assert not issubclass(gateway.GatewayUnavailable, gateway.GatewayError)


# --- Webhooks -----------------------------------------------------------------------------------


def _signed(payload: bytes, *, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    timestamp = int(time.time()) if timestamp is None else timestamp
    signature = hmac.new(
        secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256
    ).hexdigest()
    return f"t={timestamp},v1={signature}"


@pytest.fixture
def succeeded_webhook(stripe_on_localstripe, webhook_receiver, customer_id):
    """A payment_intent.succeeded webhook localstripe sent for a charge, and the charge."""
    card = _card_saved(stripe_on_localstripe.url, customer_id, TEST_CARD_SUCCEEDS)
    payment = _charge(customer_id, card)
    while True:
        webhook = webhook_receiver.next_of_type("payment_intent.succeeded")
        if payment.id.encode() in webhook.body:
            return webhook, payment


def test_webhook_from_localstripe_is_verified(succeeded_webhook):
    webhook, payment = succeeded_webhook

    event = gateway.webhook_event_verify(
        payload=webhook.body, signature_header=webhook.headers["Stripe-Signature"]
    )

    assert event.id.startswith("evt_")
    assert event.type == "payment_intent.succeeded"
    assert (event.object_type, event.object_id) == ("payment_intent", payment.id)
    assert abs(event.created - datetime.now(UTC)) < timedelta(minutes=1)


def test_webhook_with_a_tampered_body_is_refused(succeeded_webhook):
    webhook, _ = succeeded_webhook
    tampered = webhook.body.replace(b'"succeeded"', b'"canceled"', 1)
    assert tampered != webhook.body

    with pytest.raises(gateway.WebhookRefused, match="signature"):
        gateway.webhook_event_verify(
            payload=tampered, signature_header=webhook.headers["Stripe-Signature"]
        )


def test_webhook_signed_with_another_secret_is_refused(settings, succeeded_webhook):
    webhook, _ = succeeded_webhook
    settings.STRIPE_WEBHOOK_SECRET = "whsec_someone_else"

    with pytest.raises(gateway.WebhookRefused, match="signature"):
        gateway.webhook_event_verify(
            payload=webhook.body, signature_header=webhook.headers["Stripe-Signature"]
        )


def test_webhook_signed_too_long_ago_is_refused(succeeded_webhook):
    webhook, _ = succeeded_webhook
    # the same body, correctly signed: accepted when recent, refused when 301 s old
    recent = _signed(webhook.body, timestamp=int(time.time()) - 10)
    old = _signed(webhook.body, timestamp=int(time.time()) - 301)

    assert gateway.webhook_event_verify(payload=webhook.body, signature_header=recent)
    with pytest.raises(gateway.WebhookRefused, match="tolerance"):
        gateway.webhook_event_verify(payload=webhook.body, signature_header=old)


@pytest.mark.parametrize("header", [None, "", "garbage", "t=1,v0=abc"])
def test_webhook_without_a_usable_signature_is_refused(header):
    with pytest.raises(gateway.WebhookRefused):
        gateway.webhook_event_verify(payload=b'{"id": "evt_1"}', signature_header=header)


def test_signed_body_that_is_not_an_event_is_refused():
    payload = b'{"id": "evt_1", "type": "payment_intent.succeeded"}'

    with pytest.raises(gateway.WebhookRefused, match="not a Stripe event"):
        gateway.webhook_event_verify(payload=payload, signature_header=_signed(payload))


def test_webhooks_are_refused_when_no_secret_is_configured(settings):
    settings.STRIPE_SECRET_KEY = "sk_live_configured"
    settings.STRIPE_WEBHOOK_SECRET = ""
    payload = b"{}"

    with pytest.raises(gateway.WebhookRefused, match="No webhook signing secret"):
        gateway.webhook_event_verify(payload=payload, signature_header=_signed(payload))


# --- Configuration, Stripe.js, the localstripe process -----------------------------------------


def test_pages_use_localstripes_stripe_js_without_a_key(stripe_on_localstripe):
    assert gateway.uses_localstripe()
    assert gateway.stripe_js_url() == f"{stripe_on_localstripe.url}/js.stripe.com/v3/"
    assert gateway.publishable_key().startswith("pk_")
    with urllib.request.urlopen(gateway.stripe_js_url(), timeout=5) as response:
        script = response.read().decode()
    assert "confirmCardSetup" in script
    assert "confirmCardPayment" in script


def test_pages_use_stripes_stripe_js_with_a_key(settings):
    settings.STRIPE_SECRET_KEY = "sk_live_configured"
    settings.STRIPE_PUBLISHABLE_KEY = "pk_live_configured"

    assert not gateway.uses_localstripe()
    assert gateway.stripe_js_url() == "https://js.stripe.com/v3/"
    assert gateway.publishable_key() == "pk_live_configured"


def test_localstripe_on_a_taken_port_is_a_clear_error(stripe_on_localstripe):
    taken = int(stripe_on_localstripe.url.rsplit(":", 1)[1])

    with pytest.raises(LocalStripePortTaken, match="already in use"):
        localstripe_start(port=taken)
    with pytest.raises(CommandError, match="already in use"):
        call_command("localstripe", port=taken, from_scratch=True)
