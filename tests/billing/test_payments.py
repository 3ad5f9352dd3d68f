"""Cards and charges against a real localstripe: the four test cards, declines retried on
schedule, authentication by e-mailed link, exactly one charge whatever fails, and Stripe's
webhooks processed once, in any order."""

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from billing import payments
from billing import stripe_gateway as gateway
from billing.localstripe import (
    TEST_CARD_DECLINED_AT_ATTACH,
    TEST_CARD_DECLINED_AT_CHARGE,
    TEST_CARD_REQUIRES_AUTHENTICATION,
    TEST_CARD_SUCCEEDS,
    LocalStripeError,
    localstripe_payment_intent_authenticate,
    localstripe_setup_intent_confirm,
    localstripe_start,
    localstripe_stop,
)
from billing.models import (
    BillingAccount,
    Card,
    Charge,
    ChargeStatus,
    Rating,
    RatingSource,
    StatementStatus,
    StripeEvent,
)
from billing.payments import (
    PaymentRefused,
    card_remove,
    card_setup_finish,
    card_setup_start,
)
from billing.statements import statements_build
from tests.billing.test_statements import NOVEMBER, lease_won
from tests.factories import OrganizationFactory, VerifiedProviderFactory, member_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def buyer():
    organization = OrganizationFactory(name="Acme Analytics")
    member_of(organization, user=None)
    return organization


def card_saved(organization, number, url_base):
    setup = card_setup_start(organization=organization)
    localstripe_setup_intent_confirm(
        url_base=url_base, client_secret=setup.client_secret, number=number
    )
    return card_setup_finish(organization=organization, setup_intent_id=setup.id)


def statement_of(organization, price=12_345):
    lease_won(organization, VerifiedProviderFactory(), price)
    (statement,) = statements_build(period_start=NOVEMBER[0], period_end=NOVEMBER[1])
    return statement


def intents_of(charge):
    account = BillingAccount.objects.get(organization=charge.statement.organization_id)
    return gateway.payment_intents_find(
        customer_id=account.stripe_customer_id, metadata_key="charge", metadata_value=str(charge.pk)
    )


# --- cards ---------------------------------------------------------------------------------------


def test_a_card_saved_in_the_browser_is_listed_and_the_first_is_the_default(
    buyer, stripe_on_localstripe
):
    first = card_saved(buyer, TEST_CARD_SUCCEEDS, stripe_on_localstripe.url)
    second = card_saved(buyer, TEST_CARD_DECLINED_AT_CHARGE, stripe_on_localstripe.url)

    assert (first.last4, first.is_default) == ("4242", True)
    assert (second.last4, second.is_default) == ("0341", False)
    customer_id = BillingAccount.objects.get(organization=buyer).stripe_customer_id
    listed = gateway.payment_methods_list(customer_id=customer_id)
    assert {card.last4 for card in listed} == {"4242", "0341"}

    card_remove(card=first)
    assert list(Card.objects.values_list("last4", "is_default")) == [("0341", True)]


def test_a_card_declined_at_attach_is_not_saved(buyer, stripe_on_localstripe):
    setup = card_setup_start(organization=buyer)
    with pytest.raises(LocalStripeError, match="402 Your card was declined"):
        localstripe_setup_intent_confirm(
            url_base=stripe_on_localstripe.url,
            client_secret=setup.client_secret,
            number=TEST_CARD_DECLINED_AT_ATTACH,
        )
    with pytest.raises(PaymentRefused):
        card_setup_finish(organization=buyer, setup_intent_id=setup.id)
    assert not Card.objects.exists()


# --- charges -------------------------------------------------------------------------------------


def test_a_statement_is_charged_to_the_default_card_and_paid(
    committed, buyer, stripe_on_localstripe
):
    card_saved(buyer, TEST_CARD_SUCCEEDS, stripe_on_localstripe.url)
    statement = statement_of(buyer)

    assert committed.statement_charge(statement_id=statement.pk) == ChargeStatus.SUCCEEDED
    assert committed.statement_charge(statement_id=statement.pk) == ChargeStatus.SUCCEEDED  # once

    charge = Charge.objects.get()
    statement.refresh_from_db()
    assert statement.status == StatementStatus.PAID and statement.paid_at is not None
    intents = intents_of(charge)
    assert [(i.status, i.amount_minor) for i in intents] == [("succeeded", 12_345)]
    assert intents[0].id == charge.payment_intent_id
    # paying sets the recipient's rating
    (rating,) = Rating.objects.filter(recipient=buyer, source=RatingSource.PAYMENT)
    assert rating.positive


def test_a_statement_without_a_card_fails_and_says_so(committed, buyer):
    statement = statement_of(buyer)
    assert committed.statement_charge(statement_id=statement.pk) == ChargeStatus.FAILED
    charge = Charge.objects.get()
    assert charge.last_error_code == "no_card"
    assert "No card on file" in mail.outbox[-1].body


def test_a_declined_charge_is_retried_after_one_three_and_seven_days_then_left_failed(
    committed, buyer, stripe_on_localstripe
):
    card_saved(buyer, TEST_CARD_DECLINED_AT_CHARGE, stripe_on_localstripe.url)
    statement = statement_of(buyer)

    assert committed.statement_charge(statement_id=statement.pk) == ChargeStatus.FAILED
    charge = Charge.objects.get()
    statement.refresh_from_db()
    assert statement.status == StatementStatus.PAYMENT_FAILED
    assert "could not be charged" in mail.outbox[-1].body
    delays = []
    tried_at = timezone.now()
    for _ in range(3):
        delays.append(round((charge.next_attempt_at - tried_at) / timedelta(days=1)))
        assert committed.charges_retry_due(now=tried_at) == 0  # not due yet
        tried_at = charge.next_attempt_at + timedelta(seconds=1)
        assert committed.charges_retry_due(now=tried_at) == 1
        charge.refresh_from_db()
    assert delays == [1, 3, 7]
    assert (charge.status, charge.declines, charge.next_attempt_at) == ("failed", 4, None)
    (rating,) = Rating.objects.filter(recipient=buyer, source=RatingSource.PAYMENT)
    assert not rating.positive
    assert len(intents_of(charge)) == 4
    assert not any(intent.succeeded for intent in intents_of(charge))


def test_a_card_that_needs_authentication_gets_a_link_and_is_paid_once_confirmed(
    committed, buyer, stripe_on_localstripe
):
    card_saved(buyer, TEST_CARD_REQUIRES_AUTHENTICATION, stripe_on_localstripe.url)
    statement = statement_of(buyer)

    assert committed.statement_charge(statement_id=statement.pk) == ChargeStatus.REQUIRES_ACTION
    charge = Charge.objects.get()
    statement.refresh_from_db()
    assert statement.status == StatementStatus.ACTION_REQUIRED
    assert f"/billing/charges/{charge.pk}/authenticate/" in mail.outbox[-1].body

    localstripe_payment_intent_authenticate(
        url_base=stripe_on_localstripe.url, client_secret=charge.client_secret
    )
    assert committed.payment_authenticated(charge=charge) == ChargeStatus.SUCCEEDED
    statement.refresh_from_db()
    assert statement.status == StatementStatus.PAID
    assert len(intents_of(charge)) == 1


# --- faults: exactly one charge ------------------------------------------------------------------


@pytest.fixture
def stoppable_localstripe(settings, tmp_path):
    """A localstripe of this test's own, which it stops and starts again on the same port
    with the same data (as after an outage)."""
    store = tmp_path / "localstripe.pickle"
    server = localstripe_start(store_path=store, log_path=tmp_path / "first.log")
    settings.LOCALSTRIPE_URL = server.url
    state = {"server": server}

    def restart():
        port = int(server.url.rsplit(":", 1)[1])
        state["server"] = localstripe_start(
            port=port, store_path=store, log_path=tmp_path / "again.log"
        )
        return state["server"]

    yield server, restart
    localstripe_stop(state["server"])


def test_stripe_down_between_recording_and_calling_still_charges_exactly_once(
    committed, buyer, stoppable_localstripe
):
    server, restart = stoppable_localstripe
    card_saved(buyer, TEST_CARD_SUCCEEDS, server.url)
    statement = statement_of(buyer)
    localstripe_stop(server)

    assert committed.statement_charge(statement_id=statement.pk) == ChargeStatus.PROCESSING
    charge = Charge.objects.get()
    assert "unreachable" in charge.last_error

    restart()
    assert committed.charges_retry_due(now=timezone.now() + timedelta(minutes=2)) == 1
    charge.refresh_from_db()
    assert charge.status == ChargeStatus.SUCCEEDED
    assert [intent.status for intent in intents_of(charge)] == ["succeeded"]


def test_an_answer_lost_after_stripe_charged_is_read_back_not_charged_again(
    committed, buyer, stoppable_localstripe, monkeypatch
):
    server, _restart = stoppable_localstripe
    card_saved(buyer, TEST_CARD_SUCCEEDS, server.url)
    statement = statement_of(buyer)
    real_create = gateway.payment_intent_create

    def charged_then_lost(**kwargs):
        real_create(**kwargs)  # Stripe charges the card...
        raise gateway.GatewayUnavailable("connection reset")  # ...and the answer is lost

    monkeypatch.setattr(gateway, "payment_intent_create", charged_then_lost)
    assert committed.statement_charge(statement_id=statement.pk) == ChargeStatus.PROCESSING
    monkeypatch.setattr(gateway, "payment_intent_create", real_create)

    assert committed.charges_retry_due(now=timezone.now() + timedelta(minutes=2)) == 1
    charge = Charge.objects.get()
    assert charge.status == ChargeStatus.SUCCEEDED
    assert [intent.status for intent in intents_of(charge)] == ["succeeded"]
    statement.refresh_from_db()
    assert statement.status == StatementStatus.PAID


# --- webhooks ------------------------------------------------------------------------------------


def test_a_webhook_is_processed_once_and_only_triggers_a_read_back(
    committed, buyer, stripe_on_localstripe, webhook_receiver
):
    card_saved(buyer, TEST_CARD_REQUIRES_AUTHENTICATION, stripe_on_localstripe.url)
    statement = statement_of(buyer)
    committed.statement_charge(statement_id=statement.pk)
    charge = Charge.objects.get()
    localstripe_payment_intent_authenticate(
        url_base=stripe_on_localstripe.url, client_secret=charge.client_secret
    )
    webhook = webhook_receiver.next_of_type("payment_intent.succeeded")
    signature = webhook.headers["Stripe-Signature"]

    assert (
        committed.stripe_event_process(payload=webhook.body, signature_header=signature)
        == "succeeded"
    )
    charge.refresh_from_db()
    assert charge.status == ChargeStatus.SUCCEEDED
    # replayed: no second effect
    assert (
        committed.stripe_event_process(payload=webhook.body, signature_header=signature)
        == "already_processed"
    )
    assert StripeEvent.objects.count() == 1


def test_a_tampered_or_old_webhook_is_refused(
    committed, buyer, stripe_on_localstripe, webhook_receiver
):
    card_saved(buyer, TEST_CARD_SUCCEEDS, stripe_on_localstripe.url)
    committed.statement_charge(statement_id=statement_of(buyer).pk)
    webhook = webhook_receiver.next_of_type("payment_intent.succeeded")
    signature = webhook.headers["Stripe-Signature"]

    with pytest.raises(gateway.WebhookRefused):
        committed.stripe_event_process(
            payload=webhook.body.replace(b"succeeded", b"failed"), signature_header=signature
        )
    with pytest.raises(gateway.WebhookRefused):
        committed.stripe_event_process(payload=webhook.body, signature_header="t=1,v1=" + "0" * 64)
    assert not StripeEvent.objects.exists()


def test_events_out_of_order_leave_the_final_state_right(
    committed, buyer, stripe_on_localstripe, webhook_receiver
):
    # a declined attempt, then a paid one: the failure's event processed last changes nothing
    card = card_saved(buyer, TEST_CARD_DECLINED_AT_CHARGE, stripe_on_localstripe.url)
    statement = statement_of(buyer)
    committed.statement_charge(statement_id=statement.pk)
    failed = webhook_receiver.next_of_type("payment_intent.payment_failed")
    card_saved(buyer, TEST_CARD_SUCCEEDS, stripe_on_localstripe.url)
    card_remove(card=card)
    charge = Charge.objects.get()
    committed.charges_retry_due(now=charge.next_attempt_at + timedelta(seconds=1))
    succeeded = webhook_receiver.next_of_type("payment_intent.succeeded")

    for webhook in (succeeded, failed):  # delivered in the other order
        committed.stripe_event_process(
            payload=webhook.body, signature_header=webhook.headers["Stripe-Signature"]
        )

    charge.refresh_from_db()
    statement.refresh_from_db()
    assert charge.status == ChargeStatus.SUCCEEDED
    assert statement.status == StatementStatus.PAID


# --- what review found ------------------------------------------------------------------------


def test_a_second_run_while_the_first_is_out_with_stripe_sends_nothing(
    committed, buyer, stripe_on_localstripe, monkeypatch
):
    card_saved(buyer, TEST_CARD_SUCCEEDS, stripe_on_localstripe.url)
    statement = statement_of(buyer)
    real_create = gateway.payment_intent_create
    answers = []

    def slow_create(**kwargs):
        # another worker's periodic run comes while this call is out
        answers.append(payments.statement_charge(statement_id=statement.pk))
        return real_create(**kwargs)

    monkeypatch.setattr(gateway, "payment_intent_create", slow_create)
    assert committed.statement_charge(statement_id=statement.pk) == ChargeStatus.SUCCEEDED
    assert answers == [ChargeStatus.PROCESSING]
    assert [intent.status for intent in intents_of(Charge.objects.get())] == ["succeeded"]


def test_a_worker_killed_after_stripe_charged_is_reconciled_when_its_time_is_up(
    committed, buyer, stripe_on_localstripe, monkeypatch
):
    card_saved(buyer, TEST_CARD_SUCCEEDS, stripe_on_localstripe.url)
    statement = statement_of(buyer)
    real_create = gateway.payment_intent_create

    class Killed(BaseException):
        pass

    def charged_then_killed(**kwargs):
        real_create(**kwargs)
        raise Killed

    monkeypatch.setattr(gateway, "payment_intent_create", charged_then_killed)
    with pytest.raises(Killed):
        payments.statement_charge(statement_id=statement.pk)
    monkeypatch.setattr(gateway, "payment_intent_create", real_create)
    charge = Charge.objects.get()
    assert charge.status == ChargeStatus.PROCESSING

    assert committed.charges_retry_due(now=timezone.now()) == 0  # still its run's
    assert committed.charges_retry_due(now=charge.next_attempt_at + timedelta(seconds=1)) == 1
    charge.refresh_from_db()
    assert charge.status == ChargeStatus.SUCCEEDED
    assert len(intents_of(charge)) == 1


def test_a_decline_and_its_webhook_count_as_one_decline(
    committed, buyer, stripe_on_localstripe, webhook_receiver
):
    card_saved(buyer, TEST_CARD_DECLINED_AT_CHARGE, stripe_on_localstripe.url)
    statement = statement_of(buyer)
    committed.statement_charge(statement_id=statement.pk)
    webhook = webhook_receiver.next_of_type("payment_intent.payment_failed")

    outcome = committed.stripe_event_process(
        payload=webhook.body, signature_header=webhook.headers["Stripe-Signature"]
    )

    charge = Charge.objects.get()
    assert outcome.startswith("unchanged")
    assert charge.declines == 1
    assert round((charge.next_attempt_at - timezone.now()) / timedelta(days=1)) == 1


def test_a_failed_statement_is_paid_with_a_new_card_from_its_page(
    committed, buyer, stripe_on_localstripe
):
    statement = statement_of(buyer)
    assert committed.statement_charge(statement_id=statement.pk) == ChargeStatus.FAILED  # no card
    card_saved(buyer, TEST_CARD_SUCCEEDS, stripe_on_localstripe.url)  # re-arms it

    assert committed.charges_retry_due(now=timezone.now() + timedelta(seconds=1)) == 1
    statement.refresh_from_db()
    assert statement.status == StatementStatus.PAID

    other = statement_of(OrganizationFactory(), price=500)
    card_saved(other.organization, TEST_CARD_DECLINED_AT_CHARGE, stripe_on_localstripe.url)
    committed.statement_charge(statement_id=other.pk)
    card_saved(other.organization, TEST_CARD_SUCCEEDS, stripe_on_localstripe.url)
    Card.objects.filter(account__organization=other.organization, last4="0341").delete()
    assert committed.statement_pay(statement=other) == ChargeStatus.SUCCEEDED


def test_an_error_on_the_exchanges_side_is_no_decline(
    committed, buyer, stripe_on_localstripe, monkeypatch
):
    card_saved(buyer, TEST_CARD_SUCCEEDS, stripe_on_localstripe.url)
    statement = statement_of(buyer)

    def refused(**kwargs):
        raise gateway.GatewayError("Invalid API key", code="api_key_invalid", http_status=401)

    monkeypatch.setattr(gateway, "payment_intent_create", refused)
    assert committed.statement_charge(statement_id=statement.pk) == ChargeStatus.ERROR
    charge = Charge.objects.get()
    assert (charge.declines, charge.last_error_code) == (0, "api_key_invalid")
    assert not Rating.objects.filter(recipient=buyer).exists()
    assert not mail.outbox


def test_the_authentication_page_touches_only_a_charge_waiting_for_it(
    committed, buyer, stripe_on_localstripe
):
    card_saved(buyer, TEST_CARD_DECLINED_AT_CHARGE, stripe_on_localstripe.url)
    statement = statement_of(buyer)
    committed.statement_charge(statement_id=statement.pk)
    charge = Charge.objects.get()
    for _ in range(3):
        assert committed.payment_authenticated(charge=charge) == ChargeStatus.FAILED
    charge.refresh_from_db()
    assert charge.declines == 1
