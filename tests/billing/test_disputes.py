"""Card issuers' disputes of paid statements, played on a real localstripe (which gained
disputes in billing.localstripe): reported by signed webhooks, the dispute re-read from Stripe,
settlements held while open, the recipient's rating negative until the dispute is won, a
lost dispute unpaid again and returned by providers already settled."""

from datetime import date

import pytest
from django.db import transaction

from auctions.services import BidRejected, billing_standing_check
from billing import payments
from billing import stripe_gateway as gateway
from billing.localstripe import (
    TEST_CARD_SUCCEEDS,
    localstripe_dispute_close,
    localstripe_dispute_open,
)
from billing.models import (
    BillingAccount,
    Charge,
    Dispute,
    DisputeReversal,
    DisputeStatus,
    Rating,
    RatingSource,
    Settlement,
    StatementStatus,
)
from billing.statements import settlement_csv_rows, settlements_build
from tests.billing.test_payments import card_saved, statement_of
from tests.billing.test_statements import NOVEMBER
from tests.factories import OrganizationFactory, member_of

pytestmark = pytest.mark.django_db

DECEMBER = (NOVEMBER[1], date(2027, 1, 1))
JANUARY = (DECEMBER[1], date(2027, 2, 1))


@pytest.fixture
def paid(committed, stripe_on_localstripe):
    """A recipient's November statement of 12,345, paid by card."""
    buyer = OrganizationFactory(name="Acme Analytics")
    member_of(buyer, user=None)
    card_saved(buyer, TEST_CARD_SUCCEEDS, stripe_on_localstripe.url)
    statement = statement_of(buyer)
    assert committed.statement_charge(statement_id=statement.pk) == "succeeded"
    return Charge.objects.get(statement=statement)


def deliver(committed, webhook_receiver, event_type):
    webhook = webhook_receiver.next_of_type(event_type)
    return webhook, committed.stripe_event_process(
        payload=webhook.body, signature_header=webhook.headers["Stripe-Signature"]
    )


def payment_rating(charge):
    return Rating.objects.get(
        source=RatingSource.PAYMENT, payment_reference=f"statement:{charge.statement.number}"
    )


def test_an_open_dispute_holds_the_settlement_and_a_won_one_releases_it(
    committed, paid, stripe_on_localstripe, webhook_receiver
):
    opened = localstripe_dispute_open(
        url_base=stripe_on_localstripe.url,
        payment_intent_id=paid.payment_intent_id,
        reason="fraudulent",
    )
    webhook, outcome = deliver(committed, webhook_receiver, "charge.dispute.created")

    assert outcome == "dispute open"
    statement = paid.statement
    statement.refresh_from_db()
    assert statement.status == StatementStatus.DISPUTED
    dispute = Dispute.objects.get(dispute_id=opened["id"])
    assert (dispute.amount_minor, dispute.currency, dispute.reason) == (12_345, "USD", "fraudulent")
    assert payment_rating(paid).positive is False  # disputed: negative until it is won
    # replayed: nothing more
    assert (
        committed.stripe_event_process(
            payload=webhook.body, signature_header=webhook.headers["Stripe-Signature"]
        )
        == "already_processed"
    )
    # November is closed while the dispute is open: the provider is not paid for it
    assert settlements_build(period_start=NOVEMBER[0], period_end=NOVEMBER[1]) == []

    localstripe_dispute_close(
        url_base=stripe_on_localstripe.url, dispute_id=opened["id"], status="won"
    )
    _, outcome = deliver(committed, webhook_receiver, "charge.dispute.closed")

    assert outcome == "dispute won"
    statement.refresh_from_db()
    assert statement.status == StatementStatus.PAID
    assert payment_rating(paid).positive is True
    (december,) = settlements_build(period_start=DECEMBER[0], period_end=DECEMBER[1])
    assert (december.gross_minor, december.reversals_minor) == (12_345, 0)


def test_a_lost_dispute_is_unpaid_blocks_bidding_and_is_returned_by_the_settled_provider(
    committed, paid, stripe_on_localstripe, webhook_receiver, settings
):
    settings.EXCHANGE_FEE_BPS = 1000
    settings.UNPAID_LEASES_BLOCK = 1
    # the provider was settled for November before the card issuer disputed the payment
    (november,) = settlements_build(period_start=NOVEMBER[0], period_end=NOVEMBER[1])
    assert (november.gross_minor, november.net_minor) == (12_345, 11_110)  # fee 1,234.5 → 1,235
    opened = localstripe_dispute_open(
        url_base=stripe_on_localstripe.url,
        payment_intent_id=paid.payment_intent_id,
        reason="product_not_received",
    )
    deliver(committed, webhook_receiver, "charge.dispute.created")
    localstripe_dispute_close(
        url_base=stripe_on_localstripe.url, dispute_id=opened["id"], status="lost"
    )
    _, outcome = deliver(committed, webhook_receiver, "charge.dispute.closed")

    assert outcome == "dispute lost"
    statement = paid.statement
    statement.refresh_from_db()
    assert statement.status == StatementStatus.CHARGED_BACK
    assert payment_rating(paid).positive is False
    with pytest.raises(BidRejected) as refused:
        billing_standing_check(statement.organization)
    assert refused.value.code == "unpaid_leases"
    (reversal,) = DisputeReversal.objects.all()
    assert reversal.amount_minor == -11_110  # what it was paid for it, the fee returned too

    (december,) = settlements_build(period_start=DECEMBER[0], period_end=DECEMBER[1])
    assert (december.gross_minor, december.fee_minor) == (0, 0)
    assert (december.reversals_minor, december.net_minor) == (-11_110, -11_110)
    assert settlement_csv_rows(december)[-2][2:5] == [
        "dispute_reversal",
        f"Dispute {opened['id']} lost: paid earlier, returned",
        "-11110",
    ]
    # returned once
    assert settlements_build(period_start=JANUARY[0], period_end=JANUARY[1]) == []
    assert Settlement.objects.count() == 2


def test_a_charged_back_statement_is_paid_again_from_its_page_and_bidding_resumes(
    committed, paid, stripe_on_localstripe, webhook_receiver, settings
):
    settings.UNPAID_LEASES_BLOCK = 1
    opened = localstripe_dispute_open(
        url_base=stripe_on_localstripe.url,
        payment_intent_id=paid.payment_intent_id,
        reason="fraudulent",
    )
    deliver(committed, webhook_receiver, "charge.dispute.created")
    localstripe_dispute_close(
        url_base=stripe_on_localstripe.url, dispute_id=opened["id"], status="lost"
    )
    deliver(committed, webhook_receiver, "charge.dispute.closed")
    statement = paid.statement
    disputed_attempt = paid.payment_intent_id

    assert committed.statement_pay(statement=statement) == "succeeded"

    statement.refresh_from_db()
    charge = Charge.objects.get(pk=paid.pk)
    assert statement.status == StatementStatus.PAID
    assert charge.payment_intent_id != disputed_attempt  # a new payment, not the disputed one
    assert charge.amount_minor == 12_345
    assert payment_rating(paid).positive is True
    billing_standing_check(statement.organization)  # no longer blocked


def test_a_partial_dispute_lost_returns_its_part_and_only_it_is_paid_again(
    committed, paid, stripe_on_localstripe, webhook_receiver, settings
):
    settings.EXCHANGE_FEE_BPS = 1000
    (november,) = settlements_build(period_start=NOVEMBER[0], period_end=NOVEMBER[1])
    assert november.net_minor == 11_110
    opened = localstripe_dispute_open(
        url_base=stripe_on_localstripe.url,
        payment_intent_id=paid.payment_intent_id,
        reason="duplicate",
        amount_minor=2_000,
    )
    deliver(committed, webhook_receiver, "charge.dispute.created")
    localstripe_dispute_close(
        url_base=stripe_on_localstripe.url, dispute_id=opened["id"], status="lost"
    )
    deliver(committed, webhook_receiver, "charge.dispute.closed")

    (reversal,) = DisputeReversal.objects.all()
    assert reversal.amount_minor == -1_800  # 11,110 * 2,000 / 12,345, half up
    charge = Charge.objects.get(pk=paid.pk)
    assert charge.amount_minor == 2_000
    assert committed.statement_pay(statement=paid.statement) == "succeeded"
    assert Charge.objects.get(pk=paid.pk).amount_minor == 2_000


def test_a_late_success_of_the_disputed_attempt_leaves_the_statement_charged_back(
    committed, paid, stripe_on_localstripe, webhook_receiver
):
    opened = localstripe_dispute_open(
        url_base=stripe_on_localstripe.url,
        payment_intent_id=paid.payment_intent_id,
        reason="fraudulent",
    )
    deliver(committed, webhook_receiver, "charge.dispute.created")
    localstripe_dispute_close(
        url_base=stripe_on_localstripe.url, dispute_id=opened["id"], status="lost"
    )
    deliver(committed, webhook_receiver, "charge.dispute.closed")
    intent = gateway.payment_intent_retrieve(paid.payment_intent_id)

    with transaction.atomic():
        outcome = payments._event_apply(intent)  # the webhook's effect, for that attempt

    assert outcome == "older_attempt"
    paid.statement.refresh_from_db()
    assert paid.statement.status == StatementStatus.CHARGED_BACK


def test_dispute_events_out_of_order_leave_the_final_state(
    committed, paid, stripe_on_localstripe, webhook_receiver
):
    opened = localstripe_dispute_open(
        url_base=stripe_on_localstripe.url,
        payment_intent_id=paid.payment_intent_id,
        reason="duplicate",
    )
    created = webhook_receiver.next_of_type("charge.dispute.created")
    localstripe_dispute_close(
        url_base=stripe_on_localstripe.url, dispute_id=opened["id"], status="lost"
    )
    closed = webhook_receiver.next_of_type("charge.dispute.closed")

    outcomes = [
        committed.stripe_event_process(
            payload=webhook.body, signature_header=webhook.headers["Stripe-Signature"]
        )
        for webhook in (closed, created)  # the closing first
    ]

    assert outcomes == ["dispute lost", "dispute unchanged"]
    dispute = Dispute.objects.get()
    assert dispute.status == DisputeStatus.LOST
    paid.statement.refresh_from_db()
    assert paid.statement.status == StatementStatus.CHARGED_BACK
    # never settled, never reversed: the provider was not paid for it
    assert settlements_build(period_start=NOVEMBER[0], period_end=DECEMBER[1]) == []
    assert not DisputeReversal.objects.exists()


def test_a_dispute_of_a_payment_the_exchange_never_made_changes_nothing(
    committed, paid, stripe_on_localstripe, webhook_receiver
):
    # a payment of the same customer made outside the exchange (no charge in its metadata)
    account = BillingAccount.objects.get(organization=paid.statement.organization)
    outside = gateway.payment_intent_create(
        amount_minor=500,
        currency="USD",
        customer_id=account.stripe_customer_id,
        payment_method_id=paid.payment_method_id,
        idempotency_key="outside-1",
        metadata={"note": "not the exchange's"},
    )
    localstripe_dispute_open(
        url_base=stripe_on_localstripe.url, payment_intent_id=outside.id, reason="general"
    )

    _, outcome = deliver(committed, webhook_receiver, "charge.dispute.created")

    assert outcome == "dispute no_charge"
    paid.statement.refresh_from_db()
    assert paid.statement.status == StatementStatus.PAID
    assert not Dispute.objects.exists()


def test_the_statement_page_shows_a_lost_dispute(
    client, committed, paid, stripe_on_localstripe, webhook_receiver
):
    opened = localstripe_dispute_open(
        url_base=stripe_on_localstripe.url,
        payment_intent_id=paid.payment_intent_id,
        reason="fraudulent",
    )
    deliver(committed, webhook_receiver, "charge.dispute.created")
    localstripe_dispute_close(
        url_base=stripe_on_localstripe.url, dispute_id=opened["id"], status="lost"
    )
    deliver(committed, webhook_receiver, "charge.dispute.closed")
    user = member_of(paid.statement.organization)
    client.force_login(user)

    page = client.get(f"/billing/statements/{paid.statement.number}/").content.decode()

    assert "Refunded to the card after a dispute" in page
    assert "Lost: refunded to the card" in page and "fraudulent" in page


def test_every_money_moving_step_is_in_the_audit_log(
    committed, paid, stripe_on_localstripe, webhook_receiver
):
    from marketplace.models import AuditLogEntry

    opened = localstripe_dispute_open(
        url_base=stripe_on_localstripe.url,
        payment_intent_id=paid.payment_intent_id,
        reason="fraudulent",
    )
    deliver(committed, webhook_receiver, "charge.dispute.created")
    localstripe_dispute_close(
        url_base=stripe_on_localstripe.url, dispute_id=opened["id"], status="won"
    )
    deliver(committed, webhook_receiver, "charge.dispute.closed")
    settlements_build(period_start=DECEMBER[0], period_end=DECEMBER[1])

    actions = list(AuditLogEntry.objects.order_by("pk").values_list("action", flat=True))
    for step in (
        "card.saved",
        "statement.issued",
        "charge.succeeded",
        "statement.paid",
        "dispute.opened",
        "dispute.won",
        "settlement.created",
    ):
        assert step in actions, step
    charged = AuditLogEntry.objects.get(action="charge.succeeded")
    assert charged.organization == paid.statement.organization
    assert charged.data["amount_minor"] == 12_345
    assert charged.data["statement"] == paid.statement.number
