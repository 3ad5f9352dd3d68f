"""Fixtures shared by the auction, bid and block API tests.

Test modules load them with ``pytest_plugins = ["tests.api.auction_fixtures"]`` and ask for them
by name; they do not import this module.
"""

from collections.abc import Callable

import pytest

from auctions.models import Auction
from auctions.services import bid_place
from marketplace.models import ApiKeyScope
from tests.factories import AuctionFactory, ServiceBlockFactory, buyer

# Distinctive amounts: a response that contains one of them leaks a secret.
SECRET_RESERVE = 8_765_432
SECRET_MAXIMUM = 7_654_321  # below the reserve, so the price stays below it too
SECRET_WORDS = ("reserve_price", "max_amount", "leader_max", "maximum_minor")


@pytest.fixture
def auction_of_b(provider_b) -> Auction:
    """An open auction of provider B: closes in an hour, start price 10.00 USD."""
    return AuctionFactory(block__provider=provider_b)


@pytest.fixture
def secret_auction(provider_b) -> Auction:
    """An open auction of provider B with a hidden reserve, led by a proxy bid whose maximum
    is secret too."""
    auction = AuctionFactory(block__provider=provider_b, reserve_price_minor=SECRET_RESERVE)
    organization, user = buyer()
    bid_place(
        auction_id=auction.pk,
        bidder=organization,
        user=user,
        amount_minor=1000,
        max_amount_minor=SECRET_MAXIMUM,
    )
    auction.refresh_from_db()
    return auction


@pytest.fixture
def assert_no_secret() -> Callable:
    """Returns a check that a response shows neither the reserve nor any proxy maximum."""

    def check(response) -> None:
        text = response.content.decode()
        for secret in (str(SECRET_RESERVE), str(SECRET_MAXIMUM), *SECRET_WORDS):
            if secret in text:
                raise AssertionError(f"{secret!r} leaks in {text}")

    return check


@pytest.fixture
def block_of_a(provider_a):
    return ServiceBlockFactory(provider=provider_a)


@pytest.fixture
def block_of_b(provider_b):
    return ServiceBlockFactory(provider=provider_b)


@pytest.fixture
def buyer_org(db):
    organization, _ = buyer()
    return organization


@pytest.fixture
def buyer_client(buyer_org, issue_key, key_client):
    """A write-scoped API client of a buyer organization; its key was created by an owner."""
    return key_client(issue_key(buyer_org))


@pytest.fixture
def rival_client(issue_key, key_client):
    """A write-scoped API client of a second buyer organization."""
    organization, _ = buyer()
    return key_client(issue_key(organization))


@pytest.fixture
def read_only_buyer_client(buyer_org, issue_key, key_client):
    return key_client(issue_key(buyer_org, scope=ApiKeyScope.READ))
