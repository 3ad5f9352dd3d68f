"""Demo data for jobs: a lease that runs now, so a demo buyer can segment a capture at once."""

from datetime import timedelta

from django.utils import timezone

from auctions.models import Auction, AuctionStatus, Lease, ServiceBlock
from marketplace.models import Organization
from providers.models import ProviderProfile

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
