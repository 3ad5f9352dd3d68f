"""Cards and bank authentication in Chromium, against the session's localstripe: a recipient
types a test card into localstripe's fake card Element on /billing/cards/ and the card is
saved, and a recipient refused a bid for want of a card saves one and then bids; a card
declined at attach shows the page's error and saves nothing; a charge that needs
authentication is confirmed on the authenticate page through localstripe's 3D Secure modal and
the statement is paid.

The pages run in the real server (`manage.py serve`) in a process of its own on the test
database (`transaction=True`, so it sees the test's rows), told where localstripe is through
its environment; its Stripe.js is localstripe's, loaded from `stripe_js_url()`."""

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from auctions.models import Bid
from billing.localstripe import (
    TEST_CARD_DECLINED_AT_ATTACH,
    TEST_CARD_REQUIRES_AUTHENTICATION,
    TEST_CARD_SUCCEEDS,
)
from billing.models import Card, Charge, ChargeStatus, StatementStatus
from billing.payments import statement_charge
from billing.statements import statements_build
from marketplace.models import OrganizationKind
from tests.billing.test_statements import NOVEMBER, lease_won
from tests.factories import (
    AuctionFactory,
    OrganizationFactory,
    VerifiedProviderFactory,
    member_of,
)
from tests.support.browser import page_signed_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CARDS = "/billing/cards/"
NO_CARD = "No card yet: add one to bid and to pay your statements."
EXP_MONTH, EXP_YEAR = "12", "30"  # localstripe's element prepends "20" to the year
AUTHENTICATION_SECONDS = 20  # localstripe's answers, then the server reads Stripe back


@pytest.fixture
def card_server(localstripe_server):
    """The server on localstripe (tests/browser/conftest.py); its address."""
    return localstripe_server


@pytest.fixture
def chromium(card_server, chromium_browser):
    """Debian's Chromium (closed before the server stops)."""
    return chromium_browser


@pytest.fixture
def recipient():
    """A recipient organization and its owner."""
    organization = OrganizationFactory(name="Acme Analytics", kind=OrganizationKind.RECIPIENT)
    return organization, member_of(organization)


def _live(page) -> None:
    """Wait for the auction page's websocket: a bid sent before it is posted as a form, and
    its answer is the page's message rather than the live feedback."""
    expect(page.locator("#auction-live")).to_have_attribute("data-connection", "live")


def _card_typed(page, number: str, *, name: str = "Ada Lovelace") -> None:
    """Fill the name and localstripe's five card inputs, once its Element is mounted."""
    element = page.get_by_test_id("card-element")
    expect(element.locator("input")).to_have_count(5)
    page.get_by_label("Name on the card").fill(name)
    element.get_by_placeholder("number", exact=True).fill(number)
    element.get_by_placeholder("exp_month", exact=True).fill(EXP_MONTH)
    element.get_by_placeholder("exp_year", exact=True).fill(EXP_YEAR)
    element.get_by_placeholder("cvc", exact=True).fill("123")
    element.get_by_placeholder("postal_code", exact=True).fill("75001")


def _saved_message(page, last4: str):
    return page.get_by_role("status").filter(has_text=f"•••• {last4} saved.")


def _card_rows(page):
    return page.get_by_test_id("cards").locator("tbody tr")


def test_a_card_typed_into_the_element_is_saved_and_listed_as_the_default(
    card_server, chromium, recipient
):
    organization, user = recipient
    page = page_signed_in(chromium, card_server, user, CARDS)
    expect(_card_rows(page)).to_have_text([NO_CARD])

    _card_typed(page, TEST_CARD_SUCCEEDS)
    page.get_by_role("button", name="Save the card").click()

    expect(_saved_message(page, "4242")).to_be_visible()
    expect(page).to_have_url(f"{card_server}{CARDS}")
    rows = _card_rows(page)
    expect(rows).to_have_count(1)
    expect(rows.first.locator("td")).to_have_text(
        ["Visa •••• 4242", f"{EXP_MONTH}/20{EXP_YEAR}", "default", "Remove"]
    )
    expect(page.locator("#card-errors")).to_be_hidden()

    card = Card.objects.get()
    assert card.account.organization == organization
    assert (card.brand.lower(), card.last4, card.is_default) == ("visa", "4242", True)
    assert (card.exp_month, card.exp_year) == (int(EXP_MONTH), 2000 + int(EXP_YEAR))
    assert card.payment_method_id.startswith("pm_")


def test_a_recipient_refused_for_want_of_a_card_saves_one_and_then_bids(
    card_server, chromium, recipient
):
    organization, user = recipient
    auction = AuctionFactory(closes_at=timezone.now() + timedelta(minutes=10))
    path = f"/auctions/{auction.pk}/"
    page = page_signed_in(chromium, card_server, user, path)
    _live(page)
    page.get_by_label("Your bid (USD)").fill("10.50")
    page.get_by_role("button", name="Place bid").click()
    expect(page.get_by_test_id("bid-feedback")).to_contain_text("Add a card on file before bidding")
    assert not Bid.objects.exists()

    page.goto(f"{card_server}{CARDS}")
    _card_typed(page, TEST_CARD_SUCCEEDS)
    page.get_by_role("button", name="Save the card").click()
    expect(_saved_message(page, "4242")).to_be_visible()

    page.goto(f"{card_server}{path}")
    _live(page)
    page.get_by_label("Your bid (USD)").fill("10.50")
    page.get_by_role("button", name="Place bid").click()
    expect(page.get_by_test_id("bid-feedback")).to_contain_text("You are leading at 10.50 USD")
    bid = Bid.objects.get(auction=auction)
    assert (bid.bidder, bid.amount_minor) == (organization, 1050)


def test_a_card_declined_at_attach_shows_the_error_and_is_not_saved(
    card_server, chromium, recipient
):
    _, user = recipient
    page = page_signed_in(chromium, card_server, user, CARDS)

    _card_typed(page, TEST_CARD_DECLINED_AT_ATTACH)
    page.get_by_role("button", name="Save the card").click()

    errors = page.locator("#card-errors")
    expect(errors).to_be_visible()
    expect(errors).to_contain_text("declined")
    expect(page.get_by_role("button", name="Save the card")).to_be_enabled()
    # the page did not post the SetupIntent back: still the form, nothing saved
    expect(page).to_have_url(f"{card_server}{CARDS}")
    expect(page.get_by_role("status")).to_have_count(0)
    expect(_card_rows(page)).to_have_text([NO_CARD])
    assert not Card.objects.exists()


def test_a_charge_that_needs_authentication_is_confirmed_with_the_bank_and_paid(
    card_server, chromium, recipient
):
    organization, user = recipient
    page = page_signed_in(chromium, card_server, user, CARDS)

    # Saving the card: localstripe asks for authentication when it is set up.
    _card_typed(page, TEST_CARD_REQUIRES_AUTHENTICATION)
    page.get_by_role("button", name="Save the card").click()
    complete = page.get_by_role("button", name="Complete authentication")
    saved = _saved_message(page, "3155")
    expect(complete.or_(saved)).to_be_visible()
    if complete.is_visible():
        complete.click()
    expect(saved).to_be_visible()
    card = Card.objects.get()
    assert (card.last4, card.is_default) == ("3155", True)

    # A statement, charged off session: the card needs authentication again.
    lease_won(organization, VerifiedProviderFactory(), 12_345)
    (statement,) = statements_build(period_start=NOVEMBER[0], period_end=NOVEMBER[1])
    assert statement_charge(statement_id=statement.pk) == ChargeStatus.REQUIRES_ACTION
    charge = Charge.objects.get()
    assert charge.payment_method_id == card.payment_method_id

    page.goto(f"{card_server}/billing/charges/{charge.pk}/authenticate/")
    expect(page.get_by_role("heading", level=1)).to_have_text(
        f"Confirm the payment of statement {statement.number}"
    )
    page.get_by_role("button", name="Confirm with my bank").click()
    page.get_by_role("button", name="Complete authentication").click()

    expect(page).to_have_url(
        f"{card_server}/billing/statements/{statement.number}/",
        timeout=AUTHENTICATION_SECONDS * 1000,
    )
    expect(page.get_by_role("status").filter(has_text="is paid")).to_have_text(
        f"Statement {statement.number} is paid."
    )
    expect(page.get_by_test_id("statement-status")).to_have_text("Paid")
    expect(page.get_by_test_id("charge")).to_have_text("Payment: Paid")
    expect(page.locator("#authenticate-errors")).to_have_count(0)

    charge.refresh_from_db()
    statement.refresh_from_db()
    assert charge.status == ChargeStatus.SUCCEEDED and charge.succeeded_at is not None
    assert statement.status == StatementStatus.PAID and statement.paid_at is not None
