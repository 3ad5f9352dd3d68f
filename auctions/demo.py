"""Demo auctions: some open and close within minutes of the portal starting, and an optional
demo bidder keeps them moving, so a newcomer sees live bidding and a close."""

import logging
import random
from datetime import timedelta

from django.utils import timezone

from auctions.models import LIVE_STATUSES, Auction
from auctions.services import (
    BidRejected,
    auction_create,
    bid_place,
    block_create,
    minimum_next_bid,
)
from marketplace.models import Organization
from providers.models import ProviderProfile

logger = logging.getLogger(__name__)

# (minutes until it opens, minutes until it closes, start, reserve, buy-now) in minor units.
DEMO_AUCTIONS = [
    (0, 3, 2000, 3000, None),
    (0, 8, 4000, None, 15000),
    (1, 12, 1500, None, None),
    (0, 45, 1000, 2500, None),
]


def demo_auctions_ensure(*, providers: list[ProviderProfile], buyers: list[Organization]) -> int:
    """Create the demo auctions unless the demo providers already have live ones; returns how
    many it created. The first gets two bids (one a proxy bid that meets the reserve)."""
    live = Auction.objects.filter(block__provider__in=providers, status__in=LIVE_STATUSES)
    if live.exists():
        return 0
    now = timezone.now().replace(microsecond=0)
    block_start = (now + timedelta(days=1)).replace(minute=0, second=0)
    created = []
    for index, (opens_in, closes_in, start, reserve, buy_now) in enumerate(DEMO_AUCTIONS):
        provider = providers[index % len(providers)]
        block = block_create(
            provider=provider,
            starts_at=block_start + timedelta(hours=3 * index),
            ends_at=block_start + timedelta(hours=3 * index + 3),
            max_rate_mbps=[10000, 2000, 400, 1000][index],
            min_rate_mbps=[1000, 500, 100, 200][index],
            seats=[10, 5, 2, 20][index],
            description="Demo block",
        )
        created.append(
            auction_create(
                block=block,
                opens_at=now + timedelta(minutes=opens_in),
                closes_at=now + timedelta(minutes=closes_in),
                start_price_minor=start,
                reserve_price_minor=reserve,
                buy_now_price_minor=buy_now,
                soft_close_seconds=60,
                max_extension_seconds=600,
            )
        )
    first = created[0]
    for organization, amount, maximum in ((buyers[0], 2000, None), (buyers[1], 2050, 4500)):
        user = organization.memberships.first().user
        bid_place(
            auction_id=first.pk,
            bidder=organization,
            user=user,
            amount_minor=amount,
            max_amount_minor=maximum,
        )
    return len(created)


def demo_bid_step(*, buyer_slugs: list[str], provider_slugs: list[str]) -> int:
    """Now and then, a demo buyer who is not leading bids the minimum on a demo auction that
    already has bids; returns how many bids it placed."""
    now = timezone.now()
    buyers = list(Organization.objects.filter(slug__in=buyer_slugs, is_active=True))
    auctions = Auction.objects.filter(
        block__provider__organization__slug__in=provider_slugs,
        status__in=LIVE_STATUSES,
        opens_at__lte=now,
        closes_at__gt=now,
        bid_count__gt=0,
    )
    placed = 0
    for auction in auctions:
        challengers = [b for b in buyers if b.pk != auction.leader_id]
        if not challengers or random.random() < 0.5:
            continue
        organization = random.choice(challengers)
        membership = organization.memberships.select_related("user").first()
        if membership is None:
            continue
        try:
            bid_place(
                auction_id=auction.pk,
                bidder=organization,
                user=membership.user,
                amount_minor=minimum_next_bid(auction),
            )
            placed += 1
        except BidRejected as rejection:
            logger.info("Demo bid on auction %s refused: %s", auction.pk, rejection.code)
    return placed


DEMO_GROUP = "Harbour Cooperative"


def demo_group_ensure(
    *, provider: ProviderProfile, buyers: list[Organization]
) -> tuple[object, object] | tuple[None, None]:
    """A demo buying group (unless it exists): the first demo buyer's owner founds it and pays
    (cap 500.00 USD), the second buyer's owner joins as a payer (40 %, cap 300.00 USD), and a
    telephone number is sponsored; the provider offers it a block, open for pledges for an
    hour. Returns (group, offer), or (None, None) when it existed already."""
    from auctions.groups import (
        group_create,
        group_offer_create,
        invitation_accept,
        member_add_phone,
        member_invite_user,
    )
    from auctions.models import BuyingGroup, MemberRole

    if BuyingGroup.objects.filter(organization__name=DEMO_GROUP).exists():
        return None, None
    founder = buyers[0].memberships.order_by("pk").first().user
    partner = buyers[1].memberships.order_by("pk").first().user
    group = group_create(
        user=founder,
        name=DEMO_GROUP,
        currency="USD",
        description="Two demo buyers sharing blocks, sponsoring a field handset.",
        role=MemberRole.PAYER,
        paying_organization=buyers[0],
        cap_minor=50_000,
    )
    invitation = member_invite_user(group=group, by=founder, email=partner.email)
    invitation_accept(
        member=invitation,
        user=partner,
        role=MemberRole.PAYER,
        paying_organization=buyers[1],
        share_bps=4_000,
        cap_minor=30_000,
    )
    member_add_phone(group=group, by=founder, phone_number="+14155550199")
    now = timezone.now().replace(microsecond=0)
    block_start = (now + timedelta(days=2)).replace(minute=0, second=0)
    block = block_create(
        provider=provider,
        starts_at=block_start,
        ends_at=block_start + timedelta(hours=6),
        max_rate_mbps=1000,
        min_rate_mbps=200,
        seats=4,
        description="Demo block offered to a group",
    )
    offer_user = provider.organization.memberships.order_by("pk").first().user
    offer = group_offer_create(
        provider=provider,
        by=offer_user,
        group=group,
        block=block,
        price_minor=60_000,
        deadline=now + timedelta(hours=1),
        message="Six hours of 1 Gbit/s for the cooperative.",
    )
    return group, offer
