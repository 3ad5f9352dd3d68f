"""Reads for auctions: the public list with its filters, one auction's live snapshot."""

from datetime import datetime, timedelta

from django.db.models import QuerySet
from django.utils import timezone

from auctions.live import bidder_handle
from auctions.models import LIVE_STATUSES, Auction, AuctionStatus, Bid, Lease
from auctions.services import minimum_next_bid
from marketplace.models import Organization
from providers.models import ProviderStatus

SNAPSHOT_BIDS = 20
CLOSING_SOON = timedelta(hours=1)


def auctions_public() -> QuerySet[Auction]:
    """Auctions anyone may see: those of verified providers."""
    return Auction.objects.filter(block__provider__status=ProviderStatus.VERIFIED).select_related(
        "block__provider__organization", "leader"
    )


def auctions_filter(
    queryset: QuerySet[Auction],
    *,
    status: str | None = None,
    provider_slug: str | None = None,
    closes_before: datetime | None = None,
    closing_soon: bool = False,
    min_rate_mbps: int | None = None,
    max_rate_mbps: int | None = None,
) -> QuerySet[Auction]:
    """The list's filters; `status="live"` means scheduled or open."""
    if status == "live":
        queryset = queryset.filter(status__in=LIVE_STATUSES)
    elif status:
        queryset = queryset.filter(status=status)
    if provider_slug:
        queryset = queryset.filter(block__provider__organization__slug=provider_slug)
    if closing_soon:
        queryset = queryset.filter(
            status__in=LIVE_STATUSES, closes_at__lte=timezone.now() + CLOSING_SOON
        )
    if closes_before is not None:
        queryset = queryset.filter(closes_at__lt=closes_before)
    if min_rate_mbps is not None:
        queryset = queryset.filter(block__max_rate_mbps__gte=min_rate_mbps)
    if max_rate_mbps is not None:
        queryset = queryset.filter(block__max_rate_mbps__lte=max_rate_mbps)
    return queryset


def bids_recent(*, auction: Auction, limit: int = SNAPSHOT_BIDS) -> list[Bid]:
    """The latest bids that stand (accepted, not retracted by staff), oldest first."""
    standing = auction.bids.filter(retracted_at__isnull=True)
    return list(reversed(standing.order_by("-seq")[:limit]))


def bid_public(bid: Bid) -> dict:
    """A bid as every watcher may see it: no maxima, bidders by handle."""
    return {
        "seq": bid.seq,
        "amount_minor": bid.amount_minor,
        "price_minor": bid.price_after_minor,
        "bidder": bidder_handle(bid.auction_id, bid.bidder_id),
        "leader": bidder_handle(bid.auction_id, bid.leader_after_id),
        "placed_at": bid.placed_at.isoformat(),
        # Exchange staff may retract a bid; it stays in the history, counting no more.
        "retracted_at": bid.retracted_at.isoformat() if bid.retracted_at else None,
    }


def auction_snapshot(*, auction: Auction, viewer: Organization | None = None) -> dict:
    """Everything a watcher's page needs to draw the auction, as of `auction.seq`."""
    now = timezone.now()
    live = auction.status in LIVE_STATUSES
    snapshot = {
        "type": "snapshot",
        "auction_id": auction.pk,
        "seq": auction.seq,
        "status": auction.status,
        "open": live and auction.opens_at <= now < auction.closes_at,
        "currency": auction.currency,
        "start_price_minor": auction.start_price_minor,
        "price_minor": auction.current_price_minor,
        "min_next_minor": minimum_next_bid(auction) if live else None,
        "leader": bidder_handle(auction.pk, auction.leader_id),
        "bid_count": auction.bid_count,
        "has_reserve": auction.reserve_price_minor is not None,
        "reserve_met": auction.reserve_met,
        "buy_now_minor": auction.buy_now_price_minor if auction.buy_now_available else None,
        "opens_at": auction.opens_at.isoformat(),
        "closes_at": auction.closes_at.isoformat(),
        "server_time": now.isoformat(),
        "bids": [bid_public(bid) for bid in bids_recent(auction=auction)],
    }
    if viewer is not None:
        snapshot["you"] = bidder_handle(auction.pk, viewer.pk)
        snapshot["you_lead"] = auction.leader_id == viewer.pk
    return snapshot


def lease_of(*, auction: Auction) -> Lease | None:
    return Lease.objects.filter(auction=auction).select_related("winner").first()


def auction_is_ended(auction: Auction) -> bool:
    return auction.status in (AuctionStatus.CLOSED, AuctionStatus.NO_SALE, AuctionStatus.CANCELLED)
