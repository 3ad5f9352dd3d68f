"""Demo data for jobs and service requests: a lease that runs now, so a demo buyer can segment a
capture at once; and a service request the demo providers have answered, with its plan."""

from datetime import timedelta

from django.utils import timezone

from auctions.models import Auction, AuctionStatus, Lease, ServiceBlock
from marketplace.models import ClientDevice, Organization
from marketplace.services import client_device_register
from providers.models import ProviderProfile
from segmentation.models import SegmentationProfile, ServiceRequest
from segmentation.service_requests import (
    PathOffer,
    RequestSpec,
    availability_submit,
    service_request_create,
)
from segmentation.services import JobSpec, ProfilePlanning, segmentation_profile_save

DEMO_BLOCK_DESCRIPTION = "Demo block for jobs (leased to a demo buyer)"


def demo_lease_ensure(*, provider: ProviderProfile, buyer: Organization) -> Lease:
    """A lease of `provider`'s block to `buyer`, running from an hour ago for thirty days:
    its block was auctioned and won (a closed auction), as every lease is."""
    lease = Lease.objects.filter(
        block__provider=provider, block__description=DEMO_BLOCK_DESCRIPTION, winner=buyer
    ).first()
    if lease is not None and lease.ends_at > timezone.now() + timedelta(days=1):
        return lease
    now = timezone.now()
    block = ServiceBlock.objects.create(
        provider=provider,
        starts_at=now - timedelta(hours=1),
        ends_at=now + timedelta(days=30),
        max_rate_mbps=1000,
        min_rate_mbps=100,
        seats=5,
        description=DEMO_BLOCK_DESCRIPTION,
    )
    closed_at = now - timedelta(hours=2)
    auction = Auction.objects.create(
        block=block,
        opens_at=now - timedelta(days=1),
        closes_at=closed_at,
        scheduled_close_at=closed_at,
        currency="USD",
        start_price_minor=5000,
        status=AuctionStatus.CLOSED,
        current_price_minor=5000,
        leader=buyer,
        leader_max_minor=5000,
        bid_count=1,
        closed_at=closed_at,
    )
    return Lease.objects.create(
        auction=auction,
        block=block,
        winner=buyer,
        price_minor=5000,
        currency="USD",
        starts_at=block.starts_at,
        ends_at=block.ends_at,
    )


def demo_service_request_ensure(
    *, providers: list[ProviderProfile], buyer: Organization
) -> ServiceRequest | None:
    """A device, a profile and an open service request of `buyer` that every demo provider
    has answered (valid for a week), so its page shows a plan at once. None when the buyer
    already has a request (the demo is seeded again)."""
    if ServiceRequest.objects.filter(organization=buyer).exists():
        return None
    device = ClientDevice.objects.filter(organization=buyer).first() or client_device_register(
        organization=buyer,
        name="Edge probe 1",
        identifier="PROBE-0001",
        phone_number="+14155550123",
    )
    profile = SegmentationProfile.objects.filter(organization=buyer, name="Balanced").first()
    if profile is None:
        profile = segmentation_profile_save(
            organization=buyer,
            name="Balanced",
            spec=JobSpec(
                method="connection",
                param="16",
                pipeline=[{"service": "anonymize-ip"}],
                preferred_providers=[{"provider": providers[0].pk, "weight": 0.2}],
            ),
            planning=ProfilePlanning(cost_weight=0.3),
        )
    now = timezone.now()
    service_request = service_request_create(
        organization=buyer,
        user=None,
        spec=RequestSpec(
            profile=profile,
            data_bytes=20 * 10**9,
            deadline=now + timedelta(days=7),
            device=device,
            price_limit_minor=6000,
        ),
    )
    for provider in service_request.broadcast_to.all():
        offer = provider.offers.get(service="segmentation")
        availability_submit(
            provider=provider,
            service_request=service_request,
            paths=[
                PathOffer(path.pk, max(1, path.capacity_mbps * 3 // 4))
                for path in provider.routing_paths.all()
            ],
            price_per_gb_minor=offer.price_per_gb_minor,
            currency=service_request.currency,
            valid_until=now + timedelta(days=7),
        )
    return service_request
