"""Anyone reads and filters auctions; a provider auctions its own blocks through the API."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from auctions.live import bidder_handle
from auctions.models import Auction, AuctionStatus, Lease
from auctions.services import auction_close, bid_place
from marketplace.models import ApiKeyScope, OrganizationKind, Role
from providers.models import ProviderStatus
from tests.api.helpers import assert_problem
from tests.factories import (
    AuctionFactory,
    OrganizationFactory,
    ProviderProfileFactory,
    ServiceBlockFactory,
    VerifiedProviderFactory,
    buyer,
    member_of,
)

pytestmark = pytest.mark.django_db
pytest_plugins = ["tests.api.auction_fixtures"]

AUCTIONS = "/api/v1/auctions/"
AUCTION_FIELDS = {
    "id",
    "provider",
    "block",
    "status",
    "opens_at",
    "closes_at",
    "currency",
    "start_price_minor",
    "price_minor",
    "min_next_minor",
    "bid_count",
    "leader",
    "has_reserve",
    "reserve_met",
    "buy_now_minor",
    "lease",
}


def ids(response) -> list[int]:
    assert response.status_code == 200, response.content
    return [item["id"] for item in response.json()["results"]]


def later(**delta) -> str:
    return (timezone.now() + timedelta(**delta)).isoformat()


def bid(auction, amount_minor, max_amount_minor=None):
    """A bid by a fresh buyer, straight through the service."""
    organization, user = buyer()
    return bid_place(
        auction_id=auction.pk,
        bidder=organization,
        user=user,
        amount_minor=amount_minor,
        max_amount_minor=max_amount_minor,
    )


# --- Reading ------------------------------------------------------------------------------------


def test_anyone_lists_auctions_without_credentials(auction_of_b, provider_b):
    response = APIClient().get(AUCTIONS)

    assert response.status_code == 200
    [item] = response.json()["results"]
    assert set(item) == AUCTION_FIELDS
    assert item["provider"] == {"slug": "beta", "name": "Beta Telecom"}
    block = auction_of_b.block
    assert item["block"]["max_rate_mbps"] == block.max_rate_mbps
    assert item["block"]["min_rate_mbps"] == block.min_rate_mbps
    assert item["block"]["seats"] == block.seats
    assert item["block"]["data_cap_gb"] is None
    assert (item["status"], item["currency"], item["start_price_minor"]) == ("open", "USD", 1000)
    assert (item["price_minor"], item["leader"], item["bid_count"]) == (None, None, 0)
    assert item["min_next_minor"] == 1000
    assert (item["has_reserve"], item["reserve_met"]) == (False, False)
    assert item["buy_now_minor"] is None
    assert item["lease"] is None
    assert item["closes_at"].endswith("Z")


def test_anyone_reads_one_auction(auction_of_b):
    response = APIClient().get(f"{AUCTIONS}{auction_of_b.pk}/")

    assert response.status_code == 200
    assert set(response.json()) == AUCTION_FIELDS
    assert response.json()["id"] == auction_of_b.pk


def test_a_key_of_any_organization_reads_auctions(auction_of_b, buyer_client, client_a):
    assert ids(buyer_client.get(AUCTIONS)) == [auction_of_b.pk]
    assert ids(client_a.get(AUCTIONS)) == [auction_of_b.pk]


def test_unknown_api_key_is_401_even_on_public_reads(auction_of_b, key_client):
    response = key_client("sx_nope_nope").get(AUCTIONS)

    assert_problem(response, status=401, code="invalid_api_key")


def test_unknown_auction_is_404(auction_of_b):
    assert_problem(APIClient().get(f"{AUCTIONS}999999/"), status=404, code="not_found")
    assert_problem(APIClient().get(f"{AUCTIONS}nope/"), status=404, code="not_found")


@pytest.mark.parametrize("status", [ProviderStatus.PENDING, ProviderStatus.SUSPENDED])
def test_auction_of_an_unverified_provider_is_hidden(status):
    provider = ProviderProfileFactory(status=status)
    auction = AuctionFactory(block__provider=provider)
    client = APIClient()

    assert ids(client.get(AUCTIONS)) == []
    assert_problem(client.get(f"{AUCTIONS}{auction.pk}/"), status=404, code="not_found")


def test_price_leader_and_reserve_state_follow_the_bids(secret_auction, assert_no_secret):
    response = APIClient().get(f"{AUCTIONS}{secret_auction.pk}/")

    body = response.json()
    assert body["price_minor"] == 1000
    assert body["leader"] == bidder_handle(secret_auction.pk, secret_auction.leader_id)
    assert body["bid_count"] == 1
    assert (body["has_reserve"], body["reserve_met"]) == (True, False)
    assert body["min_next_minor"] == 1050  # one increment of the 5.00-25.00 band above
    assert_no_secret(response)


def test_neither_reserve_nor_maximum_leaks_in_list_or_detail(secret_auction, assert_no_secret):
    client = APIClient()

    assert_no_secret(client.get(AUCTIONS))
    assert_no_secret(client.get(f"{AUCTIONS}{secret_auction.pk}/"))
    assert_no_secret(client.get(f"{AUCTIONS}{secret_auction.pk}/bids/"))


def test_buy_now_price_shows_only_until_the_first_bid(provider_b):
    auction = AuctionFactory(block__provider=provider_b, buy_now_price_minor=50_000)
    url = f"{AUCTIONS}{auction.pk}/"

    assert APIClient().get(url).json()["buy_now_minor"] == 50_000
    bid(auction, 1000)

    assert APIClient().get(url).json()["buy_now_minor"] is None


def test_closed_auction_shows_the_winner_handle_and_price(auction_of_b):
    outcome = bid(auction_of_b, 1500)
    Auction.objects.filter(pk=auction_of_b.pk).update(closes_at=timezone.now())
    auction_close(auction_id=auction_of_b.pk)

    body = APIClient().get(f"{AUCTIONS}{auction_of_b.pk}/").json()

    assert body["status"] == "closed"
    assert body["min_next_minor"] is None
    lease = Lease.objects.get()
    assert body["lease"] == {
        "id": lease.pk,
        "auction": auction_of_b.pk,
        "winner": bidder_handle(auction_of_b.pk, outcome.bid.bidder_id),
        "price_minor": 1500,
        "currency": "USD",
        "bought_now": False,
        "starts_at": body["block"]["starts_at"],
        "ends_at": body["block"]["ends_at"],
    }
    assert outcome.bid.bidder.name not in str(body)


def test_auction_without_a_sale_has_no_lease(auction_of_b):
    Auction.objects.filter(pk=auction_of_b.pk).update(closes_at=timezone.now())
    auction_close(auction_id=auction_of_b.pk)

    body = APIClient().get(f"{AUCTIONS}{auction_of_b.pk}/").json()

    assert (body["status"], body["lease"]) == ("no_sale", None)


def test_list_is_ordered_by_close_and_paginated(provider_b):
    late = AuctionFactory(block__provider=provider_b, closes_at=timezone.now() + timedelta(hours=5))
    soon = AuctionFactory(block__provider=provider_b, closes_at=timezone.now() + timedelta(hours=2))

    response = APIClient().get(AUCTIONS)

    assert ids(response) == [soon.pk, late.pk]
    assert response.json()["count"] == 2


# --- Filters ------------------------------------------------------------------------------------


@pytest.fixture
def mixed_auctions(provider_a, provider_b) -> dict[str, Auction]:
    now = timezone.now()
    return {
        "open": AuctionFactory(
            block__provider=provider_a,
            block__max_rate_mbps=100,
            block__min_rate_mbps=10,
            closes_at=now + timedelta(hours=1),
        ),
        "scheduled": AuctionFactory(
            block__provider=provider_b,
            block__max_rate_mbps=1000,
            status=AuctionStatus.SCHEDULED,
            opens_at=now + timedelta(hours=1),
            closes_at=now + timedelta(hours=3),
        ),
        "closed": AuctionFactory(
            block__provider=provider_b,
            block__max_rate_mbps=10_000,
            status=AuctionStatus.CLOSED,
            opens_at=now - timedelta(hours=3),
            closes_at=now - timedelta(hours=1),
        ),
    }


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("open", ["open"]),
        ("scheduled", ["scheduled"]),
        ("closed", ["closed"]),
        ("no_sale", []),
        ("cancelled", []),
        ("live", ["open", "scheduled"]),
    ],
)
def test_status_filter(mixed_auctions, status, expected):
    response = APIClient().get(AUCTIONS, {"status": status})

    assert set(ids(response)) == {mixed_auctions[name].pk for name in expected}


def test_provider_filter_takes_the_organization_slug(mixed_auctions):
    assert ids(APIClient().get(AUCTIONS, {"provider": "alpha"})) == [mixed_auctions["open"].pk]
    assert ids(APIClient().get(AUCTIONS, {"provider": "nobody"})) == []


def test_closes_before_filter(mixed_auctions):
    response = APIClient().get(AUCTIONS, {"closes_before": later(hours=2)})

    assert set(ids(response)) == {mixed_auctions["open"].pk, mixed_auctions["closed"].pk}


def test_closes_before_filter_accepts_utc_with_z(mixed_auctions):
    moment = (timezone.now() + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")

    response = APIClient().get(AUCTIONS, {"closes_before": moment})

    assert set(ids(response)) == {mixed_auctions["open"].pk, mixed_auctions["closed"].pk}


@pytest.mark.parametrize("value", ["tomorrow", "2026-13-01T00:00:00Z", "12"])
def test_closes_before_must_be_an_iso_8601_time(mixed_auctions, value):
    response = APIClient().get(AUCTIONS, {"closes_before": value})

    body = assert_problem(response, status=400, code="validation_failed")
    assert "closes_before" in body["errors"]


def test_rate_filters_use_the_blocks_maximum_rate(mixed_auctions):
    client = APIClient()

    assert set(ids(client.get(AUCTIONS, {"min_rate": 1000}))) == {
        mixed_auctions["scheduled"].pk,
        mixed_auctions["closed"].pk,
    }
    assert ids(client.get(AUCTIONS, {"max_rate": 999})) == [mixed_auctions["open"].pk]
    assert ids(client.get(AUCTIONS, {"min_rate": 500, "max_rate": 5000})) == [
        mixed_auctions["scheduled"].pk
    ]


@pytest.mark.parametrize("value", ["fast", "1.5", "1e3", "-5", "10 Mbit"])
@pytest.mark.parametrize("name", ["min_rate", "max_rate"])
def test_rate_filters_must_be_whole_numbers(mixed_auctions, name, value):
    response = APIClient().get(AUCTIONS, {name: value})

    body = assert_problem(response, status=400, code="validation_failed")
    assert name in body["errors"]


def test_unknown_status_is_400(mixed_auctions):
    response = APIClient().get(AUCTIONS, {"status": "sold"})

    body = assert_problem(response, status=400, code="validation_failed")
    assert "status" in body["errors"]


def test_empty_filters_are_ignored(mixed_auctions):
    response = APIClient().get(AUCTIONS, {"status": "", "provider": "", "min_rate": ""})

    assert len(ids(response)) == 3


# --- Creating (providers) -----------------------------------------------------------------------


def new_auction(block, **changes) -> dict:
    auction = {
        "block": block.pk,
        "closes_at": later(days=1),
        "start_price_minor": 2000,
        "currency": "EUR",
    }
    return {**auction, **changes}


def test_provider_auctions_its_own_block(client_a, block_of_a, assert_no_secret):
    data = new_auction(
        block_of_a,
        reserve_price_minor=7_654_321,
        buy_now_price_minor=9_000_000,
        soft_close_seconds=60,
        max_extension_seconds=600,
    )

    response = client_a.post(AUCTIONS, data, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == AUCTION_FIELDS
    assert (body["status"], body["currency"], body["start_price_minor"]) == ("open", "EUR", 2000)
    assert (body["has_reserve"], body["buy_now_minor"]) == (True, 9_000_000)
    assert body["provider"]["slug"] == "alpha"
    assert_no_secret(response)
    auction = Auction.objects.get(pk=body["id"])
    assert auction.block == block_of_a
    assert (auction.reserve_price_minor, auction.soft_close_seconds) == (7_654_321, 60)
    assert auction.max_extension_seconds == 600


def test_auction_opening_later_is_scheduled(client_a, block_of_a):
    data = new_auction(block_of_a, opens_at=later(hours=2), closes_at=later(hours=5))

    response = client_a.post(AUCTIONS, data, format="json")

    assert response.status_code == 201, response.content
    assert response.json()["status"] == "scheduled"


def test_custom_increment_bands_are_kept(client_a, block_of_a):
    bands = [{"from_minor": 0, "increment_minor": 10}, {"from_minor": 5000, "increment_minor": 100}]

    response = client_a.post(
        AUCTIONS, new_auction(block_of_a, increment_bands=bands), format="json"
    )

    assert response.status_code == 201, response.content
    assert Auction.objects.get().increment_bands == bands


def test_invalid_increment_bands_are_refused(client_a, block_of_a):
    bands = [{"from_minor": 100, "increment_minor": 10}]

    response = client_a.post(
        AUCTIONS, new_auction(block_of_a, increment_bands=bands), format="json"
    )

    body = assert_problem(response, status=422, code="validation_failed")
    assert "increment_bands" in body["errors"]
    assert not Auction.objects.exists()


def test_another_providers_block_is_422_as_if_it_did_not_exist(client_a, block_of_b):
    response = client_a.post(AUCTIONS, new_auction(block_of_b), format="json")

    body = assert_problem(response, status=422, code="validation_failed")
    assert body["errors"]["block"] == [f"Block {block_of_b.pk} is not one of your blocks."]
    assert not Auction.objects.exists()


def test_auction_closing_after_the_block_starts_is_refused(client_a, block_of_a):
    closes_at = (block_of_a.starts_at + timedelta(minutes=5)).isoformat()

    response = client_a.post(AUCTIONS, new_auction(block_of_a, closes_at=closes_at), format="json")

    body = assert_problem(response, status=422, code="validation_failed")
    assert "before the block starts" in body["errors"]["closes_at"][0]
    assert not Auction.objects.exists()


def test_extensions_must_also_end_before_the_block_starts(client_a, block_of_a):
    closes_at = (block_of_a.starts_at - timedelta(minutes=30)).isoformat()
    data = new_auction(block_of_a, closes_at=closes_at, max_extension_seconds=3600)

    response = client_a.post(AUCTIONS, data, format="json")

    assert_problem(response, status=422, code="validation_failed")


def test_auction_closing_before_it_opens_is_refused(client_a, block_of_a):
    data = new_auction(block_of_a, opens_at=later(hours=5), closes_at=later(hours=4))

    response = client_a.post(AUCTIONS, data, format="json")

    body = assert_problem(response, status=422, code="validation_failed")
    assert "close after it opens" in body["errors"]["closes_at"][0]


def test_reserve_below_start_and_buy_now_below_reserve_are_refused(client_a, block_of_a):
    low_reserve = client_a.post(
        AUCTIONS, new_auction(block_of_a, reserve_price_minor=1000), format="json"
    )
    low_buy_now = client_a.post(
        AUCTIONS,
        new_auction(block_of_a, reserve_price_minor=5000, buy_now_price_minor=5000),
        format="json",
    )

    assert (
        "reserve_price_minor"
        in assert_problem(low_reserve, status=422, code="validation_failed")["errors"]
    )
    assert (
        "buy_now_price_minor"
        in assert_problem(low_buy_now, status=422, code="validation_failed")["errors"]
    )
    assert not Auction.objects.exists()


@pytest.mark.parametrize("value", ["2000", 20.5, True, 0, -1])
def test_start_price_must_be_a_positive_json_integer(client_a, block_of_a, value):
    response = client_a.post(
        AUCTIONS, new_auction(block_of_a, start_price_minor=value), format="json"
    )

    body = assert_problem(response, status=400, code="validation_failed")
    assert "start_price_minor" in body["errors"]


def test_required_fields_are_named(client_a):
    response = client_a.post(AUCTIONS, {}, format="json")

    body = assert_problem(response, status=400, code="validation_failed")
    assert set(body["errors"]) == {"block", "closes_at", "start_price_minor", "currency"}


def test_a_block_is_auctioned_only_once_at_a_time(client_a, block_of_a):
    assert client_a.post(AUCTIONS, new_auction(block_of_a), format="json").status_code == 201

    response = client_a.post(AUCTIONS, new_auction(block_of_a), format="json")

    assert_problem(response, status=409, code="block_already_auctioned")
    assert Auction.objects.count() == 1


def test_idempotency_key_creates_the_auction_once(client_a, block_of_a):
    data = new_auction(block_of_a)
    headers = {"Idempotency-Key": "auction-of-block-1"}

    first = client_a.post(AUCTIONS, data, format="json", headers=headers)
    second = client_a.post(AUCTIONS, data, format="json", headers=headers)

    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second["Idempotent-Replayed"] == "true"
    assert Auction.objects.count() == 1


def test_suspended_provider_cannot_auction_its_block(provider_a, block_of_a, client_a):
    provider_a.status = ProviderStatus.SUSPENDED
    provider_a.save()

    response = client_a.post(AUCTIONS, new_auction(block_of_a), format="json")

    assert_problem(response, status=403, code="provider_not_verified")
    assert not Auction.objects.exists()


def test_buyer_organization_cannot_create_auctions(buyer_client, block_of_a):
    response = buyer_client.post(AUCTIONS, new_auction(block_of_a), format="json")

    assert_problem(response, status=403, code="not_a_provider")


def test_anonymous_caller_cannot_create_auctions(block_of_a):
    response = APIClient().post(AUCTIONS, new_auction(block_of_a), format="json")

    assert_problem(response, status=401, code="not_authenticated")
    assert not Auction.objects.exists()


def test_read_only_key_cannot_create_auctions(provider_a, block_of_a, issue_key, key_client):
    client = key_client(issue_key(provider_a.organization, scope=ApiKeyScope.READ))

    response = client.post(AUCTIONS, new_auction(block_of_a), format="json")

    assert_problem(response, status=403, code="insufficient_scope")
    assert not Auction.objects.exists()


def test_signed_in_owner_auctions_a_block_and_plain_member_may_not(
    provider_a, block_of_a, login_client
):
    member = login_client(member_of(provider_a.organization, role=Role.MEMBER))
    owner = login_client(member_of(provider_a.organization, role=Role.OWNER))

    refused = member.post(AUCTIONS, new_auction(block_of_a), content_type="application/json")
    created = owner.post(AUCTIONS, new_auction(block_of_a), content_type="application/json")

    assert_problem(refused, status=403, code="manager_role_required")
    assert created.status_code == 201, created.content


def test_provider_that_is_also_a_buyer_sees_its_auction_like_everyone(issue_key, key_client):
    provider = VerifiedProviderFactory(organization=OrganizationFactory(kind=OrganizationKind.BOTH))
    block = ServiceBlockFactory(provider=provider)
    client = key_client(issue_key(provider.organization))

    created = client.post(AUCTIONS, new_auction(block), format="json")

    assert created.status_code == 201, created.content
    assert client.get(f"{AUCTIONS}{created.json()['id']}/").json() == created.json()
