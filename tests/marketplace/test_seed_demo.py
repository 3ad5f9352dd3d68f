from datetime import timedelta

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from auctions.demo import demo_bid_step
from auctions.models import Auction
from marketplace.management.commands.seed_demo import DEMO_PASSWORD, STAFF_EMAIL, demo_slugs
from marketplace.models import Organization, User
from providers.models import Network, Offer, ProviderProfile, ProviderStatus, RoutingPath

pytestmark = pytest.mark.django_db


def _counts():
    return [
        m.objects.count()
        for m in (User, Organization, ProviderProfile, Network, RoutingPath, Offer)
    ]


def test_seed_demo_creates_verified_providers_and_buyers_and_is_idempotent(capsys):
    call_command("seed_demo")
    first = _counts()
    call_command("seed_demo")
    assert _counts() == first
    providers = ProviderProfile.objects.all()
    assert providers.count() == 3
    assert {p.status for p in providers} == {ProviderStatus.VERIFIED}
    assert all(p.verified_by.email == STAFF_EMAIL for p in providers)
    assert all(p.routing_paths.exists() and p.offers.exists() for p in providers)
    buyers = Organization.objects.filter(kind="recipient")
    assert buyers.count() == 2
    assert "buyer@acme.demo" in capsys.readouterr().out
    assert Client().login(email="buyer@acme.demo", password=DEMO_PASSWORD)
    live = Auction.objects.filter(status__in=["open", "scheduled"]).order_by("closes_at")
    assert live.count() == 4
    first = live.first()
    assert first.closes_at - timezone.now() < timedelta(minutes=4)
    assert first.bid_count == 2 and first.reserve_met
    assert all(a.closes_at < a.block.starts_at for a in live)
    staff = Client()
    assert staff.login(email=STAFF_EMAIL, password=DEMO_PASSWORD)
    assert staff.get("/admin/").status_code == 200


def test_the_demo_bidder_outbids_the_leader_on_demo_auctions(monkeypatch):
    call_command("seed_demo")
    first = Auction.objects.filter(bid_count=2).get()
    leader, price = first.leader_id, first.current_price_minor
    monkeypatch.setattr("auctions.demo.random.random", lambda: 0.9)
    buyers, providers = demo_slugs()
    assert demo_bid_step(buyer_slugs=buyers, provider_slugs=providers) == 1
    first.refresh_from_db()
    assert first.bid_count == 3
    assert first.current_price_minor > price
    # The proxy of the leader may answer, but the bid came from the other demo buyer.
    assert first.bids.order_by("-seq").first().bidder_id != leader
