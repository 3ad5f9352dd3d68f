"""Blocks of segmentation-service time, their auctions, bids and the leases auctions create."""

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from marketplace.models import Organization
from marketplace.money import CURRENCY_CHOICES, currency_validate
from providers.models import ProviderProfile

# eBay-like bands in minor units: from this price on, bids rise by at least this much.
DEFAULT_INCREMENT_BANDS = [
    {"from_minor": 0, "increment_minor": 5},
    {"from_minor": 100, "increment_minor": 25},
    {"from_minor": 500, "increment_minor": 50},
    {"from_minor": 2500, "increment_minor": 100},
    {"from_minor": 10000, "increment_minor": 250},
    {"from_minor": 25000, "increment_minor": 500},
    {"from_minor": 50000, "increment_minor": 1000},
    {"from_minor": 100000, "increment_minor": 2500},
    {"from_minor": 500000, "increment_minor": 5000},
]


def default_increment_bands():
    return [dict(band) for band in DEFAULT_INCREMENT_BANDS]


class ServiceBlock(models.Model):
    """A block of time of a provider's segmentation service, with its rates and seats."""

    provider = models.ForeignKey(ProviderProfile, on_delete=models.CASCADE, related_name="blocks")
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    max_rate_mbps = models.PositiveIntegerField("max data transfer rate (Mbit/s)")
    min_rate_mbps = models.PositiveIntegerField("guaranteed min data transfer rate (Mbit/s)")
    seats = models.PositiveIntegerField(
        default=1, help_text="How many client devices, users or telephone numbers may share it."
    )
    data_cap_gb = models.PositiveIntegerField("data cap (GB)", null=True, blank=True)
    description = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["starts_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(ends_at__gt=F("starts_at")),
                name="serviceblock_ends_after_start",
                violation_error_message="A block must end after it starts.",
            ),
            models.CheckConstraint(
                condition=Q(min_rate_mbps__lte=F("max_rate_mbps")),
                name="serviceblock_min_rate_not_above_max",
                violation_error_message="The guaranteed rate cannot exceed the maximum rate.",
            ),
            models.CheckConstraint(
                condition=Q(max_rate_mbps__gte=1),
                name="serviceblock_max_rate_positive",
                violation_error_message="The maximum rate must be at least 1 Mbit/s.",
            ),
            models.CheckConstraint(
                condition=Q(seats__gte=1),
                name="serviceblock_seats_positive",
                violation_error_message="A block has at least one seat.",
            ),
        ]

    def __str__(self):
        return (
            f"{self.provider} {self.starts_at:%Y-%m-%d %H:%M} to {self.ends_at:%H:%M} "
            f"({self.max_rate_mbps} Mbit/s)"
        )

    @property
    def duration_minutes(self) -> int:
        return int((self.ends_at - self.starts_at).total_seconds() // 60)


class AuctionStatus(models.TextChoices):
    SCHEDULED = "scheduled", "Scheduled"
    OPEN = "open", "Open"
    CLOSED = "closed", "Closed"
    NO_SALE = "no_sale", "No sale"
    CANCELLED = "cancelled", "Cancelled"


# Statuses in which an auction still runs (bids may arrive once it has opened).
LIVE_STATUSES = (AuctionStatus.SCHEDULED, AuctionStatus.OPEN)
ENDED_STATUSES = (AuctionStatus.CLOSED, AuctionStatus.NO_SALE, AuctionStatus.CANCELLED)


class Auction(models.Model):
    """A timed English auction of one service block, with proxy bidding and soft close."""

    block = models.ForeignKey(ServiceBlock, on_delete=models.PROTECT, related_name="auctions")
    opens_at = models.DateTimeField()
    closes_at = models.DateTimeField(help_text="Moves later when a bid arrives in the soft close.")
    scheduled_close_at = models.DateTimeField(help_text="The close before any extension.")
    currency = models.CharField(
        max_length=3, choices=CURRENCY_CHOICES, default="USD", validators=[currency_validate]
    )
    start_price_minor = models.PositiveBigIntegerField()
    reserve_price_minor = models.PositiveBigIntegerField(null=True, blank=True)
    buy_now_price_minor = models.PositiveBigIntegerField(null=True, blank=True)
    increment_bands = models.JSONField(default=default_increment_bands)
    soft_close_seconds = models.PositiveIntegerField(default=120)
    max_extension_seconds = models.PositiveIntegerField(
        default=3600, help_text="Soft close never moves the close beyond this after schedule."
    )
    extensions = models.PositiveIntegerField(default=0)
    status = models.CharField(
        max_length=16, choices=AuctionStatus.choices, default=AuctionStatus.SCHEDULED
    )
    current_price_minor = models.PositiveBigIntegerField(null=True, blank=True)
    leader = models.ForeignKey(
        Organization, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    leader_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # The leader's hidden proxy maximum: never shown to anyone else.
    leader_max_minor = models.PositiveBigIntegerField(null=True, blank=True)
    bid_count = models.PositiveIntegerField(default=0)
    seq = models.PositiveBigIntegerField(default=0, help_text="Number of the last live event.")
    closed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["closes_at"]
        indexes = [models.Index(fields=["status", "closes_at"], name="auction_status_closes_idx")]
        constraints = [
            models.CheckConstraint(
                condition=Q(closes_at__gt=F("opens_at")),
                name="auction_closes_after_opening",
                violation_error_message="An auction must close after it opens.",
            ),
            models.CheckConstraint(
                condition=Q(start_price_minor__gte=1),
                name="auction_start_price_positive",
                violation_error_message="The start price must be positive.",
            ),
            models.CheckConstraint(
                condition=Q(reserve_price_minor__isnull=True)
                | Q(reserve_price_minor__gte=F("start_price_minor")),
                name="auction_reserve_not_below_start",
                violation_error_message="The reserve cannot be below the start price.",
            ),
            models.CheckConstraint(
                condition=Q(buy_now_price_minor__isnull=True)
                | Q(buy_now_price_minor__gt=F("start_price_minor")),
                name="auction_buy_now_above_start",
                violation_error_message="The buy-now price must be above the start price.",
            ),
            models.CheckConstraint(
                condition=Q(status__in=AuctionStatus.values), name="auction_status_valid"
            ),
            models.UniqueConstraint(
                fields=["block"],
                condition=Q(status__in=["scheduled", "open", "closed"]),
                name="auction_one_live_or_sold_per_block",
                violation_error_code="block_already_auctioned",
                violation_error_message="This block already has an auction.",
            ),
        ]

    def __str__(self):
        return f"Auction #{self.pk} of {self.block}"

    @property
    def provider(self) -> ProviderProfile:
        return self.block.provider

    @property
    def reserve_met(self) -> bool:
        if self.reserve_price_minor is None:
            return self.current_price_minor is not None
        return self.current_price_minor is not None and (
            self.current_price_minor >= self.reserve_price_minor
        )

    @property
    def buy_now_available(self) -> bool:
        """Buy-now is offered only until the first bid (which also covers the reserve)."""
        return (
            self.buy_now_price_minor is not None
            and self.bid_count == 0
            and self.status in LIVE_STATUSES
        )


class BidChannel(models.TextChoices):
    WEB = "web", "Web form"
    WEBSOCKET = "ws", "Live page"
    API = "api", "API"


class Bid(models.Model):
    """An accepted bid. A bid with a maximum is a proxy bid: the exchange raises it as needed."""

    auction = models.ForeignKey(Auction, on_delete=models.CASCADE, related_name="bids")
    bidder = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="bids")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="bids"
    )
    amount_minor = models.PositiveBigIntegerField()
    max_amount_minor = models.PositiveBigIntegerField(null=True, blank=True)
    price_after_minor = models.PositiveBigIntegerField()
    leader_after = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="+")
    seq = models.PositiveBigIntegerField()
    client_bid_id = models.CharField(max_length=64, blank=True)
    channel = models.CharField(max_length=8, choices=BidChannel.choices, default=BidChannel.WEB)
    placed_at = models.DateTimeField()

    class Meta:
        ordering = ["auction", "seq"]
        constraints = [
            models.UniqueConstraint(
                fields=["auction", "bidder", "client_bid_id"],
                condition=~Q(client_bid_id=""),
                name="bid_client_id_unique_per_bidder",
            ),
            models.UniqueConstraint(fields=["auction", "seq"], name="bid_seq_unique_per_auction"),
            models.CheckConstraint(
                condition=Q(max_amount_minor__isnull=True)
                | Q(max_amount_minor__gte=F("amount_minor")),
                name="bid_max_not_below_amount",
            ),
        ]

    def __str__(self):
        return f"{self.amount_minor} on auction #{self.auction_id} by {self.bidder}"


class Lease(models.Model):
    """The right to use a block, created when its auction is won or bought outright."""

    auction = models.OneToOneField(Auction, on_delete=models.PROTECT, related_name="lease")
    block = models.ForeignKey(ServiceBlock, on_delete=models.PROTECT, related_name="leases")
    winner = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="leases")
    winner_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    price_minor = models.PositiveBigIntegerField()
    currency = models.CharField(max_length=3, choices=CURRENCY_CHOICES)
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    bought_now = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"Lease of {self.block} to {self.winner}"
