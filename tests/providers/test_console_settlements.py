"""Settlements in the provider console: a provider sees its own per period and currency (gross,
the exchange's fee, net), read-only, and downloads each as CSV; another provider's is a 404."""

import csv
import io

import pytest
from django.test import Client
from django.urls import reverse

from billing.models import Settlement, Statement
from billing.statements import settlements_build, statement_mark_paid, statements_build
from tests.billing.test_statements import NOVEMBER, lease_won
from tests.factories import OrganizationFactory, VerifiedProviderFactory, member_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def settled(settings):
    """Providers A and B, each settled for November at a 10 % fee (a buyer paid A 10_001 and
    2_500, and B 3_000); A's owner is signed in."""
    settings.EXCHANGE_FEE_BPS = 1000
    a = VerifiedProviderFactory(legal_name="Alpha Ltd")
    b = VerifiedProviderFactory(legal_name="Beta Ltd")
    buyer = OrganizationFactory()
    lease_won(buyer, a, 10_001)
    lease_won(buyer, a, 2_500)
    lease_won(buyer, b, 3_000)
    (statement,) = statements_build(period_start=NOVEMBER[0], period_end=NOVEMBER[1])
    statement_mark_paid(statement=statement)
    settlements_build(period_start=NOVEMBER[0], period_end=NOVEMBER[1])
    client = Client()
    client.force_login(member_of(a.organization))
    return client, Settlement.objects.get(provider=a), Settlement.objects.get(provider=b)


def test_a_provider_sees_only_its_own_settlements_with_gross_fee_and_net(settled):
    client, own, _theirs = settled

    response = client.get(reverse("console:billing_settlement_changelist"))

    assert response.status_code == 200
    assert [s.pk for s in response.context["cl"].result_list] == [own.pk]
    html = response.content.decode()
    assert "2026-11-01 to 2026-11-30" in html
    assert "125.01 USD" in html  # gross
    assert "12.50 USD" in html  # the exchange's fee (1250.1, half up)
    assert "112.51 USD" in html  # net
    assert "30.00 USD" not in html  # provider B's gross
    assert reverse("console:billing_settlement_csv", args=[own.pk]) in html


def test_a_settlement_is_read_only_in_the_console(settled):
    client, own, _theirs = settled

    response = client.get(reverse("console:billing_settlement_change", args=[own.pk]))

    assert response.status_code == 200
    assert "10 %" in response.content.decode()
    assert client.post(reverse("console:billing_settlement_add")).status_code == 403
    client.post(reverse("console:billing_settlement_change", args=[own.pk]), {"gross_minor": "1"})
    client.post(reverse("console:billing_settlement_delete", args=[own.pk]), {"post": "yes"})
    own.refresh_from_db()
    assert own.gross_minor == 12_501


def test_a_provider_downloads_its_settlement_as_csv_that_adds_up_to_the_gross(settled):
    client, own, _theirs = settled

    response = client.get(reverse("console:billing_settlement_csv", args=[own.pk]))

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    header, *rows = csv.reader(io.StringIO(response.content.decode()))
    assert header == ["statement", "occurred_at", "kind", "description", "amount_minor", "currency"]
    lines, totals = rows[:-3], {row[0]: int(row[4]) for row in rows[-3:]}
    statement = Statement.objects.get()
    assert [(row[0], int(row[4])) for row in lines] == [
        (statement.number, 10_001),
        (statement.number, 2_500),
    ]
    assert sum(int(row[4]) for row in lines) == totals["gross"] == own.gross_minor
    assert (totals["fee"], totals["net"]) == (own.fee_minor, own.net_minor)


def test_another_providers_settlement_is_404_in_the_console(settled):
    client, _own, theirs = settled

    for name in ("change", "history", "csv"):
        url = reverse(f"console:billing_settlement_{name}", args=[theirs.pk])
        assert client.get(url).status_code == 404, url
    assert client.get(reverse("console:billing_settlement_csv", args=["x"])).status_code == 404
