"""What the tests that charge statements at a localstripe process set up first: recipients
whose card is saved at that localstripe, one issued statement each, and, to check the outcome,
the PaymentIntents localstripe holds for a charge. Shared by the tests of charges run in
several processes at once and of charges made while localstripe is stopped."""

from datetime import date, datetime

from billing import stripe_gateway as gateway
from billing.localstripe import TEST_CARD_SUCCEEDS, localstripe_setup_intent_confirm
from billing.models import BillingAccount, Charge, Statement, StatementStatus
from billing.payments import card_setup_finish, card_setup_start
from billing.statements import statements_build
from tests.factories import LeaseFactory, OrganizationFactory, VerifiedProviderFactory, member_of


def recipient_with_card(localstripe_url: str, name: str):
    """A recipient organization, with a member, whose card (one that always pays) was saved at
    the localstripe at `localstripe_url`, as the browser would save it."""
    organization = OrganizationFactory(name=name)
    member_of(organization)
    setup = card_setup_start(organization=organization)
    localstripe_setup_intent_confirm(
        url_base=localstripe_url, client_secret=setup.client_secret, number=TEST_CARD_SUCCEEDS
    )
    card_setup_finish(organization=organization, setup_intent_id=setup.id)
    return organization


def statements_due(
    recipients, prices: list[int], *, period: tuple[date, date], won_at: datetime
) -> list[Statement]:
    """One issued statement per recipient for `period`, none charged yet: each recipient won a
    lease at `won_at`, at its price in `prices` (one per recipient)."""
    provider = VerifiedProviderFactory()
    for organization, price in zip(recipients, prices, strict=True):
        lease = LeaseFactory(winner=organization, block__provider=provider, price_minor=price)
        type(lease).objects.filter(pk=lease.pk).update(created_at=won_at)
    statements = statements_build(period_start=period[0], period_end=period[1])
    assert len(statements) == len(recipients)
    assert all(s.status == StatementStatus.ISSUED and s.amount_due_minor > 0 for s in statements)
    return statements


def payment_intents_of(charge: Charge) -> list[gateway.PaymentIntentInfo]:
    """Every PaymentIntent Stripe (here localstripe) holds for the charge: its metadata names
    the charge, so a second payment for the same statement would show here."""
    account = BillingAccount.objects.get(organization=charge.statement.organization_id)
    return gateway.payment_intents_find(
        customer_id=account.stripe_customer_id, metadata_key="charge", metadata_value=str(charge.pk)
    )
