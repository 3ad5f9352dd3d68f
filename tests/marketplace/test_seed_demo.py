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
from segmentation.models import ServiceRequest
from segmentation.service_requests import plan_current

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _cards_through_localstripe(stripe_on_localstripe):
    """The demo buyers' cards are saved through localstripe, as bin/run does."""
    return stripe_on_localstripe


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


def test_the_first_demo_buyer_can_segment_a_capture_at_once(django_capture_on_commit_callbacks):
    from auctions.models import Lease
    from segmentation import services
    from segmentation.models import JobStatus
    from segmentation.selectors import leases_usable
    from tests.captures import CAPTURES_DIR

    call_command("seed_demo")
    call_command("seed_demo")
    acme = Organization.objects.get(name="Acme Analytics")
    (lease,) = leases_usable(acme, now=timezone.now())
    assert Lease.objects.count() == 1
    data = (CAPTURES_DIR / "DnsPackets.pcap").read_bytes()
    with django_capture_on_commit_callbacks(execute=False):
        job = services.job_submit(
            organization=acme,
            user=None,
            lease_id=lease.pk,
            chunks=[data],
            size=len(data),
            input_name="dns.pcap",
            spec=services.JobSpec(method="connection", pipeline=[{"service": "anonymize-ip"}]),
        )
        services.job_advance(job_id=job.pk)
        for item in job.items.all():
            services.work_item_run(item_id=item.pk)
        services.job_advance(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, job.failure_reason
    assert job.output_packets == job.packets_total > 0


def test_the_demo_buyer_has_a_service_request_answered_by_every_demo_provider(
    django_capture_on_commit_callbacks,
):
    with django_capture_on_commit_callbacks(execute=False):
        call_command("seed_demo")
        call_command("seed_demo")
    (service_request,) = ServiceRequest.objects.filter(organization__name="Acme Analytics")
    # Northwind and Bluepeak offer anonymize-ip, the profile's service; Orbital does not
    assert service_request.availability.count() == service_request.broadcast_to.count() == 2
    plan = plan_current(service_request=service_request)
    assert plan.feasible and plan.lines.count() == 3  # Northwind's path and Bluepeak's two
    owner = Client()
    assert owner.login(email="buyer@acme.demo", password=DEMO_PASSWORD)
    page = owner.get(f"/requests/{service_request.pk}/").content.decode()
    assert 'data-testid="plan-drawing"' in page


def test_the_demo_buying_group_has_two_payers_a_sponsored_handset_and_an_offer(
    django_capture_on_commit_callbacks,
):
    from auctions.groups import bid_limit_of, offer_standing
    from auctions.models import BuyingGroup

    with django_capture_on_commit_callbacks(execute=False):
        call_command("seed_demo")
        call_command("seed_demo")
    (group,) = BuyingGroup.objects.all()
    roles = sorted(group.members.values_list("kind", "role"))
    assert roles == [("phone", "sponsored"), ("user", "payer"), ("user", "payer")]
    assert bid_limit_of(group) == 80_000
    (offer,) = group.offers.all()
    assert offer_standing(offer).tipped is False  # open for the payers to accept
    founder = Client()
    assert founder.login(email="buyer@acme.demo", password=DEMO_PASSWORD)
    page = founder.get(f"/groups/{group.pk}/").content.decode()
    assert "+14155550199" in page and "600.00 USD" in page
