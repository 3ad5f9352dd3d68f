"""The auction rules of SPEC §4.2, one behaviour per test, through the one bid service."""

from datetime import timedelta

import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.utils import timezone

from auctions.models import AuctionStatus, Bid, Lease
from auctions.services import (
    BidRejected,
    auction_buy_now,
    auction_close,
    auction_create,
    auctions_close_due,
    bid_place,
    block_create,
    increment_at,
    minimum_next_bid,
)
from billing.models import Statement, StatementStatus
from billing.statements import statements_build
from marketplace.models import OrganizationKind
from providers.services import ProviderNotVerified
from tests.billing.test_statements import NOVEMBER, lease_won
from tests.factories import (
    AuctionFactory,
    OrganizationFactory,
    ProviderProfileFactory,
    ServiceBlockFactory,
    UserFactory,
    VerifiedProviderFactory,
    buyer,
    member_of,
)

pytestmark = pytest.mark.django_db

# Bands used by most tests: +100 below 5000, +250 from 5000 on.
BANDS = [{"from_minor": 0, "increment_minor": 100}, {"from_minor": 5000, "increment_minor": 250}]


@pytest.fixture
def auction():
    return AuctionFactory(start_price_minor=1000, increment_bands=BANDS)


@pytest.fixture
def alice():
    return buyer()


@pytest.fixture
def bob():
    return buyer()


@pytest.fixture
def carol():
    return buyer()


def bid(auction, who, amount, maximum=None, **kwargs):
    organization, user = who
    return bid_place(
        auction_id=auction.pk,
        bidder=organization,
        user=user,
        amount_minor=amount,
        max_amount_minor=maximum,
        **kwargs,
    )


def rejected(code, auction, who, amount, maximum=None):
    with pytest.raises(BidRejected) as caught:
        bid(auction, who, amount, maximum)
    assert caught.value.code == code, caught.value.message
    return caught.value


def test_increments_follow_the_price_bands():
    assert increment_at(0, BANDS) == 100
    assert increment_at(4999, BANDS) == 100
    assert increment_at(5000, BANDS) == 250
    assert increment_at(1_000_000, BANDS) == 250


def test_the_first_bid_must_reach_the_start_price(auction, alice):
    error = rejected("bid_too_low", auction, alice, 999)
    assert error.extra["minimum_minor"] == 1000
    outcome = bid(auction, alice, 1000)
    assert outcome.leading
    assert outcome.auction.current_price_minor == 1000


def test_a_bid_below_the_increment_is_rejected(auction, alice, bob):
    bid(auction, alice, 1000)
    error = rejected("bid_too_low", auction, bob, 1099)
    assert error.extra["minimum_minor"] == 1100
    assert "11.00 USD" in error.message
    assert bid(auction, bob, 1100).leading


def test_the_step_grows_in_the_higher_band(auction, alice, bob):
    bid(auction, alice, 5000)
    auction.refresh_from_db()
    assert minimum_next_bid(auction) == 5250
    rejected("bid_too_low", auction, bob, 5200)
    assert bid(auction, bob, 5250).auction.current_price_minor == 5250


def test_proxy_bidding_raises_the_leader_one_increment_over_a_challenger(auction, alice, bob):
    bid(auction, alice, 1000, maximum=4000)
    outcome = bid(auction, bob, 2000)
    assert not outcome.leading
    assert outcome.auction.current_price_minor == 2100  # alice's proxy answered
    assert outcome.auction.leader_id == alice[0].pk


def test_proxy_war_the_winner_pays_one_increment_over_the_runner_ups_maximum(auction, alice, bob):
    bid(auction, alice, 1000, maximum=4000)
    outcome = bid(auction, bob, 2000, maximum=9000)
    assert outcome.leading
    assert outcome.auction.current_price_minor == 4100


def test_the_winners_price_is_capped_at_its_own_maximum(auction, alice, bob):
    bid(auction, alice, 1000, maximum=4000)
    outcome = bid(auction, bob, 2000, maximum=4050)
    assert outcome.leading
    assert outcome.auction.current_price_minor == 4050


def test_on_equal_maxima_the_earlier_bidder_leads(auction, alice, bob):
    bid(auction, alice, 1000, maximum=4000)
    outcome = bid(auction, bob, 1500, maximum=4000)
    assert not outcome.leading
    assert outcome.auction.leader_id == alice[0].pk
    assert outcome.auction.current_price_minor == 4000


def test_a_three_way_proxy_war(auction, alice, bob, carol):
    bid(auction, alice, 1000, maximum=3000)
    bid(auction, bob, 1100, maximum=6000)  # bob leads at 3100
    outcome = bid(auction, carol, 3200, maximum=5500)  # bob answers: 5500 + 250, capped 5750
    assert outcome.auction.leader_id == bob[0].pk
    assert outcome.auction.current_price_minor == 5750
    outcome = bid(auction, carol, 6000, maximum=8000)
    assert outcome.leading
    assert outcome.auction.current_price_minor == 6250


def test_a_visible_bid_is_never_lowered_by_the_proxy_rule(auction, alice, bob):
    bid(auction, alice, 1000, maximum=1200)
    outcome = bid(auction, bob, 3000)
    assert outcome.leading
    assert outcome.auction.current_price_minor == 3000


def test_the_leader_cannot_bid_against_itself_but_may_raise_its_maximum(auction, alice, bob):
    bid(auction, alice, 1000, maximum=2000)
    rejected("already_leading", auction, alice, 2000)
    outcome = bid(auction, alice, 500, maximum=5000)
    assert outcome.leading
    assert outcome.auction.current_price_minor == 1000  # raising a maximum costs nothing
    assert outcome.bid.amount_minor == 1000  # shown at the standing price, never below it
    assert bid(auction, bob, 3000).auction.current_price_minor == 3100


def test_the_reserve_is_shown_only_as_met_or_not(alice, bob):
    auction = AuctionFactory(
        start_price_minor=1000, reserve_price_minor=3000, increment_bands=BANDS
    )
    outcome = bid(auction, alice, 1000)
    assert outcome.auction.reserve_met is False
    assert "3000" not in str(outcome.events) and "reserve_price" not in str(outcome.events)
    outcome = bid(auction, bob, 1100, maximum=5000)
    # A leader whose maximum covers the reserve is raised to the reserve at once.
    assert outcome.auction.current_price_minor == 3000
    assert outcome.auction.reserve_met is True
    assert outcome.events[0]["reserve_met"] is True


def test_a_leader_raising_its_maximum_over_the_reserve_meets_it(alice):
    auction = AuctionFactory(
        start_price_minor=1000, reserve_price_minor=3000, increment_bands=BANDS
    )
    bid(auction, alice, 1000)
    outcome = bid(auction, alice, 1000, maximum=3500)
    assert outcome.auction.current_price_minor == 3000


def test_buy_now_ends_the_auction_with_a_lease_at_the_buy_now_price(alice, bob):
    auction = AuctionFactory(start_price_minor=1000, buy_now_price_minor=9000)
    lease = auction_buy_now(auction_id=auction.pk, buyer=alice[0], user=alice[1])
    auction.refresh_from_db()
    assert auction.status == AuctionStatus.CLOSED
    assert lease.price_minor == 9000
    assert lease.winner == alice[0]
    assert lease.bought_now
    rejected("auction_not_open", auction, bob, 10000)


def test_buy_now_is_withdrawn_by_the_first_bid(alice, bob):
    auction = AuctionFactory(start_price_minor=1000, buy_now_price_minor=9000)
    assert auction.buy_now_available
    bid(auction, alice, 1000)
    with pytest.raises(BidRejected) as caught:
        auction_buy_now(auction_id=auction.pk, buyer=bob[0], user=bob[1])
    assert caught.value.code == "buy_now_unavailable"
    assert not Lease.objects.exists()


def _closing_in(seconds, **kwargs):
    closes_at = timezone.now() + timedelta(seconds=seconds)
    return AuctionFactory(
        start_price_minor=1000,
        increment_bands=BANDS,
        closes_at=closes_at,
        scheduled_close_at=closes_at,
        **kwargs,
    )


def close_now(auction):
    """Move the close into the past without touching the auction's standing."""
    type(auction).objects.filter(pk=auction.pk).update(
        closes_at=timezone.now() - timedelta(seconds=1)
    )


def test_a_bid_in_the_soft_close_window_extends_the_close(alice):
    auction = _closing_in(60, soft_close_seconds=120)
    before = timezone.now()
    outcome = bid(auction, alice, 1000)
    auction.refresh_from_db()
    assert auction.closes_at >= before + timedelta(seconds=120)
    assert auction.extensions == 1
    assert [e["type"] for e in outcome.events] == ["bid.placed", "auction.extended"]
    assert outcome.events[1]["seq"] == outcome.events[0]["seq"] + 1


def test_a_bid_before_the_window_does_not_extend(alice):
    auction = _closing_in(600, soft_close_seconds=120)
    closes_at = auction.closes_at
    bid(auction, alice, 1000)
    auction.refresh_from_db()
    assert auction.closes_at == closes_at
    assert auction.extensions == 0


def test_extensions_stop_at_the_cap(alice, bob):
    auction = _closing_in(60, soft_close_seconds=120, max_extension_seconds=30)
    cap = auction.scheduled_close_at + timedelta(seconds=30)
    first = bid(auction, alice, 1000)
    later = [bid(auction, bob, 1100), bid(auction, alice, 1200)]
    auction.refresh_from_db()
    assert auction.closes_at == cap
    assert auction.extensions == 1
    assert [e["type"] for e in first.events] == ["bid.placed", "auction.extended"]
    assert all([e["type"] for e in o.events] == ["bid.placed"] for o in later)


def test_a_rejected_bid_never_extends(alice, bob):
    auction = _closing_in(60, soft_close_seconds=120)
    closes_at = auction.closes_at
    rejected("bid_too_low", auction, alice, 10)
    auction.refresh_from_db()
    assert auction.closes_at == closes_at
    assert auction.seq == 0


def test_nobody_bids_on_their_own_organizations_auction(auction):
    provider_org = auction.block.provider.organization
    provider_org.kind = OrganizationKind.BOTH
    provider_org.save()
    rejected("own_auction", auction, (provider_org, member_of(provider_org)), 1000)


def test_a_buyer_without_a_card_on_file_cannot_bid(auction):
    rejected("card_required", auction, buyer(with_card=False), 1000)
    assert not Bid.objects.exists()


def test_unpaid_leases_block_bidding_from_the_configured_count(auction, settings):
    late_payer = buyer()
    lease_won(late_payer[0], VerifiedProviderFactory(), 5_000)
    statements_build(period_start=NOVEMBER[0], period_end=NOVEMBER[1])
    Statement.objects.update(status=StatementStatus.PAYMENT_FAILED)

    settings.UNPAID_LEASES_BLOCK = 2
    bid(auction, late_payer, 1000)  # one unpaid lease: still allowed
    settings.UNPAID_LEASES_BLOCK = 1
    rejected("unpaid_leases", auction, late_payer, 2000)
    Statement.objects.update(status=StatementStatus.PAID)
    bid(auction, late_payer, 2000)


def test_only_members_of_active_recipient_organizations_bid(auction):
    provider_only = OrganizationFactory(kind=OrganizationKind.PROVIDER)
    rejected("not_a_buyer", auction, (provider_only, member_of(provider_only)), 1000)
    inactive = OrganizationFactory(kind=OrganizationKind.RECIPIENT, is_active=False)
    rejected("not_a_buyer", auction, (inactive, member_of(inactive)), 1000)
    organization, _ = buyer()
    rejected("not_a_buyer", auction, (organization, UserFactory()), 1000)
    assert not Bid.objects.exists()


def test_bids_outside_the_auctions_time_are_refused(alice):
    later = AuctionFactory(
        opens_at=timezone.now() + timedelta(minutes=5), status=AuctionStatus.SCHEDULED
    )
    assert "opens at" in rejected("auction_not_open", later, alice, 5000).message
    ended = _closing_in(-1)
    rejected("auction_not_open", ended, alice, 5000)


@pytest.mark.parametrize(
    ("amount", "maximum"),
    [(0, None), (-5, None), (True, None), (10.5, None), (2000, 1500), (2000, 2**63), (2**64, None)],
)
def test_malformed_amounts_are_refused(auction, alice, amount, maximum):
    rejected("invalid_amount", auction, alice, amount, maximum)


def test_a_retried_bid_with_the_same_client_id_is_placed_once(auction, alice):
    first = bid(auction, alice, 1000, client_bid_id="tab-1-17")
    again = bid(auction, alice, 1000, client_bid_id="tab-1-17")
    assert again.replayed
    assert again.bid.pk == first.bid.pk
    assert Bid.objects.count() == 1
    auction.refresh_from_db()
    assert auction.seq == 1


def test_every_accepted_bid_gets_the_next_sequence_number(auction, alice, bob):
    seqs = [
        bid(auction, alice, 1000).bid.seq,
        bid(auction, bob, 1100).bid.seq,
        bid(auction, alice, 1200).bid.seq,
    ]
    assert seqs == [1, 2, 3]


def test_closing_with_the_reserve_met_makes_a_lease_and_mails_both_sides(
    alice, bob, django_capture_on_commit_callbacks
):
    auction = _closing_in(3600, reserve_price_minor=1500)
    bid(auction, alice, 1000)
    bid(auction, bob, 1500)
    close_now(auction)
    with django_capture_on_commit_callbacks(execute=True):
        outcome = auction_close(auction_id=auction.pk)
    assert outcome.auction.status == AuctionStatus.CLOSED
    lease = Lease.objects.get()
    assert (lease.winner, lease.price_minor) == (bob[0], 1500)
    assert (lease.starts_at, lease.ends_at) == (auction.block.starts_at, auction.block.ends_at)
    subjects = sorted(m.subject for m in mail.outbox)
    assert subjects == [
        f"Auction #{auction.pk} sold for 15.00 USD",
        f"You won auction #{auction.pk} for 15.00 USD",
    ]
    assert auction_close(auction_id=auction.pk) is None  # a second closer does nothing
    assert Lease.objects.count() == 1


def test_closing_below_the_reserve_or_without_bids_is_no_sale(alice):
    unmet = _closing_in(3600, reserve_price_minor=5000)
    bid(unmet, alice, 1000)
    silent = _closing_in(3600)
    for auction in (unmet, silent):
        close_now(auction)
    assert auctions_close_due() == 2
    unmet.refresh_from_db()
    silent.refresh_from_db()
    assert unmet.status == silent.status == AuctionStatus.NO_SALE
    assert not Lease.objects.exists()


def test_auctions_still_running_are_not_closed(alice):
    auction = _closing_in(3600)
    bid(auction, alice, 1000)
    assert auctions_close_due() == 0
    assert auction_close(auction_id=auction.pk) is None
    auction.refresh_from_db()
    assert auction.status == AuctionStatus.OPEN


def test_blocks_and_auctions_are_validated():
    block = ServiceBlockFactory()
    start = block.starts_at
    with pytest.raises(ValidationError, match="before the block starts"):
        auction_create(
            block=block,
            opens_at=timezone.now(),
            closes_at=start - timedelta(minutes=30),
            start_price_minor=100,
        )
    with pytest.raises(ValidationError, match="close after it opens"):
        auction_create(
            block=block,
            opens_at=start - timedelta(hours=3),
            closes_at=start - timedelta(hours=4),
            start_price_minor=100,
        )
    with pytest.raises(ValidationError, match="reserve"):
        auction_create(
            block=block,
            opens_at=timezone.now(),
            closes_at=start - timedelta(hours=2),
            start_price_minor=100,
            reserve_price_minor=50,
        )
    with pytest.raises(ValidationError, match="first band starts at 0"):
        auction_create(
            block=block,
            opens_at=timezone.now(),
            closes_at=start - timedelta(hours=2),
            start_price_minor=100,
            increment_bands=[{"from_minor": 10, "increment_minor": 5}],
        )
    created = auction_create(
        block=block,
        opens_at=timezone.now(),
        closes_at=start - timedelta(hours=2),
        start_price_minor=100,
    )
    assert created.status == AuctionStatus.OPEN
    with pytest.raises(ValidationError, match="guaranteed rate"):
        block_create(
            provider=block.provider,
            starts_at=start,
            ends_at=start + timedelta(hours=1),
            max_rate_mbps=100,
            min_rate_mbps=200,
        )
    with pytest.raises(ValidationError, match="end after it starts"):
        block_create(
            provider=block.provider,
            starts_at=start,
            ends_at=start - timedelta(hours=1),
            max_rate_mbps=100,
            min_rate_mbps=10,
        )


def test_unverified_providers_cannot_list_blocks():
    pending = ProviderProfileFactory()
    with pytest.raises(ProviderNotVerified):
        block_create(
            provider=pending,
            starts_at=timezone.now() + timedelta(days=1),
            ends_at=timezone.now() + timedelta(days=1, hours=1),
            max_rate_mbps=100,
            min_rate_mbps=10,
        )


def test_a_provider_suspended_during_its_auction_sells_nothing_more(auction, alice):
    provider = auction.block.provider
    provider.status = "suspended"
    provider.save()
    error = rejected("auction_not_open", auction, alice, 1000)
    assert "suspended" in error.message
