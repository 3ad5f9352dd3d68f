"""Line items, statements and settlements: what is billed, to whom, attributed to which
provider, presented how, and that every total reconciles to the minor unit."""

from datetime import UTC, date, datetime

import pytest

from billing.models import (
    BillingAccount,
    LineItem,
    LineItemKind,
    Settlement,
    Statement,
    StatementStatus,
)
from billing.pdf import statement_pdf
from billing.statements import (
    half_up,
    line_items_record,
    settlement_csv_rows,
    settlements_build,
    statement_groups,
    statement_mark_paid,
    statements_build,
)
from tests.factories import (
    LeaseFactory,
    OfferFactory,
    OrganizationFactory,
    SegmentationProfileFactory,
    SlaBreachFactory,
    UsageRecordFactory,
    VerifiedProviderFactory,
)

pytestmark = pytest.mark.django_db

NOVEMBER = (date(2026, 11, 1), date(2026, 12, 1))
IN_NOVEMBER = datetime(2026, 11, 10, 12, tzinfo=UTC)


def lease_won(organization, provider, price, *, currency="USD"):
    lease = LeaseFactory(
        winner=organization,
        block__provider=provider,
        price_minor=price,
        currency=currency,
    )
    type(lease).objects.filter(pk=lease.pk).update(created_at=IN_NOVEMBER)
    lease.refresh_from_db()
    return lease


def usage(lease, bytes_, *, steps=(), kind="segment", provider=None, profile=None):
    record = UsageRecordFactory(
        job__organization=lease.winner,
        job__lease=lease,
        job__profile=profile,
        lease=lease,
        provider=provider or lease.block.provider,
        work_item__provider=provider or lease.block.provider,
        work_item__steps=[{"service": service} for service in steps],
        work_item__kind=kind,
        kind=kind,
        bytes=bytes_,
    )
    type(record).objects.filter(pk=record.pk).update(recorded_at=IN_NOVEMBER)
    return record


# --- line items ------------------------------------------------------------------------------


def test_a_won_auction_is_billed_once_to_its_winner_for_the_blocks_provider():
    buyer, provider = OrganizationFactory(), VerifiedProviderFactory(legal_name="North Ltd")
    lease = lease_won(buyer, provider, 12_345)

    assert line_items_record() == 1
    assert line_items_record() == 0  # recorded once

    (line,) = LineItem.objects.all()
    assert (line.organization, line.provider, line.kind) == (buyer, provider, LineItemKind.AUCTION)
    assert (line.amount_minor, line.currency, line.lease) == (12_345, "USD", lease)
    assert "North Ltd" in line.description


def test_usage_is_priced_by_the_services_the_segment_ran_at_its_provider():
    buyer, provider = OrganizationFactory(), VerifiedProviderFactory()
    OfferFactory(provider=provider, service="anonymize-ip", price_per_gb_minor=40)
    OfferFactory(provider=provider, service="dedupe", price_per_gb_minor=25)
    lease = lease_won(buyer, provider, 1000)
    priced = usage(lease, 3_000_000_000, steps=["anonymize-ip", "dedupe"])
    usage(lease, 5_000_000_000)  # no processing: nothing metered to price

    line_items_record()

    line = LineItem.objects.get(kind=LineItemKind.USAGE)
    assert line.usage_record == priced
    assert line.amount_minor == 3 * (40 + 25)
    assert LineItem.objects.filter(kind=LineItemKind.USAGE).count() == 1


def test_subcontracted_work_is_billed_for_the_subcontractor():
    buyer, provider, partner = (
        OrganizationFactory(),
        VerifiedProviderFactory(),
        VerifiedProviderFactory(),
    )
    OfferFactory(provider=partner, service="anonymize-ip", price_per_gb_minor=100)
    lease = lease_won(buyer, provider, 1000)
    usage(lease, 2_500_000_000, steps=["anonymize-ip"], kind="subcontract", provider=partner)

    line_items_record()

    line = LineItem.objects.get(kind=LineItemKind.SUBCONTRACT)
    assert (line.provider, line.amount_minor) == (partner, 250)


def test_usage_amounts_round_half_up_to_the_minor_unit():
    assert half_up(5, 2) == 3 and half_up(-5, 2) == -3 and half_up(4, 3) == 1
    buyer, provider = OrganizationFactory(), VerifiedProviderFactory()
    OfferFactory(provider=provider, service="dedupe", price_per_gb_minor=1)
    lease = lease_won(buyer, provider, 1000)
    usage(lease, 1_500_000_000, steps=["dedupe"])  # 1.5 minor units
    usage(lease, 1_499_999_999, steps=["dedupe"])  # 1.499… minor units

    line_items_record()

    amounts = sorted(LineItem.objects.filter(kind="usage").values_list("amount_minor", flat=True))
    assert amounts == [1, 2]


def test_an_sla_breach_credits_the_lease_price_in_proportion_to_the_shortfall():
    buyer, provider = OrganizationFactory(), VerifiedProviderFactory()
    lease = lease_won(buyer, provider, 10_000)
    SlaBreachFactory(
        lease=lease,
        job__lease=lease,
        job__organization=buyer,
        guaranteed_mbps=100,
        measured_mbps=75.0,
    )
    other = lease_won(buyer, provider, 999)
    SlaBreachFactory(
        lease=other,
        job__lease=other,
        job__organization=buyer,
        guaranteed_mbps=100,
        measured_mbps=0.0,
    )

    line_items_record()

    credits = dict(
        LineItem.objects.filter(kind=LineItemKind.SLA_CREDIT).values_list(
            "lease_id", "amount_minor"
        )
    )
    assert credits == {lease.pk: -2_500, other.pk: -999}


# --- statements ---------------------------------------------------------------------------------


def two_providers_bill(buyer, *, currency="USD"):
    north = VerifiedProviderFactory(legal_name="North Ltd")
    south = VerifiedProviderFactory(legal_name="South Ltd")
    lease_won(buyer, north, 10_001, currency=currency)
    lease_won(buyer, south, 2_502, currency=currency)
    breached = lease_won(buyer, south, 1_000, currency=currency)
    SlaBreachFactory(
        lease=breached,
        job__lease=breached,
        job__organization=buyer,
        guaranteed_mbps=100,
        measured_mbps=50.0,
    )
    return north, south


def test_a_consolidated_statement_groups_every_providers_lines_and_reconciles():
    buyer = OrganizationFactory()
    north, south = two_providers_bill(buyer)

    (statement,) = statements_build(period_start=NOVEMBER[0], period_end=NOVEMBER[1])

    assert statement.provider is None and statement.presentation == "consolidated"
    assert (statement.charges_minor, statement.credits_minor) == (10_001 + 2_502 + 1_000, -500)
    assert statement.total_minor == 13_003
    assert statement.status == StatementStatus.ISSUED
    groups = statement_groups(statement)
    assert [group.provider for group in groups] == [north, south]
    assert [group.subtotal_minor for group in groups] == [10_001, 2_502 + 1_000 - 500]
    assert sum(group.subtotal_minor for group in groups) == statement.total_minor
    # built again: nothing is billed twice
    assert statements_build(period_start=NOVEMBER[0], period_end=NOVEMBER[1]) == []
    assert Statement.objects.count() == 1


def test_per_provider_statements_give_the_same_grand_total_as_a_consolidated_one():
    consolidated_buyer = OrganizationFactory()
    per_provider_buyer = OrganizationFactory()
    BillingAccount.objects.create(organization=per_provider_buyer, presentation="per_provider")
    two_providers_bill(consolidated_buyer)
    two_providers_bill(per_provider_buyer)

    statements_build(period_start=NOVEMBER[0], period_end=NOVEMBER[1])

    consolidated = Statement.objects.get(organization=consolidated_buyer)
    separate = Statement.objects.filter(organization=per_provider_buyer)
    assert separate.count() == 2
    assert {s.provider.legal_name for s in separate} == {"North Ltd", "South Ltd"}
    assert all(s.presentation == "per_provider" for s in separate)
    assert sum(s.total_minor for s in separate) == consolidated.total_minor


def test_a_jobs_profile_can_ask_for_its_providers_own_statement():
    buyer, provider = OrganizationFactory(), VerifiedProviderFactory()
    OfferFactory(provider=provider, service="dedupe", price_per_gb_minor=100)
    lease = lease_won(buyer, provider, 5_000)
    profile = SegmentationProfileFactory(organization=buyer, billing_presentation="per_provider")
    usage(lease, 2 * 10**9, steps=["dedupe"], profile=profile)

    statements = statements_build(period_start=NOVEMBER[0], period_end=NOVEMBER[1])

    kinds = {(s.presentation, s.total_minor) for s in statements}
    assert kinds == {("consolidated", 5_000), ("per_provider", 200)}


def test_currencies_are_never_mixed_in_one_total():
    buyer = OrganizationFactory()
    provider = VerifiedProviderFactory()
    lease_won(buyer, provider, 1_000, currency="USD")
    lease_won(buyer, provider, 700, currency="EUR")

    statements = statements_build(period_start=NOVEMBER[0], period_end=NOVEMBER[1])

    assert sorted((s.currency, s.total_minor) for s in statements) == [("EUR", 700), ("USD", 1_000)]


def test_a_line_recorded_after_its_period_was_issued_joins_the_next_statement():
    buyer, provider = OrganizationFactory(), VerifiedProviderFactory()
    lease_won(buyer, provider, 1_000)
    statements_build(period_start=NOVEMBER[0], period_end=NOVEMBER[1])
    lease_won(buyer, provider, 400)  # dated in November, recorded after

    assert statements_build(period_start=NOVEMBER[0], period_end=NOVEMBER[1]) == []
    (december,) = statements_build(period_start=NOVEMBER[1], period_end=date(2027, 1, 1))
    assert december.total_minor == 400
    assert LineItem.objects.filter(statement__isnull=True).count() == 0


def test_credits_beyond_the_charges_leave_nothing_due():
    buyer, provider = OrganizationFactory(), VerifiedProviderFactory()
    lease = lease_won(buyer, provider, 0)
    LineItem.objects.create(
        organization=buyer,
        provider=provider,
        kind=LineItemKind.SLA_CREDIT,
        description="goodwill",
        amount_minor=-300,
        currency="USD",
        presentation="consolidated",
        occurred_at=IN_NOVEMBER,
        source="test:credit",
        lease=lease,
    )
    statement = next(s for s in statements_build(period_start=NOVEMBER[0], period_end=NOVEMBER[1]))
    assert (statement.charges_minor, statement.credits_minor) == (0, -300)
    assert statement.carried_minor == 300
    assert statement.total_minor == 0
    assert statement.status == StatementStatus.NOTHING_DUE
    assert statement.amount_due_minor == 0


def test_credits_beyond_the_charges_are_carried_to_the_next_statement(settings):
    settings.EXCHANGE_FEE_BPS = 1000
    buyer, provider = OrganizationFactory(), VerifiedProviderFactory()
    lease = lease_won(buyer, provider, 1_000)
    LineItem.objects.create(
        organization=buyer,
        provider=provider,
        kind=LineItemKind.SLA_CREDIT,
        description="credit for a slow job",
        amount_minor=-1_400,
        currency="USD",
        presentation="consolidated",
        occurred_at=IN_NOVEMBER,
        source="test:credit",
        lease=lease,
    )
    (november,) = statements_build(period_start=NOVEMBER[0], period_end=NOVEMBER[1])
    assert (november.charges_minor, november.credits_minor) == (1_000, -1_400)
    assert (november.carried_minor, november.total_minor) == (400, 0)
    (group,) = statement_groups(november)
    assert group.subtotal_minor == 0  # the provider's lines, carry included, net to nothing

    # December: a new lease of 2,500; the 400 carried comes off it
    december_lease = LeaseFactory(
        winner=buyer, block__provider=provider, price_minor=2_500, currency="USD"
    )
    type(december_lease).objects.filter(pk=december_lease.pk).update(
        created_at=datetime(2026, 12, 5, tzinfo=UTC)
    )
    DECEMBER = (NOVEMBER[1], date(2027, 1, 1))
    (december,) = statements_build(period_start=DECEMBER[0], period_end=DECEMBER[1])
    assert (december.charges_minor, december.credits_minor) == (2_500, -400)
    assert (december.total_minor, december.amount_due_minor) == (2_100, 2_100)
    carried_in = december.lines.get(kind=LineItemKind.CREDIT_CARRIED_IN)
    assert carried_in.description == f"Credit carried from statement {november.number}"
    assert statements_build(period_start=DECEMBER[0], period_end=DECEMBER[1]) == []
    assert LineItem.objects.filter(kind=LineItemKind.CREDIT_CARRIED_IN).count() == 1

    # the provider bears the credit once: 0 for November, 2,100 gross for December
    statement_mark_paid(statement=december, paid_at=datetime(2026, 12, 20, tzinfo=UTC))
    gross = [
        (s.period_start, s.gross_minor)
        for period in (NOVEMBER, DECEMBER)
        for s in settlements_build(period_start=period[0], period_end=period[1])
    ]
    assert gross == [(NOVEMBER[0], 0), (DECEMBER[0], 2_100)]


def test_a_consolidated_carry_is_taken_from_the_providers_that_owe_credits():
    buyer = OrganizationFactory()
    north, south, west = (VerifiedProviderFactory() for _ in range(3))
    lease_won(buyer, north, 500)
    for provider, credit in ((south, -600), (west, -250)):
        LineItem.objects.create(
            organization=buyer,
            provider=provider,
            kind=LineItemKind.SLA_CREDIT,
            description="credit",
            amount_minor=credit,
            currency="USD",
            presentation="consolidated",
            occurred_at=IN_NOVEMBER,
            source=f"test:credit:{provider.pk}",
        )
    (statement,) = statements_build(period_start=NOVEMBER[0], period_end=NOVEMBER[1])

    assert (statement.carried_minor, statement.total_minor) == (350, 0)
    carried = dict(
        LineItem.objects.filter(kind=LineItemKind.CREDIT_CARRIED_IN).values_list(
            "provider_id", "amount_minor"
        )
    )
    assert carried == {south.pk: -350}  # the largest credit first, never more than its net
    subtotals = {g.provider.pk: g.subtotal_minor for g in statement_groups(statement)}
    assert subtotals == {north.pk: 500, south.pk: -250, west.pk: -250}
    assert sum(subtotals.values()) == statement.total_minor


def test_a_per_provider_carry_goes_to_that_providers_next_statement():
    buyer, provider = OrganizationFactory(), VerifiedProviderFactory()
    BillingAccount.objects.create(organization=buyer, presentation="per_provider")
    LineItem.objects.create(
        organization=buyer,
        provider=provider,
        kind=LineItemKind.SLA_CREDIT,
        description="credit",
        amount_minor=-90,
        currency="EUR",
        presentation="per_provider",
        occurred_at=IN_NOVEMBER,
        source="test:credit",
    )
    (november,) = statements_build(period_start=NOVEMBER[0], period_end=NOVEMBER[1])
    assert november.provider == provider and november.carried_minor == 90

    line = LineItem.objects.get(kind=LineItemKind.CREDIT_CARRIED_IN)
    assert (line.presentation, line.currency, line.provider) == ("per_provider", "EUR", provider)
    assert line.statement is None and line.occurred_at == datetime(2026, 12, 1, tzinfo=UTC)


def test_the_pdf_carries_the_statements_number_lines_and_total():
    buyer = OrganizationFactory(name="Acme Analytics")
    two_providers_bill(buyer)
    (statement,) = statements_build(period_start=NOVEMBER[0], period_end=NOVEMBER[1])

    pdf = statement_pdf(statement, statement_groups(statement))

    assert pdf.startswith(b"%PDF")
    assert statement.number.encode() in pdf
    assert b"Acme Analytics" in pdf and b"North Ltd" in pdf
    assert b"130.03 USD" in pdf  # the total
    assert b"-5.00 USD" in pdf  # the SLA credit


# --- settlements ----------------------------------------------------------------------------------


def test_settlements_owe_each_provider_its_paid_lines_net_of_the_fee(settings):
    settings.EXCHANGE_FEE_BPS = 1250  # 12.5 %
    buyer, unpaid_buyer = OrganizationFactory(), OrganizationFactory()
    north, south = two_providers_bill(buyer)
    two_providers_bill(unpaid_buyer)
    statements_build(period_start=NOVEMBER[0], period_end=NOVEMBER[1])
    statement_mark_paid(statement=Statement.objects.get(organization=buyer))

    settlements = settlements_build(period_start=NOVEMBER[0], period_end=NOVEMBER[1])

    by_provider = {s.provider_id: s for s in settlements}
    assert set(by_provider) == {north.pk, south.pk}
    north_settlement = by_provider[north.pk]
    assert (north_settlement.gross_minor, north_settlement.fee_minor) == (10_001, 1_250)  # 1250.125
    assert north_settlement.net_minor == 8_751
    south_settlement = by_provider[south.pk]
    assert south_settlement.gross_minor == 2_502 + 1_000 - 500
    assert south_settlement.fee_minor == half_up(3_002 * 1250, 10_000)
    assert settlements_build(period_start=NOVEMBER[0], period_end=NOVEMBER[1]) == []
    assert Settlement.objects.count() == 2

    rows = settlement_csv_rows(south_settlement)
    assert rows[0] == [
        "statement",
        "occurred_at",
        "kind",
        "description",
        "amount_minor",
        "currency",
    ]
    amounts = [int(row[4]) for row in rows[1:-3]]
    assert sum(amounts) == south_settlement.gross_minor
    assert rows[-1] == ["net", "", "", "", str(south_settlement.net_minor), "USD"]


def test_a_statement_paid_after_its_period_was_settled_is_settled_in_the_next(settings):
    settings.EXCHANGE_FEE_BPS = 1000
    buyer, late_buyer = OrganizationFactory(), OrganizationFactory()
    provider = VerifiedProviderFactory()
    lease_won(buyer, provider, 1_000)
    lease_won(late_buyer, provider, 700)
    statements_build(period_start=NOVEMBER[0], period_end=NOVEMBER[1])
    on_time = Statement.objects.get(organization=buyer)
    statement_mark_paid(statement=on_time, paid_at=datetime(2026, 11, 30, tzinfo=UTC))
    (november,) = settlements_build(period_start=NOVEMBER[0], period_end=NOVEMBER[1])
    assert (november.gross_minor, november.lines_count) == (1_000, 1)

    # the other statement's charge succeeds on a retry in December
    late = Statement.objects.get(organization=late_buyer)
    statement_mark_paid(statement=late, paid_at=datetime(2026, 12, 3, tzinfo=UTC))
    assert settlements_build(period_start=NOVEMBER[0], period_end=NOVEMBER[1]) == []
    (december,) = settlements_build(period_start=NOVEMBER[1], period_end=date(2027, 1, 1))
    assert (december.gross_minor, december.fee_minor, december.net_minor) == (700, 70, 630)
    rows = settlement_csv_rows(november)
    assert [int(row[4]) for row in rows[1:-3]] == [1_000]  # the CSV is what the gross adds up


def test_sla_credits_of_a_lease_never_exceed_its_price_together():
    buyer, provider = OrganizationFactory(), VerifiedProviderFactory()
    lease = lease_won(buyer, provider, 5_000)
    for _ in range(3):  # three slow jobs under the same lease, each 70 % short
        SlaBreachFactory(
            lease=lease,
            job__lease=lease,
            job__organization=buyer,
            guaranteed_mbps=100,
            measured_mbps=30.0,
        )

    line_items_record()

    credits = LineItem.objects.filter(kind=LineItemKind.SLA_CREDIT, lease=lease)
    assert sorted(credits.values_list("amount_minor", flat=True)) == [-3_500, -1_500, 0]
    assert sum(credits.values_list("amount_minor", flat=True)) == -5_000


def test_the_lines_of_a_statement_with_nothing_due_are_settled_as_they_stand():
    buyer = OrganizationFactory()
    north, south = VerifiedProviderFactory(), VerifiedProviderFactory()
    lease_won(buyer, north, 300)
    LineItem.objects.create(
        organization=buyer,
        provider=south,
        kind=LineItemKind.SLA_CREDIT,
        description="credit from an earlier breach",
        amount_minor=-600,
        currency="USD",
        presentation="consolidated",
        occurred_at=IN_NOVEMBER,
        source="test:south-credit",
    )
    (statement,) = statements_build(period_start=NOVEMBER[0], period_end=NOVEMBER[1])
    assert statement.status == StatementStatus.NOTHING_DUE

    settlements = settlements_build(period_start=NOVEMBER[0], period_end=date(2027, 1, 1))

    # south's credit beyond the charges (300) is carried to the next statement: it bears
    # the part used here now, the rest when it is used
    gross = {s.provider_id: s.gross_minor for s in settlements}
    assert gross == {north.pk: 300, south.pk: -300}
    assert statement.carried_minor == 300


def test_names_in_a_statement_pdf_are_text_not_markup():
    buyer = OrganizationFactory(name="Acme <b>Analytics")
    lease_won(buyer, VerifiedProviderFactory(legal_name="North <i>& Co"), 1_000)
    (statement,) = statements_build(period_start=NOVEMBER[0], period_end=NOVEMBER[1])

    pdf = statement_pdf(statement, statement_groups(statement))

    assert pdf.startswith(b"%PDF")
    assert b"(Acme <)" in pdf and b"(North <)" in pdf  # shown as typed, not as markup


def test_a_carried_credit_joins_the_statement_that_charges_when_the_presentation_changed():
    buyer, provider = OrganizationFactory(), VerifiedProviderFactory()
    LineItem.objects.create(
        organization=buyer,
        provider=provider,
        kind=LineItemKind.SLA_CREDIT,
        description="credit",
        amount_minor=-90,
        currency="USD",
        presentation="per_provider",
        occurred_at=IN_NOVEMBER,
        source="test:credit",
    )
    statements_build(period_start=NOVEMBER[0], period_end=NOVEMBER[1])
    # in December the buyer's lines are consolidated: the credit is used there
    december_lease = LeaseFactory(
        winner=buyer, block__provider=provider, price_minor=1_000, currency="USD"
    )
    type(december_lease).objects.filter(pk=december_lease.pk).update(
        created_at=datetime(2026, 12, 5, tzinfo=UTC)
    )

    (december,) = statements_build(period_start=NOVEMBER[1], period_end=date(2027, 1, 1))

    assert december.provider is None and december.total_minor == 910
    # and with nothing charged, a carried credit waits: no statement of credits alone
    assert statements_build(period_start=date(2027, 1, 1), period_end=date(2027, 2, 1)) == []
