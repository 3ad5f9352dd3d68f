"""A buying group's charges on its payers' statements: each payer charged its share within its
cap, sponsored members paying nothing but shown as "sponsored for …" lines, a failed payer's
share left unpaid and never moved onto another payer, and the provider settled for what was
paid (real localstripe for the cards)."""

from datetime import date

import pytest
from django.utils import timezone

from auctions.groups import member_add_phone
from auctions.models import MemberRole
from auctions.services import auction_close, bid_place
from billing.localstripe import TEST_CARD_DECLINED_AT_CHARGE, TEST_CARD_SUCCEEDS
from billing.models import LineItem, LineItemKind, Statement, StatementStatus
from billing.statements import line_items_record, settlements_build, statements_build
from marketplace.models import OrganizationKind
from tests.billing.test_payments import card_saved
from tests.billing.test_statements import IN_NOVEMBER, NOVEMBER, usage
from tests.factories import (
    AuctionFactory,
    OfferFactory,
    SlaBreachFactory,
    UserFactory,
    buying_group,
    group_joined,
)

pytestmark = pytest.mark.django_db


def group_wins(group, admin, price, *, auction=None):
    auction = auction or AuctionFactory(currency=group.currency)
    bid_place(auction_id=auction.pk, bidder=group.organization, user=admin, amount_minor=price)
    type(auction).objects.filter(pk=auction.pk).update(closes_at=timezone.now())
    lease = auction_close(auction_id=auction.pk).lease
    type(lease).objects.filter(pk=lease.pk).update(created_at=IN_NOVEMBER)
    lease.refresh_from_db()
    return lease


@pytest.fixture
def cooperative():
    """A group: its admin pays (cap 60.00), Bea pays 40 % (cap 50.00), a telephone number and
    a user are sponsored."""
    group, admin, admin_member = buying_group(cap_minor=6_000)
    bea = group_joined(group, share_bps=4_000, cap_minor=5_000)
    phone = member_add_phone(group=group, by=admin, phone_number="+14155550123")
    sponsored_user = group_joined(
        group, role=MemberRole.SPONSORED, user=UserFactory(email="s@ex.io")
    )
    return group, admin, admin_member, bea, phone, sponsored_user


def statement_of(organization):
    return Statement.objects.get(organization=organization)


def test_each_payer_is_billed_its_share_with_sponsorship_lines_and_the_group_nothing(cooperative):
    group, admin, admin_member, bea, *_ = cooperative
    lease = group_wins(group, admin, 10_000)

    statements_build(period_start=NOVEMBER[0], period_end=NOVEMBER[1])

    assert not Statement.objects.filter(organization=group.organization).exists()
    admins = statement_of(admin_member.paying_organization)
    beas = statement_of(bea.paying_organization)
    # Bea pledged 40 % (at most 50.00): 40.00 of 100.00; the admin the 60 % left, its cap
    assert (admins.total_minor, beas.total_minor) == (6_000, 4_000)
    assert admins.total_minor + beas.total_minor == lease.price_minor
    # four members stand for 25.00 (+1 unit) each; the two sponsored parts are shown as such
    sponsorship = LineItem.objects.filter(kind=LineItemKind.SPONSORSHIP).order_by("pk")
    assert sum(line.amount_minor for line in sponsorship) == 5_000
    descriptions = {line.description.split(" in ")[0] for line in sponsorship}
    assert descriptions == {"Sponsored for +14155550123", "Sponsored for s@ex.io"}
    for statement in (admins, beas):
        assert sum(line.amount_minor for line in statement.lines.all()) == statement.total_minor
        assert statement.lines.filter(kind=LineItemKind.AUCTION).get().amount_minor > 0
    # split once: building again changes nothing
    statements_build(period_start=NOVEMBER[0], period_end=NOVEMBER[1])
    assert LineItem.objects.filter(group_line__isnull=False).count() == (2 + sponsorship.count())


def test_the_groups_usage_is_split_by_the_pledges_without_caps(cooperative):
    group, admin, admin_member, bea, *_ = cooperative
    lease = group_wins(group, admin, 5_000)
    OfferFactory(provider=lease.block.provider, service="dedupe", price_per_gb_minor=333)
    # a sponsored member's job: the group (its payers) pays for it
    record = usage(lease, 2 * 10**9, steps=["dedupe"])  # 2 GB at 3.33 per GB
    line_items_record()
    group_line = LineItem.objects.get(usage_record=record)
    assert (group_line.organization, group_line.amount_minor) == (group.organization, 666)

    statements_build(period_start=NOVEMBER[0], period_end=NOVEMBER[1])

    shares = LineItem.objects.filter(group_line=group_line)
    assert sum(line.amount_minor for line in shares) == group_line.amount_minor
    by_payer = {}
    for line in shares:
        by_payer[line.organization] = by_payer.get(line.organization, 0) + line.amount_minor
    # Bea weighs 40 %, the admin the 60 % left: 399.6 and 266.4, rounded by largest remainder
    assert by_payer == {admin_member.paying_organization: 400, bea.paying_organization: 266}


def test_a_failed_payer_leaves_its_share_unpaid_and_nothing_moves_to_the_other(
    committed, stripe_on_localstripe
):
    group, admin, admin_member = buying_group(cap_minor=6_000, with_card=False)
    bea = group_joined(group, cap_minor=6_000, with_card=False)
    card_saved(admin_member.paying_organization, TEST_CARD_SUCCEEDS, stripe_on_localstripe.url)
    card_saved(bea.paying_organization, TEST_CARD_DECLINED_AT_CHARGE, stripe_on_localstripe.url)
    lease = group_wins(group, admin, 9_000)
    statements_build(period_start=NOVEMBER[0], period_end=NOVEMBER[1])
    admins, beas = (
        statement_of(admin_member.paying_organization),
        statement_of(bea.paying_organization),
    )
    assert (admins.total_minor, beas.total_minor) == (4_500, 4_500)

    assert committed.statement_charge(statement_id=admins.pk) == "succeeded"
    assert committed.statement_charge(statement_id=beas.pk) == "failed"

    admins.refresh_from_db()
    beas.refresh_from_db()
    assert (admins.status, beas.status) == (StatementStatus.PAID, StatementStatus.PAYMENT_FAILED)
    assert admins.charge.amount_minor == 4_500  # never more than its share, within its cap
    # the provider is settled for what was paid only
    (settlement,) = settlements_build(period_start=NOVEMBER[0], period_end=NOVEMBER[1])
    assert settlement.provider == lease.block.provider
    assert settlement.gross_minor == 4_500


def test_a_group_organization_is_never_a_statements_recipient(cooperative):
    group, admin, *_ = cooperative
    group_wins(group, admin, 1_000)

    statements = statements_build(period_start=NOVEMBER[0], period_end=NOVEMBER[1])

    assert statements
    assert all(s.organization.kind != OrganizationKind.GROUP for s in statements)


def test_an_sla_credit_goes_back_to_the_payers_in_proportion_to_what_they_paid():
    # A pledged 90 % but at most 10.00; B covers the rest: of 100.00, A pays 10.00, B 90.00
    group, admin, a = buying_group(share_bps=9_000, cap_minor=1_000)
    b = group_joined(group, cap_minor=20_000)
    lease = group_wins(group, admin, 10_000)
    statements_build(period_start=NOVEMBER[0], period_end=NOVEMBER[1])
    # two slow jobs: 60 % then 30 % short of the guaranteed rate
    for measured in (40.0, 70.0):
        SlaBreachFactory(
            lease=lease,
            job__lease=lease,
            job__organization=group.organization,
            guaranteed_mbps=100,
            measured_mbps=measured,
        )

    statements_build(period_start=NOVEMBER[1], period_end=date(2027, 1, 1))

    credits = LineItem.objects.filter(
        kind=LineItemKind.SLA_CREDIT, group_line__isnull=True, lease=lease
    )
    assert sorted(credits.values_list("amount_minor", flat=True)) == [-6_000, -3_000]
    by_payer = {}
    for line in LineItem.objects.filter(kind=LineItemKind.SLA_CREDIT, group_line__isnull=False):
        key = line.organization_id
        by_payer[key] = by_payer.get(key, 0) + line.amount_minor
    assert by_payer == {a.paying_organization_id: -900, b.paying_organization_id: -8_100}


def test_many_small_credits_are_shared_evenly_not_always_to_the_first_payer():
    group, admin, a = buying_group(cap_minor=5_000)
    b = group_joined(group, cap_minor=5_000)
    lease = group_wins(group, admin, 10_000)
    statements_build(period_start=NOVEMBER[0], period_end=NOVEMBER[1])
    provider = lease.block.provider
    for n in range(9):  # nine credits of 1 minor unit each
        group_line = LineItem.objects.create(
            organization=group.organization,
            provider=provider,
            kind=LineItemKind.SLA_CREDIT,
            description="goodwill",
            amount_minor=-1,
            currency="USD",
            presentation="consolidated",
            occurred_at=IN_NOVEMBER,
            source=f"test:credit:{n}",
            lease=lease,
        )
        statements_build(period_start=date(2027, n + 1, 1), period_end=date(2027, n + 2, 1))
        assert group_line.shares.exists()

    credited = {}
    for line in LineItem.objects.filter(kind=LineItemKind.SLA_CREDIT, group_line__isnull=False):
        credited[line.organization_id] = credited.get(line.organization_id, 0) + line.amount_minor
    assert sorted(credited.values()) == [-5, -4]
    assert set(credited) == {a.paying_organization_id, b.paying_organization_id}
