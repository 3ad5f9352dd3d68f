"""Blocks, auctions, bids and leases in the provider console."""

from datetime import timedelta

import pytest
from django.contrib.contenttypes.models import ContentType
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from auctions.models import Auction, AuctionStatus, Lease, ServiceBlock
from auctions.services import auction_close, bid_place
from tests.factories import (
    AuctionFactory,
    ProviderProfileFactory,
    ServiceBlockFactory,
    VerifiedProviderFactory,
    buyer,
    member_of,
)

pytestmark = pytest.mark.django_db

FORMAT = "%Y-%m-%d %H:%M:%S"


def _sold_auction(provider):
    """An auction of the provider with one bid, closed: a block, an auction, a bid, a lease."""
    auction = AuctionFactory(block__provider=provider)
    organization, user = buyer()
    bid_place(auction_id=auction.pk, bidder=organization, user=user, amount_minor=1000)
    Auction.objects.filter(pk=auction.pk).update(closes_at=timezone.now() - timedelta(seconds=1))
    auction_close(auction_id=auction.pk)
    auction.refresh_from_db()
    return {
        "serviceblock": auction.block,
        "auction": auction,
        "bid": auction.bids.get(),
        "lease": auction.lease,
    }


@pytest.fixture
def two_sellers():
    a, b = VerifiedProviderFactory(), VerifiedProviderFactory()
    objects = {a.pk: _sold_auction(a), b.pk: _sold_auction(b)}
    client = Client()
    client.force_login(member_of(a.organization))
    return client, a, b, objects


def _split(moment):
    """The admin's split date/time widget values."""
    return {"0": moment.strftime("%Y-%m-%d"), "1": moment.strftime("%H:%M:%S")}


def _block_form(starts_at, hours=3, **overrides):
    data = {
        "max_rate_mbps": "1000",
        "min_rate_mbps": "100",
        "seats": "4",
        "data_cap_gb": "",
        "description": "Evening block",
    }
    for name, moment in (("starts_at", starts_at), ("ends_at", starts_at + timedelta(hours=hours))):
        for part, value in _split(moment).items():
            data[f"{name}_{part}"] = value
    data.update(overrides)
    return data


@pytest.mark.parametrize("model_name", ["serviceblock", "auction", "bid", "lease"])
def test_every_console_url_of_another_providers_auction_objects_is_404(two_sellers, model_name):
    client, a, b, objects = two_sellers
    target = objects[b.pk][model_name]
    for action in ("change", "delete", "history"):
        url = reverse(f"console:auctions_{model_name}_{action}", args=[target.pk])
        assert client.get(url).status_code == 404, url
        assert client.post(url, {"post": "yes"}).status_code in (403, 404), url
    content_type = ContentType.objects.get_for_model(target)
    assert (
        client.get(reverse("console:view_on_site", args=[content_type.pk, target.pk])).status_code
        == 404
    )
    assert type(target).objects.filter(pk=target.pk).exists()
    listing = client.get(reverse(f"console:auctions_{model_name}_changelist"))
    assert {o.pk for o in listing.context["cl"].result_list} == {objects[a.pk][model_name].pk}


def test_the_console_shows_bidders_by_handle_not_by_name(two_sellers):
    client, a, _b, objects = two_sellers
    bid = objects[a.pk]["bid"]
    page = client.get(reverse("console:auctions_bid_changelist")).content.decode()
    assert "Bidder " in page
    assert bid.bidder.name not in page


def test_a_provider_lists_a_block_and_auctions_it_in_the_console():
    provider = VerifiedProviderFactory()
    client = Client()
    client.force_login(member_of(provider.organization))
    starts_at = (timezone.now() + timedelta(days=2)).replace(microsecond=0)
    response = client.post(reverse("console:auctions_serviceblock_add"), _block_form(starts_at))
    assert response.status_code == 302, response.content.decode()[:3000]
    block = ServiceBlock.objects.get()
    assert (block.provider, block.seats, block.starts_at) == (provider, 4, starts_at)

    opens_at = timezone.now().replace(microsecond=0)
    closes_at = opens_at + timedelta(hours=5)
    data = {
        "block": block.pk,
        "currency": "USD",
        "start_price_minor": "2500",
        "reserve_price_minor": "4000",
        "buy_now_price_minor": "",
        "soft_close_seconds": "120",
        "max_extension_seconds": "3600",
    }
    for name, moment in (("opens_at", opens_at), ("closes_at", closes_at)):
        for part, value in _split(moment).items():
            data[f"{name}_{part}"] = value
    response = client.post(reverse("console:auctions_auction_add"), data)
    assert response.status_code == 302, response.content.decode()[:3000]
    auction = Auction.objects.get()
    assert auction.status == AuctionStatus.OPEN
    assert auction.scheduled_close_at == closes_at
    assert auction.increment_bands  # the default bands


def test_console_validation_errors_are_shown_and_nothing_is_saved():
    provider = VerifiedProviderFactory()
    client = Client()
    client.force_login(member_of(provider.organization))
    starts_at = timezone.now() + timedelta(days=2)
    response = client.post(
        reverse("console:auctions_serviceblock_add"),
        _block_form(starts_at, min_rate_mbps="5000"),
    )
    assert "cannot exceed the maximum rate" in response.content.decode()
    block = ServiceBlockFactory(provider=provider)
    data = {
        "block": block.pk,
        "currency": "USD",
        "start_price_minor": "100",
        "soft_close_seconds": "120",
        "max_extension_seconds": "3600",
    }
    late = block.starts_at - timedelta(minutes=10)
    for name, moment in (("opens_at", timezone.now()), ("closes_at", late)):
        for part, value in _split(moment).items():
            data[f"{name}_{part}"] = value
    response = client.post(reverse("console:auctions_auction_add"), data)
    assert "before the block starts" in response.content.decode()
    foreign = ServiceBlockFactory()
    response = client.post(reverse("console:auctions_auction_add"), {**data, "block": foreign.pk})
    assert "Select a valid choice" in response.content.decode()
    assert not Auction.objects.exists()
    assert ServiceBlock.objects.filter(provider=provider).count() == 1


def test_an_unverified_provider_cannot_list_blocks_in_the_console():
    pending = ProviderProfileFactory()
    client = Client()
    client.force_login(member_of(pending.organization))
    response = client.post(
        reverse("console:auctions_serviceblock_add"),
        _block_form(timezone.now() + timedelta(days=2)),
    )
    assert "only verified providers can sell" in response.content.decode()
    assert not ServiceBlock.objects.exists()
    assert not Lease.objects.exists()
