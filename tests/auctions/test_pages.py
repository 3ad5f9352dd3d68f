"""The auction list and the auction page, including the bid form posted without JavaScript."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from auctions.live import bidder_handle
from auctions.models import Auction, AuctionStatus, Bid, BidChannel, Lease
from auctions.services import auction_close, bid_place
from marketplace.models import OrganizationKind
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


def _bid(auction, bidder_and_user, amount_minor, **kwargs):
    organization, user = bidder_and_user
    return bid_place(
        auction_id=auction.pk, bidder=organization, user=user, amount_minor=amount_minor, **kwargs
    )


def _listed(response) -> set[int]:
    return {auction.pk for auction in response.context["page"]}


def _detail(auction) -> str:
    return reverse("auction_detail", kwargs={"pk": auction.pk})


def _ended(auction) -> Auction:
    Auction.objects.filter(pk=auction.pk).update(closes_at=timezone.now() - timedelta(seconds=1))
    auction_close(auction_id=auction.pk)
    auction.refresh_from_db()
    return auction


# --- The list -----------------------------------------------------------------------------------


def test_the_list_shows_live_auctions_of_verified_providers_with_their_terms(client):
    provider = VerifiedProviderFactory(legal_name="Fiber Co Ltd")
    auction = AuctionFactory(
        block=ServiceBlockFactory(provider=provider, min_rate_mbps=50, max_rate_mbps=400, seats=7),
        reserve_price_minor=5000,
    )
    _bid(auction, buyer(), 1200)
    unverified = AuctionFactory(block=ServiceBlockFactory(provider=ProviderProfileFactory()))
    ended = _ended(AuctionFactory())

    response = client.get(reverse("auction_list"))

    assert response.status_code == 200
    assert _listed(response) == {auction.pk}
    assert unverified.pk not in _listed(response) and ended.pk not in _listed(response)
    page = response.content.decode()
    assert "Fiber Co Ltd" in page
    assert "50\N{EN DASH}400 Mbit/s" in page
    assert "12.00 USD" in page
    assert "Reserve not met" in page
    assert _detail(auction) in page


def test_an_auction_without_bids_is_listed_with_its_start_price(client):
    AuctionFactory(start_price_minor=2500)

    page = client.get(reverse("auction_list")).content.decode()

    assert "from</span> 25.00 USD" in page
    assert "No reserve" in page


def test_the_list_filters_by_status(client):
    soon = AuctionFactory(closes_at=timezone.now() + timedelta(minutes=20))
    later = AuctionFactory(closes_at=timezone.now() + timedelta(hours=5))
    scheduled = AuctionFactory(
        status=AuctionStatus.SCHEDULED,
        opens_at=timezone.now() + timedelta(hours=1),
        closes_at=timezone.now() + timedelta(hours=6),
    )
    ended = _ended(AuctionFactory())

    def listed(status):
        return _listed(client.get(reverse("auction_list"), {"status": status}))

    assert listed("live") == {soon.pk, later.pk, scheduled.pk}
    assert listed("open") == {soon.pk, later.pk}
    assert listed("closing_soon") == {soon.pk}
    assert listed("ended") == {ended.pk}


def test_the_list_filters_by_provider_and_rate(client):
    fiber = VerifiedProviderFactory()
    fast = AuctionFactory(block=ServiceBlockFactory(provider=fiber, max_rate_mbps=10000))
    slow = AuctionFactory(block=ServiceBlockFactory(max_rate_mbps=100, min_rate_mbps=10))
    url = reverse("auction_list")

    assert _listed(client.get(url, {"provider": fiber.organization.slug})) == {fast.pk}
    assert _listed(client.get(url, {"min_rate": 1000})) == {fast.pk}
    assert _listed(client.get(url, {"max_rate": 500})) == {slow.pk}
    assert _listed(client.get(url, {"min_rate": 50, "max_rate": 20000})) == {fast.pk, slow.pk}


def test_an_invalid_filter_is_shown_as_an_error_and_ignored(client):
    auction = AuctionFactory()

    response = client.get(reverse("auction_list"), {"min_rate": "fast"})

    assert response.status_code == 200
    assert _listed(response) == {auction.pk}
    assert "Enter a whole number." in response.content.decode()


# --- The auction page ---------------------------------------------------------------------------


def test_the_page_shows_price_leader_reserve_and_history(client):
    auction = AuctionFactory(reserve_price_minor=3000)
    leader = buyer()
    _bid(auction, leader, 1500)

    response = client.get(_detail(auction))

    assert response.status_code == 200
    page = response.content.decode()
    assert "15.00 USD" in page
    assert bidder_handle(auction.pk, leader[0].pk) in page
    assert "Reserve not met" in page
    assert "guaranteed 100 Mbit/s, up to 1000 Mbit/s" in page
    assert "5 seats" in page
    assert "Log in to bid" in page
    assert 'id="auction-live-config"' in page
    assert response.context["snapshot"]["seq"] == 1


def test_the_page_shows_reserve_met_once_the_price_reaches_it(client):
    auction = AuctionFactory(reserve_price_minor=3000)
    _bid(auction, buyer(), 3000)

    assert "Reserve met" in client.get(_detail(auction)).content.decode()


def test_the_page_tells_the_leader_it_leads_and_the_other_it_was_outbid(login_client):
    auction = AuctionFactory()
    first, second = buyer(), buyer()
    _bid(auction, first, 1000)
    _bid(auction, second, 2000)

    outbid_page = login_client(first[1]).get(_detail(auction)).content.decode()
    leading_page = login_client(second[1]).get(_detail(auction)).content.decode()

    assert "You have been outbid" in outbid_page
    assert "You are leading" not in outbid_page
    assert "You are leading" in leading_page
    assert "You have been outbid" not in leading_page


def test_the_page_of_an_unverified_providers_auction_does_not_exist(client):
    auction = AuctionFactory(block=ServiceBlockFactory(provider=ProviderProfileFactory()))

    assert client.get(_detail(auction)).status_code == 404


def test_an_ended_auction_shows_the_winner_and_price(login_client):
    auction = AuctionFactory()
    winner = buyer()
    _bid(auction, winner, 1700)
    _ended(auction)

    page = login_client(winner[1]).get(_detail(auction)).content.decode()

    assert f"Sold to {bidder_handle(auction.pk, winner[0].pk)} for 17.00 USD." in page
    assert "You won this auction." in page
    assert "Place bid" not in page


def test_an_auction_that_ended_below_its_reserve_shows_no_sale(client):
    auction = AuctionFactory(reserve_price_minor=9000)
    _bid(auction, buyer(), 1000)
    _ended(auction)

    page = client.get(_detail(auction)).content.decode()

    assert "Ended without a sale (reserve not met)." in page
    assert not Lease.objects.exists()


# --- The bid form without JavaScript ------------------------------------------------------------


def test_a_plain_form_bid_is_placed_and_the_page_redirects_to_itself(login_client):
    auction = AuctionFactory()
    organization, user = buyer()
    client = login_client(user)

    response = client.post(
        _detail(auction), {"amount": "10.00", "max_amount": "25", "client_bid_id": "form-1"}
    )

    assert response.status_code == 302
    assert response["Location"] == _detail(auction)
    bid = Bid.objects.get(auction=auction)
    assert (bid.bidder, bid.amount_minor, bid.max_amount_minor, bid.channel) == (
        organization,
        1000,
        2500,
        BidChannel.WEB,
    )
    page = client.get(response["Location"]).content.decode()
    assert "Your bid is in. You are leading at 10.00 USD." in page
    assert "You are leading" in page


def test_a_plain_form_bid_under_anothers_maximum_says_the_buyer_is_outbid(login_client):
    auction = AuctionFactory()
    _bid(auction, buyer(), 1000, max_amount_minor=5000)
    client = login_client(buyer()[1])

    response = client.post(_detail(auction), {"amount": "12", "client_bid_id": "f"}, follow=True)

    page = response.content.decode()
    assert "another bidder&#x27;s maximum is higher: the price is now 12.50 USD." in page
    assert "You have been outbid" in page
    assert "50.00 USD" not in page  # the leader's maximum stays hidden


def test_a_plain_form_bid_below_the_minimum_is_rejected_with_the_typed_values_kept(login_client):
    auction = AuctionFactory()
    _bid(auction, buyer(), 1000)
    client = login_client(buyer()[1])

    response = client.post(
        _detail(auction), {"amount": "10.10", "max_amount": "12.00", "client_bid_id": "form-2"}
    )

    assert response.status_code == 200
    page = response.content.decode()
    assert "Bid at least 10.50 USD." in page
    assert 'value="10.10"' in page
    assert 'value="12.00"' in page
    assert 'value="form-2"' in page
    assert Bid.objects.filter(auction=auction).count() == 1
    auction.refresh_from_db()
    assert (auction.seq, auction.current_price_minor) == (1, 1000)


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("ten", "is not an amount"),
        ("10.001", "at most 2 decimal places"),
        ("-5", "Enter a positive amount."),
        ("", "This field is required."),
    ],
)
def test_a_plain_form_bid_with_an_unreadable_amount_is_refused(login_client, typed, message):
    auction = AuctionFactory()
    client = login_client(buyer()[1])

    response = client.post(_detail(auction), {"amount": typed, "client_bid_id": "x"})

    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Bid.objects.exists()


def test_the_same_form_posted_twice_places_one_bid(login_client):
    auction = AuctionFactory()
    client = login_client(buyer()[1])
    form = {"amount": "10.00", "client_bid_id": "twice"}

    client.post(_detail(auction), form)
    response = client.post(_detail(auction), form, follow=True)

    assert Bid.objects.filter(auction=auction).count() == 1
    assert "That bid was already placed." in response.content.decode()


def test_a_form_bid_on_an_ended_auction_is_refused_with_a_message(login_client):
    auction = _ended(AuctionFactory())
    client = login_client(buyer()[1])

    response = client.post(_detail(auction), {"amount": "50.00", "client_bid_id": "late"})

    assert response.status_code == 302
    page = client.get(response["Location"]).content.decode()
    assert "This auction has ended." in page
    assert "Ended without a sale." in page
    assert not Bid.objects.exists()


def test_a_provider_cannot_bid_on_its_own_auction_by_form(login_client):
    both = OrganizationFactory(kind=OrganizationKind.BOTH)
    auction = AuctionFactory(
        block=ServiceBlockFactory(provider=VerifiedProviderFactory(organization=both))
    )
    client = login_client(member_of(both))

    page = client.get(_detail(auction)).content.decode()
    assert "This is your organization's auction" in page
    response = client.post(_detail(auction), {"amount": "10.00", "client_bid_id": "own"})

    assert response.status_code == 200
    assert "You cannot bid on your own organization&#x27;s auction." in response.content.decode()
    assert not Bid.objects.exists()


def test_a_user_without_a_buyer_organization_is_refused(login_client):
    auction = AuctionFactory()
    client = login_client(UserFactory())

    response = client.post(_detail(auction), {"amount": "10.00", "client_bid_id": "n"})

    assert response.status_code == 200
    assert "Join or create a buyer organization to bid." in response.content.decode()
    assert not Bid.objects.exists()


def test_an_anonymous_form_bid_is_sent_to_log_in(client):
    auction = AuctionFactory()

    response = client.post(_detail(auction), {"amount": "10.00"})

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
    assert f"next={_detail(auction)}" in response["Location"].replace("%2F", "/")
    assert not Bid.objects.exists()


def test_buy_now_by_form_ends_the_auction_with_a_lease(login_client):
    auction = AuctionFactory(buy_now_price_minor=8000)
    organization, user = buyer()
    client = login_client(user)
    assert "Buy it now for" in client.get(_detail(auction)).content.decode()

    response = client.post(reverse("auction_buy_now", kwargs={"pk": auction.pk}), follow=True)

    assert "You bought this block for 80.00 USD." in response.content.decode()
    lease = Lease.objects.get(auction=auction)
    assert (lease.winner, lease.price_minor, lease.bought_now) == (organization, 8000, True)


def test_buy_now_is_gone_after_the_first_bid(login_client):
    auction = AuctionFactory(buy_now_price_minor=8000)
    _bid(auction, buyer(), 1000)
    client = login_client(buyer()[1])

    assert "Buy it now for" not in client.get(_detail(auction)).content.decode()
    response = client.post(reverse("auction_buy_now", kwargs={"pk": auction.pk}), follow=True)

    assert "Buy-now is no longer offered" in response.content.decode()
    assert not Lease.objects.exists()
