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
    # Bids are binding; only exchange staff retract one (with the reason). A retracted bid
    # stays on record but counts no more: the standing is rebuilt from the others.
    retracted_at = models.DateTimeField(null=True, blank=True)
    retracted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    retraction_reason = models.CharField(max_length=500, blank=True)
    # What the bidder offered, when the history shows more: a leader's raise is shown at the
    # standing price; a retraction replays what was offered.
    offered_minor = models.PositiveBigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["auction", "seq"]
        permissions = [("retract_bid", "Can retract a bid (exchange staff)")]
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
    """The right to use a block, created when its auction is won or bought outright, or when a
    provider's direct offer to a buying group tips."""

    auction = models.OneToOneField(
        Auction, on_delete=models.PROTECT, related_name="lease", null=True, blank=True
    )
    group_offer = models.OneToOneField(
        "GroupOffer", on_delete=models.PROTECT, related_name="lease", null=True, blank=True
    )
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
        constraints = [
            models.CheckConstraint(
                condition=(Q(auction__isnull=False) & Q(group_offer__isnull=True))
                | (Q(auction__isnull=True) & Q(group_offer__isnull=False)),
                name="lease_from_auction_or_group_offer",
            ),
            models.UniqueConstraint(
                fields=["block"],
                name="lease_one_per_block",
                violation_error_message="This block is leased already.",
            ),
        ]

    def __str__(self):
        return f"Lease of {self.block} to {self.winner}"

    @property
    def origin(self) -> str:
        """How it was bought, in words."""
        if self.group_offer_id:
            return f"group offer {self.group_offer_id}"
        return "bought now" if self.bought_now else f"auction {self.auction_id}"


# --- Buying groups, offers to groups and seats ----------------------------------------------------


class MemberKind(models.TextChoices):
    USER = "user", "User"
    DEVICE = "device", "Client device"
    PHONE = "phone", "Telephone number"


class MemberRole(models.TextChoices):
    PAYER = "payer", "Payer"
    SPONSORED = "sponsored", "Sponsored"


class MemberStatus(models.TextChoices):
    INVITED = "invited", "Invited"
    ACTIVE = "active", "Member"
    DECLINED = "declined", "Declined"
    LEFT = "left", "Left or removed"


class BuyingGroup(models.Model):
    """Recipients who bid and buy together (SPEC §4.4). Its account is an organization of kind
    "group": it is the bidder and the leaseholder, so bids, leases and jobs work as for any
    buyer; its payers pay, its sponsored members are served without paying."""

    organization = models.OneToOneField(
        Organization, on_delete=models.PROTECT, related_name="buying_group"
    )
    currency = models.CharField(
        max_length=3,
        choices=CURRENCY_CHOICES,
        validators=[currency_validate],
        help_text="Pledges are in it; the group bids only on auctions in it.",
    )
    description = models.CharField(max_length=300, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["organization__name", "id"]

    def __str__(self):
        return self.organization.name


class GroupMember(models.Model):
    """A user, a client device or a telephone number in a buying group, payer or sponsored.
    A payer pledges a share (basis points of a price) and/or a cap (minor units); its
    `paying_organization` is charged. A telephone number, which has no account, is sponsored."""

    group = models.ForeignKey(BuyingGroup, on_delete=models.CASCADE, related_name="members")
    kind = models.CharField(max_length=8, choices=MemberKind.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="group_memberships",
    )
    device = models.ForeignKey(
        "marketplace.ClientDevice",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="group_memberships",
    )
    phone_number = models.CharField("telephone number (E.164)", max_length=16, blank=True)
    invited_email = models.EmailField(blank=True, help_text="Whom a user invitation is for.")
    role = models.CharField(max_length=10, choices=MemberRole.choices)
    paying_organization = models.ForeignKey(
        Organization,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="group_pledges",
        help_text="The organization whose card pays a payer's shares.",
    )
    share_bps = models.PositiveIntegerField(
        null=True, blank=True, help_text="The pledged share of a price, in basis points."
    )
    cap_minor = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="The most the payer pays for one lease, minor units."
    )
    status = models.CharField(max_length=10, choices=MemberStatus.choices)
    is_admin = models.BooleanField(default=False, help_text="Places the group's bids.")
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    joined_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["group", "id"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(kind="user") & Q(device__isnull=True) & Q(phone_number=""))
                | (Q(kind="device") & Q(device__isnull=False) & Q(user__isnull=True))
                | (
                    Q(kind="phone")
                    & Q(user__isnull=True)
                    & Q(device__isnull=True)
                    & Q(phone_number__regex=r"^\+[1-9][0-9]{1,14}$")
                ),
                name="group_member_kind_matches",
            ),
            models.CheckConstraint(
                condition=Q(share_bps__isnull=True) | Q(share_bps__lte=10_000),
                name="group_member_share_at_most_all",
            ),
            models.CheckConstraint(
                condition=~Q(role="payer", status="active")
                | (
                    Q(paying_organization__isnull=False)
                    & (Q(share_bps__isnull=False) | Q(cap_minor__isnull=False))
                ),
                name="group_member_payer_pledges",
                violation_error_message="A payer pledges a share or a cap, paid by an "
                "organization.",
            ),
            models.CheckConstraint(
                condition=~Q(kind="phone") | Q(role="sponsored"),
                name="group_member_phone_sponsored",
                violation_error_message="A telephone number has no card: it is sponsored.",
            ),
            models.UniqueConstraint(
                fields=["group", "user"],
                condition=Q(user__isnull=False, status__in=["invited", "active"]),
                name="group_member_user_once",
                violation_error_message="This user is already in the group or invited.",
            ),
            models.UniqueConstraint(
                fields=["group", "invited_email"],
                condition=Q(user__isnull=True, kind="user", status="invited"),
                name="group_member_email_invited_once",
                violation_error_message="This address is already invited.",
            ),
            models.UniqueConstraint(
                fields=["group", "device"],
                condition=Q(device__isnull=False, status__in=["invited", "active"]),
                name="group_member_device_once",
                violation_error_message="This device is already in the group or invited.",
            ),
            models.UniqueConstraint(
                fields=["group", "phone_number"],
                condition=Q(kind="phone", status="active"),
                name="group_member_phone_once",
                violation_error_message="This telephone number is already in the group.",
            ),
        ]

    def __str__(self):
        return self.label

    @property
    def label(self) -> str:
        """Who the member is, in words."""
        if self.kind == MemberKind.PHONE:
            return self.phone_number
        if self.kind == MemberKind.DEVICE:
            return f"{self.device.name} ({self.device.identifier})" if self.device else "device"
        return self.user.email if self.user else self.invited_email


class GroupOfferStatus(models.TextChoices):
    OPEN = "open", "Open for pledges"
    SOLD = "sold", "Tipped: leased to the group"
    MISSED = "missed", "Missed: not enough pledges"
    WITHDRAWN = "withdrawn", "Withdrawn"


class GroupOffer(models.Model):
    """A provider's direct offer of a block to a buying group at a price. Payers accept it
    before the deadline; it tips when the accepting payers' pledges cover the price. At the
    deadline a tipped offer becomes a lease charged to the accepting payers; otherwise it is
    missed and nobody is charged."""

    provider = models.ForeignKey(
        ProviderProfile, on_delete=models.PROTECT, related_name="group_offers"
    )
    group = models.ForeignKey(BuyingGroup, on_delete=models.CASCADE, related_name="offers")
    block = models.ForeignKey(ServiceBlock, on_delete=models.PROTECT, related_name="group_offers")
    price_minor = models.PositiveBigIntegerField()
    currency = models.CharField(max_length=3, choices=CURRENCY_CHOICES)
    deadline = models.DateTimeField()
    message = models.CharField(max_length=300, blank=True)
    status = models.CharField(
        max_length=10, choices=GroupOfferStatus.choices, default=GroupOfferStatus.OPEN
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(price_minor__gte=1), name="group_offer_price"),
            models.UniqueConstraint(
                fields=["block"],
                condition=Q(status="open"),
                name="group_offer_one_open_per_block",
                violation_error_message="This block is already offered to a group.",
            ),
        ]

    def __str__(self):
        return f"Offer of {self.block} to {self.group}"


class GroupOfferAcceptance(models.Model):
    """A payer's acceptance of an offer to its group."""

    offer = models.ForeignKey(GroupOffer, on_delete=models.CASCADE, related_name="acceptances")
    member = models.ForeignKey(GroupMember, on_delete=models.CASCADE, related_name="acceptances")
    accepted_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["accepted_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["offer", "member"], name="group_offer_accepted_once")
        ]

    def __str__(self):
        return f"Acceptance of offer {self.offer_id} by member {self.member_id}"


class LeaseShare(models.Model):
    """Who pays for a buying group's lease, as pledged when the group won it (an auction's
    active payers, or the payers who accepted the offer), and who is sponsored: the charges
    of the lease are split by these rows, never by pledges changed later."""

    lease = models.ForeignKey(Lease, on_delete=models.CASCADE, related_name="shares")
    member = models.ForeignKey(GroupMember, on_delete=models.PROTECT, related_name="lease_shares")
    role = models.CharField(max_length=10, choices=MemberRole.choices)
    paying_organization = models.ForeignKey(
        Organization, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    share_bps = models.PositiveIntegerField(null=True, blank=True)
    cap_minor = models.PositiveBigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["lease", "member_id"]
        constraints = [
            models.UniqueConstraint(fields=["lease", "member"], name="lease_share_once"),
        ]

    def __str__(self):
        return f"{self.get_role_display()} of lease {self.lease_id}: member {self.member_id}"


class LeaseSeat(models.Model):
    """One entitlement of a user, a client device or a telephone number to use a lease (up to
    its block's seat count at a time). Jobs run under a seat are attributed to it."""

    lease = models.ForeignKey(Lease, on_delete=models.CASCADE, related_name="seats")
    kind = models.CharField(max_length=8, choices=MemberKind.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="lease_seats",
    )
    device = models.ForeignKey(
        "marketplace.ClientDevice",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="lease_seats",
    )
    phone_number = models.CharField("telephone number (E.164)", max_length=16, blank=True)
    assigned_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    assigned_at = models.DateTimeField(auto_now_add=True)
    released_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["lease", "assigned_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(kind="user") & Q(user__isnull=False) & Q(device__isnull=True))
                | (Q(kind="device") & Q(device__isnull=False) & Q(user__isnull=True))
                | (
                    Q(kind="phone")
                    & Q(user__isnull=True)
                    & Q(device__isnull=True)
                    & Q(phone_number__regex=r"^\+[1-9][0-9]{1,14}$")
                ),
                name="lease_seat_kind_matches",
            ),
            models.UniqueConstraint(
                fields=["lease", "user"],
                condition=Q(user__isnull=False, released_at__isnull=True),
                name="lease_seat_user_once",
                violation_error_message="This user already holds a seat on the lease.",
            ),
            models.UniqueConstraint(
                fields=["lease", "device"],
                condition=Q(device__isnull=False, released_at__isnull=True),
                name="lease_seat_device_once",
                violation_error_message="This device already holds a seat on the lease.",
            ),
            models.UniqueConstraint(
                fields=["lease", "phone_number"],
                condition=Q(kind="phone", released_at__isnull=True),
                name="lease_seat_phone_once",
                violation_error_message="This telephone number already holds a seat.",
            ),
        ]

    def __str__(self):
        return f"Seat of {self.label} on lease {self.lease_id}"

    @property
    def label(self) -> str:
        if self.kind == MemberKind.PHONE:
            return self.phone_number
        if self.kind == MemberKind.DEVICE:
            return f"{self.device.name} ({self.device.identifier})"
        return self.user.email
