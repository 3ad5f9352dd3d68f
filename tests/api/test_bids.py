"""Buyers bid and buy now through the API; everyone reads the bid history."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from auctions.live import bidder_handle
from auctions.models import Auction, AuctionStatus, Bid, BidChannel, Lease
from auctions.services import bid_place, bid_retract
from marketplace.models import ApiKey, Membership, OrganizationKind
from providers.models import ProviderStatus
from tests.api.helpers import assert_problem
from tests.factories import (
    AuctionFactory,
    OrganizationFactory,
    ProviderProfileFactory,
    StaffUserFactory,
    VerifiedProviderFactory,
    buyer,
    member_of,
)

pytestmark = pytest.mark.django_db
pytest_plugins = ["tests.api.auction_fixtures"]

BID_FIELDS = {
    "id",
    "seq",
    "auction",
    "amount_minor",
    "price_minor",
    "currency",
    "leading",
    "leader",
    "closes_at",
    "placed_at",
}


def bids_url(auction) -> str:
    return f"/api/v1/auctions/{auction.pk}/bids/"


def buy_now_url(auction) -> str:
    return f"/api/v1/auctions/{auction.pk}/buy-now/"


def post_bid(client, auction, amount_minor, **fields):
    headers = {}
    if "idempotency_key" in fields:
        headers["Idempotency-Key"] = fields.pop("idempotency_key")
    return client.post(
        bids_url(auction), {"amount_minor": amount_minor, **fields}, format="json", headers=headers
    )


def service_bid(auction, amount_minor, max_amount_minor=None):
    organization, user = buyer()
    return bid_place(
        auction_id=auction.pk,
        bidder=organization,
        user=user,
        amount_minor=amount_minor,
        max_amount_minor=max_amount_minor,
    )


def key_creator(organization):
    return ApiKey.objects.get(organization=organization).created_by


# --- The bid history ----------------------------------------------------------------------------


def test_anyone_reads_the_bids_oldest_first(auction_of_b):
    first = service_bid(auction_of_b, 1000)
    second = service_bid(auction_of_b, 1100)

    response = APIClient().get(bids_url(auction_of_b))

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2
    assert [b["seq"] for b in body["results"]] == [first.bid.seq, second.bid.seq]
    latest = body["results"][1]
    assert set(latest) == {
        "seq",
        "amount_minor",
        "price_minor",
        "bidder",
        "leader",
        "placed_at",
        "retracted_at",
    }
    assert (latest["amount_minor"], latest["price_minor"]) == (1100, 1100)
    assert latest["bidder"] == bidder_handle(auction_of_b.pk, second.bid.bidder_id)
    assert latest["leader"] == latest["bidder"]
    assert latest["retracted_at"] is None


def test_a_bid_staff_retracted_stays_in_the_history_marked_and_the_price_follows(auction_of_b):
    service_bid(auction_of_b, 1000)
    second = service_bid(auction_of_b, 1100)
    bid_retract(bid_id=second.bid.pk, staff_user=StaffUserFactory(), reason="fraud")

    history = APIClient().get(bids_url(auction_of_b)).json()["results"]
    assert [b["retracted_at"] is not None for b in history] == [False, True]
    detail = APIClient().get(f"/api/v1/auctions/{auction_of_b.pk}/").json()
    assert detail["price_minor"] == 1000


def test_bid_history_hides_maxima_and_the_reserve(secret_auction, assert_no_secret):
    response = APIClient().get(bids_url(secret_auction))

    assert response.json()["count"] == 1
    assert_no_secret(response)


def test_bid_history_of_an_unknown_auction_is_404():
    assert_problem(APIClient().get("/api/v1/auctions/424242/bids/"), status=404, code="not_found")


def test_bid_history_of_an_unverified_providers_auction_is_404():
    auction = AuctionFactory(block__provider=ProviderProfileFactory(status=ProviderStatus.PENDING))

    assert_problem(APIClient().get(bids_url(auction)), status=404, code="not_found")


# --- Placing bids -------------------------------------------------------------------------------


def test_buyer_places_a_bid(buyer_client, buyer_org, auction_of_b):
    response = post_bid(buyer_client, auction_of_b, 1000)

    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == BID_FIELDS
    handle = bidder_handle(auction_of_b.pk, buyer_org.pk)
    assert (body["amount_minor"], body["price_minor"], body["currency"]) == (1000, 1000, "USD")
    assert (body["leading"], body["leader"], body["auction"]) == (True, handle, auction_of_b.pk)
    assert body["closes_at"].endswith("Z")
    bid = Bid.objects.get()
    assert (bid.pk, bid.seq) == (body["id"], body["seq"])
    assert (bid.bidder, bid.channel) == (buyer_org, BidChannel.API)


def test_an_api_key_bids_as_the_member_who_created_it(buyer_client, buyer_org, auction_of_b):
    post_bid(buyer_client, auction_of_b, 1000)

    assert Bid.objects.get().user == key_creator(buyer_org)


def test_proxy_bid_answers_a_rival_without_showing_the_maximum(
    buyer_client, rival_client, buyer_org, auction_of_b, assert_no_secret
):
    mine = post_bid(buyer_client, auction_of_b, 1000, max_amount_minor=7_654_321)
    rivals = post_bid(rival_client, auction_of_b, 1500)

    assert rivals.status_code == 201, rivals.content
    body = rivals.json()
    assert body["leading"] is False
    assert body["leader"] == bidder_handle(auction_of_b.pk, buyer_org.pk)
    assert body["price_minor"] == 1550
    assert_no_secret(mine)
    assert_no_secret(rivals)
    assert_no_secret(APIClient().get(bids_url(auction_of_b)))


def test_soft_close_extension_shows_in_the_answer(buyer_client, provider_b):
    auction = AuctionFactory(
        block__provider=provider_b, closes_at=timezone.now() + timedelta(seconds=30)
    )

    response = post_bid(buyer_client, auction, 1000)

    assert response.status_code == 201, response.content
    auction.refresh_from_db()
    assert auction.extensions == 1
    assert response.json()["closes_at"] == auction.closes_at.isoformat().replace("+00:00", "Z")


def test_same_client_bid_id_returns_the_first_outcome_with_200(
    buyer_client, rival_client, auction_of_b
):
    first = post_bid(buyer_client, auction_of_b, 1000, client_bid_id="my-bid-1")
    again = post_bid(buyer_client, auction_of_b, 1000, client_bid_id="my-bid-1")

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert Bid.objects.count() == 1


def test_client_bid_id_replay_works_after_the_auction_closed(buyer_client, auction_of_b):
    first = post_bid(buyer_client, auction_of_b, 1000, client_bid_id="late-retry")
    Auction.objects.filter(pk=auction_of_b.pk).update(status=AuctionStatus.CLOSED)

    again = post_bid(buyer_client, auction_of_b, 1000, client_bid_id="late-retry")

    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]


def test_client_bid_ids_are_per_bidder(buyer_client, rival_client, auction_of_b):
    post_bid(buyer_client, auction_of_b, 1000, client_bid_id="same")

    response = post_bid(rival_client, auction_of_b, 1100, client_bid_id="same")

    assert response.status_code == 201
    assert Bid.objects.count() == 2


def test_idempotency_key_replays_the_bid_response(buyer_client, auction_of_b):
    first = post_bid(buyer_client, auction_of_b, 1000, idempotency_key="bid-7")
    second = post_bid(buyer_client, auction_of_b, 1000, idempotency_key="bid-7")

    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second["Idempotent-Replayed"] == "true"
    assert Bid.objects.count() == 1


def test_idempotency_key_with_another_amount_is_422(buyer_client, auction_of_b):
    post_bid(buyer_client, auction_of_b, 1000, idempotency_key="bid-8")

    response = post_bid(buyer_client, auction_of_b, 2000, idempotency_key="bid-8")

    assert_problem(response, status=422, code="idempotency_key_reused")
    assert Bid.objects.count() == 1


def test_refused_bid_stores_no_idempotent_answer(buyer_client, auction_of_b):
    refused = post_bid(buyer_client, auction_of_b, 10, idempotency_key="bid-9")
    fixed = post_bid(buyer_client, auction_of_b, 1000, idempotency_key="bid-9")

    assert_problem(refused, status=422, code="bid_too_low")
    assert fixed.status_code == 201, fixed.content


@pytest.mark.parametrize("value", ["1000", 1000.0, 1000.5, True, -5, None, [1000]])
def test_amount_must_be_a_non_negative_json_integer(buyer_client, auction_of_b, value):
    response = buyer_client.post(bids_url(auction_of_b), {"amount_minor": value}, format="json")

    body = assert_problem(response, status=400, code="validation_failed")
    assert "amount_minor" in body["errors"]
    assert not Bid.objects.exists()


@pytest.mark.parametrize("value", ["5000", 5000.0, False, -1])
def test_maximum_must_be_a_non_negative_json_integer(buyer_client, auction_of_b, value):
    response = post_bid(buyer_client, auction_of_b, 1000, max_amount_minor=value)

    body = assert_problem(response, status=400, code="validation_failed")
    assert "max_amount_minor" in body["errors"]
    assert not Bid.objects.exists()


def test_amount_is_required(buyer_client, auction_of_b):
    response = buyer_client.post(bids_url(auction_of_b), {}, format="json")

    body = assert_problem(response, status=400, code="validation_failed")
    assert set(body["errors"]) == {"amount_minor"}


def test_client_bid_id_longer_than_64_characters_is_refused(buyer_client, auction_of_b):
    response = post_bid(buyer_client, auction_of_b, 1000, client_bid_id="x" * 65)

    assert_problem(response, status=400, code="validation_failed")


# --- Every rejection code -----------------------------------------------------------------------


def test_zero_bid_is_400_invalid_amount(buyer_client, auction_of_b):
    response = post_bid(buyer_client, auction_of_b, 0)

    assert_problem(response, status=400, code="invalid_amount")
    assert not Bid.objects.exists()


def test_maximum_below_the_bid_is_422_invalid_amount(buyer_client, auction_of_b):
    response = post_bid(buyer_client, auction_of_b, 2000, max_amount_minor=1500)

    assert_problem(response, status=422, code="invalid_amount")


def test_bid_below_the_start_price_is_422_with_the_minimum(buyer_client, auction_of_b):
    response = post_bid(buyer_client, auction_of_b, 999)

    body = assert_problem(response, status=422, code="bid_too_low")
    assert body["minimum_minor"] == 1000
    assert not Bid.objects.exists()


def test_bid_below_the_increment_is_422_with_the_minimum(rival_client, buyer_client, auction_of_b):
    post_bid(buyer_client, auction_of_b, 1000)

    response = post_bid(rival_client, auction_of_b, 1049)

    body = assert_problem(response, status=422, code="bid_too_low")
    assert body["minimum_minor"] == 1050


def test_leader_bidding_again_without_a_higher_maximum_is_409_already_leading(
    buyer_client, auction_of_b
):
    post_bid(buyer_client, auction_of_b, 1000, max_amount_minor=3000)

    response = post_bid(buyer_client, auction_of_b, 2000, max_amount_minor=3000)

    assert_problem(response, status=409, code="already_leading")
    assert Bid.objects.count() == 1


def test_leader_raising_the_maximum_keeps_the_price(buyer_client, auction_of_b):
    post_bid(buyer_client, auction_of_b, 1000)

    response = post_bid(buyer_client, auction_of_b, 1100, max_amount_minor=5000)

    assert response.status_code == 201, response.content
    assert (response.json()["price_minor"], response.json()["leading"]) == (1000, True)


@pytest.mark.parametrize(
    "state",
    [
        {"status": AuctionStatus.CLOSED},
        {"status": AuctionStatus.NO_SALE},
        {"status": AuctionStatus.CANCELLED},
        {"closes_at_delta": timedelta(seconds=-1)},
        {"status": AuctionStatus.SCHEDULED, "opens_at_delta": timedelta(hours=1)},
    ],
    ids=["closed", "no-sale", "cancelled", "past-close", "not-yet-open"],
)
def test_bid_outside_the_bidding_time_is_409_auction_not_open(buyer_client, provider_b, state):
    now = timezone.now()
    opens_at = now + state.get("opens_at_delta", timedelta(minutes=-10))
    closes_at = now + state.get("closes_at_delta", timedelta(hours=2))
    auction = AuctionFactory(
        block__provider=provider_b,
        status=state.get("status", AuctionStatus.OPEN),
        opens_at=opens_at,
        closes_at=closes_at,
    )

    response = post_bid(buyer_client, auction, 5000)

    assert_problem(response, status=409, code="auction_not_open")
    assert not Bid.objects.exists()


def test_bid_on_ones_own_organizations_auction_is_403_own_auction(issue_key, key_client):
    both = VerifiedProviderFactory(organization=OrganizationFactory(kind=OrganizationKind.BOTH))
    auction = AuctionFactory(block__provider=both)
    client = key_client(issue_key(both.organization))

    response = post_bid(client, auction, 1000)

    assert_problem(response, status=403, code="own_auction")
    assert not Bid.objects.exists()


def test_provider_only_organization_is_403_not_a_buyer(client_a, auction_of_b):
    response = post_bid(client_a, auction_of_b, 1000)

    assert_problem(response, status=403, code="not_a_buyer")


def test_key_whose_creator_left_the_organization_is_403_not_a_buyer(
    buyer_client, buyer_org, auction_of_b
):
    Membership.objects.filter(user=key_creator(buyer_org), organization=buyer_org).delete()

    response = post_bid(buyer_client, auction_of_b, 1000)

    body = assert_problem(response, status=403, code="not_a_buyer")
    assert "issue a new key" in body["detail"]
    assert not Bid.objects.exists()


def test_key_whose_creator_was_deactivated_is_403_not_a_buyer(
    buyer_client, buyer_org, auction_of_b
):
    creator = key_creator(buyer_org)
    creator.is_active = False
    creator.save()

    assert_problem(post_bid(buyer_client, auction_of_b, 1000), status=403, code="not_a_buyer")


def test_key_whose_creator_was_deleted_is_403_not_a_buyer(buyer_client, buyer_org, auction_of_b):
    key_creator(buyer_org).delete()

    assert_problem(post_bid(buyer_client, auction_of_b, 1000), status=403, code="not_a_buyer")


def test_key_whose_creator_left_still_reads(buyer_client, buyer_org, auction_of_b):
    Membership.objects.filter(user=key_creator(buyer_org), organization=buyer_org).delete()

    assert buyer_client.get(bids_url(auction_of_b)).status_code == 200


def test_bid_on_an_unknown_auction_is_404_auction_not_found(buyer_client):
    response = buyer_client.post(
        "/api/v1/auctions/424242/bids/", {"amount_minor": 1000}, format="json"
    )

    assert_problem(response, status=404, code="auction_not_found")


def test_bid_on_an_unverified_providers_auction_is_404_auction_not_found(buyer_client):
    auction = AuctionFactory(
        block__provider=ProviderProfileFactory(status=ProviderStatus.SUSPENDED)
    )

    response = post_bid(buyer_client, auction, 1000)

    assert_problem(response, status=404, code="auction_not_found")
    assert not Bid.objects.exists()


def test_anonymous_bid_is_401(auction_of_b):
    response = post_bid(APIClient(), auction_of_b, 1000)

    assert_problem(response, status=401, code="not_authenticated")
    assert not Bid.objects.exists()


def test_read_only_key_cannot_bid(read_only_buyer_client, auction_of_b):
    response = post_bid(read_only_buyer_client, auction_of_b, 1000)

    assert_problem(response, status=403, code="insufficient_scope")
    assert not Bid.objects.exists()


# --- Session --------------------------------------------------------------------------------------


def test_signed_in_buyer_bids_as_themselves(auction_of_b, login_client):
    organization, user = buyer()
    client = login_client(user)

    response = client.post(
        bids_url(auction_of_b), {"amount_minor": 1000}, content_type="application/json"
    )

    assert response.status_code == 201, response.content
    bid = Bid.objects.get()
    assert (bid.bidder, bid.user) == (organization, user)


def test_signed_in_user_without_an_organization_is_403_not_a_buyer(
    auction_of_b, user, login_client
):
    response = login_client(user).post(
        bids_url(auction_of_b), {"amount_minor": 1000}, content_type="application/json"
    )

    assert_problem(response, status=403, code="not_a_buyer")


def test_signed_in_provider_member_is_403_not_a_buyer(auction_of_b, provider_a, login_client):
    client = login_client(member_of(provider_a.organization))

    response = client.post(
        bids_url(auction_of_b), {"amount_minor": 1000}, content_type="application/json"
    )

    assert_problem(response, status=403, code="not_a_buyer")


# --- Buy now ------------------------------------------------------------------------------------


@pytest.fixture
def buy_now_auction(provider_b) -> Auction:
    return AuctionFactory(block__provider=provider_b, buy_now_price_minor=40_000)


def test_buyer_buys_now_and_gets_a_lease(buyer_client, buyer_org, buy_now_auction):
    response = buyer_client.post(buy_now_url(buy_now_auction))

    assert response.status_code == 201, response.content
    body = response.json()
    lease = Lease.objects.get()
    assert body["id"] == lease.pk
    assert (body["price_minor"], body["currency"], body["bought_now"]) == (40_000, "USD", True)
    assert body["winner"] == bidder_handle(buy_now_auction.pk, buyer_org.pk)
    assert (lease.winner, lease.winner_user) == (buyer_org, key_creator(buyer_org))
    detail = APIClient().get(f"/api/v1/auctions/{buy_now_auction.pk}/").json()
    assert detail["status"] == "closed"
    assert detail["lease"] == body


def test_buy_now_after_the_first_bid_is_409_buy_now_unavailable(
    buyer_client, rival_client, buy_now_auction
):
    post_bid(rival_client, buy_now_auction, 1000)

    response = buyer_client.post(buy_now_url(buy_now_auction))

    assert_problem(response, status=409, code="buy_now_unavailable")
    assert not Lease.objects.exists()


def test_buy_now_without_a_buy_now_price_is_409_buy_now_unavailable(buyer_client, auction_of_b):
    response = buyer_client.post(buy_now_url(auction_of_b))

    assert_problem(response, status=409, code="buy_now_unavailable")


def test_bid_after_buy_now_is_409_auction_not_open(buyer_client, rival_client, buy_now_auction):
    buyer_client.post(buy_now_url(buy_now_auction))

    second_buy = rival_client.post(buy_now_url(buy_now_auction))
    late_bid = post_bid(rival_client, buy_now_auction, 1000)

    assert_problem(second_buy, status=409, code="auction_not_open")
    assert_problem(late_bid, status=409, code="auction_not_open")
    assert Lease.objects.count() == 1


def test_buy_now_with_idempotency_key_buys_once(buyer_client, buy_now_auction):
    headers = {"Idempotency-Key": "buy-1"}

    first = buyer_client.post(buy_now_url(buy_now_auction), headers=headers)
    second = buyer_client.post(buy_now_url(buy_now_auction), headers=headers)

    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second["Idempotent-Replayed"] == "true"
    assert Lease.objects.count() == 1


def test_buy_now_on_ones_own_auction_is_403_own_auction(issue_key, key_client):
    both = VerifiedProviderFactory(organization=OrganizationFactory(kind=OrganizationKind.BOTH))
    auction = AuctionFactory(block__provider=both, buy_now_price_minor=40_000)

    response = key_client(issue_key(both.organization)).post(buy_now_url(auction))

    assert_problem(response, status=403, code="own_auction")


def test_buy_now_needs_a_buyer_a_write_key_and_a_visible_auction(
    client_a, read_only_buyer_client, buyer_client, buy_now_auction
):
    hidden = AuctionFactory(
        block__provider=ProviderProfileFactory(status=ProviderStatus.PENDING),
        buy_now_price_minor=40_000,
    )

    assert_problem(
        APIClient().post(buy_now_url(buy_now_auction)), status=401, code="not_authenticated"
    )
    assert_problem(
        read_only_buyer_client.post(buy_now_url(buy_now_auction)),
        status=403,
        code="insufficient_scope",
    )
    assert_problem(client_a.post(buy_now_url(buy_now_auction)), status=403, code="not_a_buyer")
    assert_problem(buyer_client.post(buy_now_url(hidden)), status=404, code="auction_not_found")
    assert not Lease.objects.exists()


def test_schema_documents_bidding_with_an_api_key_and_the_rejections(client):
    schema = client.get("/api/schema/", {"format": "json"}).json()

    operation = schema["paths"]["/api/v1/auctions/{id}/bids/"]["post"]
    assert "Idempotency-Key" in [p["name"] for p in operation["parameters"]]
    assert "member who created it" in operation["description"]
    assert {"200", "201", "400", "401", "403", "404", "409", "422"} <= set(operation["responses"])
    assert "bid_too_low" in operation["responses"]["422"]["description"]
    assert "not_a_buyer" in operation["responses"]["403"]["description"]
