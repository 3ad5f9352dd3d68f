"""The billing API: statements (list, detail grouped by provider, PDF), the acting provider's
settlements (list, detail, CSV) and the cards on file (list, remove, against a real
localstripe), each scoped to the caller's organization, with the 401/403/404 cases."""

import csv
import io
import socket
from datetime import UTC, date, datetime, timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from auctions.models import Lease
from billing import stripe_gateway as gateway
from billing.localstripe import TEST_CARD_DECLINED_AT_CHARGE, TEST_CARD_SUCCEEDS
from billing.models import BillingAccount, Card, Charge, ChargeStatus, Settlement
from billing.statements import settlements_build, statement_mark_paid, statements_build
from marketplace.models import ApiKeyScope
from tests.api.helpers import assert_problem
from tests.billing.test_payments import card_saved
from tests.billing.test_statements import NOVEMBER, lease_won
from tests.factories import OrganizationFactory, SlaBreachFactory, UserFactory

pytestmark = pytest.mark.django_db

STATEMENTS = "/api/v1/statements/"
SETTLEMENTS = "/api/v1/settlements/"
CARDS = "/api/v1/cards/"
DECEMBER = (date(2026, 12, 1), date(2027, 1, 1))


def statement_url(statement, suffix=""):
    return f"{STATEMENTS}{statement.number}/{suffix}"


def settlement_url(settlement, suffix=""):
    return f"{SETTLEMENTS}{settlement.pk}/{suffix}"


def csv_rows(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(response.content.decode())))


@pytest.fixture
def recipient_client(recipient_org, issue_key, key_client) -> APIClient:
    return key_client(issue_key(recipient_org))


@pytest.fixture
def other_recipient(db):
    return OrganizationFactory(name="Other Buyer")


@pytest.fixture
def other_client(other_recipient, issue_key, key_client) -> APIClient:
    return key_client(issue_key(other_recipient))


@pytest.fixture
def november(recipient_org, provider_a, provider_b) -> dict:
    """The recipient's November statements, by currency. In USD: provider A's two leases
    (10_001 and 1_000, the second with an SLA credit of 500) and provider B's (2_502); in
    EUR: provider A's lease of 700."""
    lease_won(recipient_org, provider_a, 10_001)
    breached = lease_won(recipient_org, provider_a, 1_000)
    SlaBreachFactory(
        lease=breached,
        job__lease=breached,
        job__organization=recipient_org,
        guaranteed_mbps=100,
        measured_mbps=50.0,
    )
    lease_won(recipient_org, provider_b, 2_502)
    lease_won(recipient_org, provider_a, 700, currency="EUR")
    statements = statements_build(period_start=NOVEMBER[0], period_end=NOVEMBER[1])
    return {statement.currency: statement for statement in statements}


@pytest.fixture
def settled(settings, november, other_recipient, provider_a, provider_b) -> dict:
    """The USD statement paid and November settled at a 10 % fee; the EUR statement and the
    other recipient's (provider A's lease of 4_000) are not paid. Settlements by provider."""
    settings.EXCHANGE_FEE_BPS = 1000
    lease_won(other_recipient, provider_a, 4_000)
    statements_build(period_start=NOVEMBER[0], period_end=NOVEMBER[1])
    statement_mark_paid(statement=november["USD"])
    settlements_build(period_start=NOVEMBER[0], period_end=NOVEMBER[1])
    return {settlement.provider: settlement for settlement in Settlement.objects.all()}


# --- authentication and permissions --------------------------------------------------------------


def test_anonymous_callers_get_401(november, settled):
    client = APIClient()
    settlement = settled[next(iter(settled))]
    for url in (
        STATEMENTS,
        statement_url(november["USD"]),
        statement_url(november["USD"], "pdf"),
        SETTLEMENTS,
        settlement_url(settlement),
        settlement_url(settlement, "csv"),
        CARDS,
    ):
        assert_problem(client.get(url), status=401, code="not_authenticated")
    assert_problem(client.delete(f"{CARDS}1/"), status=401, code="not_authenticated")


def test_a_read_scoped_key_may_read_statements_and_cards(
    november, recipient_org, issue_key, key_client
):
    client = key_client(issue_key(recipient_org, scope=ApiKeyScope.READ))

    assert client.get(STATEMENTS).json()["count"] == 2
    assert client.get(statement_url(november["USD"])).status_code == 200
    assert client.get(statement_url(november["USD"], "pdf")).status_code == 200
    assert client.get(CARDS).status_code == 200


def test_a_user_without_organization_gets_403():
    client = APIClient()
    client.force_login(UserFactory())
    for url in (STATEMENTS, SETTLEMENTS, CARDS):
        assert_problem(client.get(url), status=403, code="organization_required")


# --- statements ----------------------------------------------------------------------------------


def test_a_recipient_lists_its_statements_newest_period_first(
    november, recipient_org, provider_a, recipient_client
):
    december_lease = lease_won(recipient_org, provider_a, 900)
    Lease.objects.filter(pk=december_lease.pk).update(
        created_at=datetime(2026, 12, 10, 12, tzinfo=UTC)
    )
    (december,) = statements_build(period_start=DECEMBER[0], period_end=DECEMBER[1])

    body = recipient_client.get(STATEMENTS).json()

    assert body["count"] == 3
    numbers = [statement["number"] for statement in body["results"]]
    assert numbers == [december.number, november["EUR"].number, november["USD"].number]
    usd = body["results"][2]
    assert (usd["period_start"], usd["period_end"]) == ("2026-11-01", "2026-12-01")
    assert (usd["presentation"], usd["provider"], usd["status"]) == ("consolidated", None, "issued")
    assert (usd["charges_minor"], usd["credits_minor"]) == (10_001 + 1_000 + 2_502, -500)
    assert (usd["total_minor"], usd["amount_due_minor"], usd["currency"]) == (13_003, 13_003, "USD")
    assert usd["url"].endswith(statement_url(november["USD"]))
    assert usd["pdf_url"].endswith(statement_url(november["USD"], "pdf"))


def test_the_statement_list_filters_by_status_and_currency(november, recipient_client):
    statement_mark_paid(statement=november["EUR"])

    def numbers(**query):
        response = recipient_client.get(STATEMENTS, query)
        assert response.status_code == 200, response.content
        return [statement["number"] for statement in response.json()["results"]]

    assert numbers(currency="EUR") == [november["EUR"].number]
    assert numbers(status="paid") == [november["EUR"].number]
    assert numbers(status="issued", currency="USD") == [november["USD"].number]
    assert numbers(status="payment_failed") == []
    assert_problem(
        recipient_client.get(STATEMENTS, {"status": "settled"}),
        status=400,
        code="validation_failed",
    )


def test_the_statement_groups_lines_by_provider_and_the_subtotals_reconcile(
    november, recipient_client
):
    body = recipient_client.get(statement_url(november["USD"])).json()

    groups = body["groups"]
    assert [group["provider"]["legal_name"] for group in groups] == [
        "Alpha Networks Ltd",
        "Beta Telecom Ltd",
    ]
    assert [group["provider"]["slug"] for group in groups] == ["alpha", "beta"]
    alpha, beta = groups
    assert [line["amount_minor"] for line in alpha["lines"]] == [10_001, 1_000, -500]
    assert [line["kind"] for line in alpha["lines"]] == ["auction", "auction", "sla_credit"]
    assert alpha["subtotal_minor"] == 10_501
    assert beta["subtotal_minor"] == 2_502
    for group in groups:
        assert group["subtotal_minor"] == sum(line["amount_minor"] for line in group["lines"])
        assert {line["currency"] for line in group["lines"]} == {"USD"}
    assert sum(group["subtotal_minor"] for group in groups) == body["total_minor"] == 13_003
    assert body["charges_minor"] + body["credits_minor"] == body["total_minor"]
    assert body["charge"] is None


def test_a_per_provider_statement_names_its_provider(provider_a, recipient_client, recipient_org):
    BillingAccount.objects.create(organization=recipient_org, presentation="per_provider")
    lease_won(recipient_org, provider_a, 3_000)
    (statement,) = statements_build(period_start=NOVEMBER[0], period_end=NOVEMBER[1])

    body = recipient_client.get(statement_url(statement)).json()

    assert body["presentation"] == "per_provider"
    assert body["provider"] == {"slug": "alpha", "legal_name": "Alpha Networks Ltd"}
    assert [group["subtotal_minor"] for group in body["groups"]] == [3_000]


def test_the_statement_shows_its_charges_status(november, recipient_client):
    statement = november["USD"]
    charge = Charge.objects.create(
        statement=statement,
        amount_minor=statement.amount_due_minor,
        currency="USD",
        idempotency_key="charge-api-test",
        status=ChargeStatus.FAILED,
        attempts=1,
        declines=1,
        last_error_code="card_declined",
        next_attempt_at=timezone.now() + timedelta(days=1),
    )

    body = recipient_client.get(statement_url(statement)).json()["charge"]
    assert (body["status"], body["last_error_code"], body["attempts"]) == (
        "failed",
        "card_declined",
        1,
    )
    assert body["amount_minor"] == 13_003 and body["next_attempt_at"]
    assert body["authenticate_url"] is None

    Charge.objects.filter(pk=charge.pk).update(status=ChargeStatus.REQUIRES_ACTION)
    body = recipient_client.get(statement_url(statement)).json()["charge"]
    assert body["status"] == "requires_action"
    assert body["authenticate_url"].endswith(f"/billing/charges/{charge.pk}/authenticate/")


@pytest.mark.parametrize("accept", ["application/pdf", "application/json", "*/*", None])
def test_the_pdf_is_a_pdf_whatever_the_client_accepts(november, recipient_client, accept):
    headers = {"HTTP_ACCEPT": accept} if accept else {}

    response = recipient_client.get(statement_url(november["USD"], "pdf"), **headers)

    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert november["USD"].number in response["Content-Disposition"]
    assert response.content.startswith(b"%PDF")
    assert november["USD"].number.encode() in response.content
    assert b"130.03 USD" in response.content  # the total
    assert b"-5.00 USD" in response.content  # the SLA credit


def test_another_organizations_statement_is_404(november, other_client, client_a):
    statement = november["USD"]
    for client in (other_client, client_a):  # another buyer; the provider it bought from
        assert client.get(STATEMENTS).json()["count"] == 0
        for url in (statement_url(statement), statement_url(statement, "pdf")):
            assert_problem(client.get(url), status=404, code="statement_not_found")
    assert_problem(
        other_client.get(f"{STATEMENTS}ST-000000-00000-USD-ALL/pdf", HTTP_ACCEPT="application/pdf"),
        status=404,
        code="statement_not_found",
    )


# --- settlements ---------------------------------------------------------------------------------


def test_a_provider_lists_its_settlements_with_gross_fee_and_net(settled, client_a, provider_a):
    body = client_a.get(SETTLEMENTS).json()

    assert body["count"] == 1  # the EUR statement and the other buyer's are not paid
    (settlement,) = body["results"]
    assert (settlement["period_start"], settlement["currency"]) == ("2026-11-01", "USD")
    assert settlement["gross_minor"] == 10_001 + 1_000 - 500
    assert (settlement["fee_bps"], settlement["fee_minor"]) == (1000, 1_050)  # 1050.1
    assert settlement["net_minor"] == 10_501 - 1_050
    assert settlement["lines_count"] == 3
    assert settlement["url"].endswith(settlement_url(settled[provider_a]))
    assert settlement["csv_url"].endswith(settlement_url(settled[provider_a], "csv"))


def test_a_settlements_lines_and_csv_add_up_to_its_gross(settled, november, client_a, provider_a):
    settlement = settled[provider_a]

    body = client_a.get(settlement_url(settlement)).json()
    assert [line["amount_minor"] for line in body["lines"]] == [10_001, 1_000, -500]
    assert sum(line["amount_minor"] for line in body["lines"]) == body["gross_minor"]
    assert {line["statement"] for line in body["lines"]} == {november["USD"].number}

    response = client_a.get(settlement_url(settlement, "csv"), HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    header, *rows = csv_rows(response)
    assert header[4:] == ["amount_minor", "currency"]
    lines, totals = rows[:-3], {row[0]: int(row[4]) for row in rows[-3:]}
    assert sum(int(row[4]) for row in lines) == totals["gross"] == 10_501
    assert (totals["fee"], totals["net"]) == (1_050, 9_451)
    assert {row[5] for row in rows} == {"USD"}


def test_another_providers_settlement_is_404(settled, client_a, client_b, provider_a, provider_b):
    assert [s["gross_minor"] for s in client_b.get(SETTLEMENTS).json()["results"]] == [2_502]
    theirs = settled[provider_b]
    for url in (settlement_url(theirs), settlement_url(theirs, "csv")):
        assert_problem(client_a.get(url), status=404, code="settlement_not_found")
    for url in (f"{SETTLEMENTS}0/", f"{SETTLEMENTS}x/", f"{SETTLEMENTS}{2**70}/csv"):
        assert_problem(client_a.get(url), status=404, code="settlement_not_found")


def test_a_recipient_has_no_settlements(settled, recipient_client, provider_a):
    for url in (
        SETTLEMENTS,
        settlement_url(settled[provider_a]),
        settlement_url(settled[provider_a], "csv"),
    ):
        assert_problem(recipient_client.get(url), status=403, code="not_a_provider")


# --- cards (against localstripe) -----------------------------------------------------------------


@pytest.fixture
def cards(recipient_org, stripe_on_localstripe) -> list[Card]:
    """The recipient's cards: 4242 (the default, saved first) and 0341."""
    return [
        card_saved(recipient_org, number, stripe_on_localstripe.url)
        for number in (TEST_CARD_SUCCEEDS, TEST_CARD_DECLINED_AT_CHARGE)
    ]


def stripe_cards_of(organization) -> set[str]:
    customer_id = BillingAccount.objects.get(organization=organization).stripe_customer_id
    return {card.last4 for card in gateway.payment_methods_list(customer_id=customer_id)}


def test_a_recipient_lists_its_cards_the_default_first(cards, recipient_client, other_client):
    body = recipient_client.get(CARDS).json()

    assert [(c["last4"], c["is_default"]) for c in body["results"]] == [
        ("4242", True),
        ("0341", False),
    ]
    first = body["results"][0]
    assert first["brand"] == "visa"
    assert 1 <= first["exp_month"] <= 12 and first["exp_year"] >= 2026
    assert "payment_method_id" not in first
    assert other_client.get(CARDS).json()["count"] == 0


def test_removing_the_default_card_detaches_it_and_makes_the_next_the_default(
    cards, recipient_client, recipient_org
):
    default, other = cards

    response = recipient_client.delete(f"{CARDS}{default.pk}/")

    assert response.status_code == 204
    assert list(Card.objects.values_list("last4", "is_default")) == [("0341", True)]
    assert stripe_cards_of(recipient_org) == {"0341"}
    assert [c["id"] for c in recipient_client.get(CARDS).json()["results"]] == [other.pk]


def test_another_organizations_card_is_404_and_stays(cards, other_client, recipient_org):
    for card in cards:
        assert_problem(other_client.delete(f"{CARDS}{card.pk}/"), status=404, code="card_not_found")
    assert_problem(other_client.delete(f"{CARDS}x/"), status=404, code="card_not_found")
    assert Card.objects.count() == 2
    assert stripe_cards_of(recipient_org) == {"4242", "0341"}


def test_a_read_scoped_key_cannot_remove_a_card(cards, recipient_org, issue_key, key_client):
    client = key_client(issue_key(recipient_org, scope=ApiKeyScope.READ))

    response = client.delete(f"{CARDS}{cards[0].pk}/")

    assert_problem(response, status=403, code="insufficient_scope")
    assert Card.objects.count() == 2


def test_a_card_is_kept_when_stripe_cannot_be_reached(cards, recipient_client, settings):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    settings.LOCALSTRIPE_URL = f"http://127.0.0.1:{port}"  # nothing listens there

    response = recipient_client.delete(f"{CARDS}{cards[0].pk}/")

    assert_problem(response, status=503, code="payments_unavailable")
    assert Card.objects.count() == 2
