"""Shapes of blocks, auctions, bids and leases in the partner API.

What everyone may see of an auction never includes the hidden reserve amount or any bidder's
proxy maximum: the reserve shows only as ``has_reserve`` / ``reserve_met``, bidders only by their
per-auction handle.
"""

import re

from django.core.exceptions import ObjectDoesNotExist
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from auctions.live import bidder_handle
from auctions.models import LIVE_STATUSES, Auction, AuctionStatus, Lease, ServiceBlock
from auctions.services import minimum_next_bid
from marketplace.api.strict import StrictJsonTypes
from marketplace.money import CURRENCY_CHOICES
from providers.api.serializers import (
    CAPACITY_MAX,
    MINOR_UNITS_MAX,
    MinorUnitsField,
    StrictIntegerField,
)

# The list filter's extra status: scheduled or open.
STATUS_LIVE = "live"
FILTER_STATUS_CHOICES = [*AuctionStatus.choices, (STATUS_LIVE, "Scheduled or open")]


# --- Query parameters ---------------------------------------------------------------------------


class QueryIntegerField(serializers.IntegerField):
    """A whole number in a query string: digits only, so "1.5", "1e3" and "ten" are refused."""

    default_error_messages = {"invalid": "Give a whole number of Mbit/s, e.g. 100."}
    digits = re.compile(r"^\d+$")

    def to_internal_value(self, data):
        if not isinstance(data, str) or not self.digits.match(data.strip()):
            self.fail("invalid")
        return super().to_internal_value(data.strip())


class AuctionFilterSerializer(serializers.Serializer):
    """The filters of the auction list, read from the query string."""

    status = serializers.ChoiceField(
        choices=FILTER_STATUS_CHOICES,
        required=False,
        help_text="Only auctions in this status; `live` means scheduled or open.",
    )
    provider = serializers.SlugField(
        required=False, help_text="Only auctions of this provider (its organization slug)."
    )
    closes_before = serializers.DateTimeField(
        required=False,
        help_text="Only auctions whose (possibly extended) close is before this ISO 8601 time; "
        "a time without an offset is read as UTC.",
    )
    min_rate = QueryIntegerField(
        required=False,
        min_value=0,
        help_text="Only blocks whose maximum data transfer rate is at least this many Mbit/s.",
    )
    max_rate = QueryIntegerField(
        required=False,
        min_value=0,
        help_text="Only blocks whose maximum data transfer rate is at most this many Mbit/s.",
    )


# --- Blocks -------------------------------------------------------------------------------------


class ServiceBlockSerializer(StrictJsonTypes, serializers.ModelSerializer):
    """One of the provider's own blocks of segmentation-service time."""

    starts_at = serializers.DateTimeField(help_text="Must be in the future.")
    ends_at = serializers.DateTimeField(help_text="Must be after `starts_at`.")
    max_rate_mbps = StrictIntegerField(
        min_value=1, max_value=CAPACITY_MAX, help_text="Maximum data transfer rate in Mbit/s."
    )
    min_rate_mbps = StrictIntegerField(
        min_value=0,
        max_value=CAPACITY_MAX,
        help_text="Guaranteed data transfer rate in Mbit/s; at most `max_rate_mbps`.",
    )
    seats = StrictIntegerField(
        min_value=1,
        max_value=CAPACITY_MAX,
        default=1,
        help_text="How many client devices, users or telephone numbers may share the block.",
    )
    data_cap_gb = StrictIntegerField(
        min_value=1,
        max_value=CAPACITY_MAX,
        required=False,
        allow_null=True,
        default=None,
        help_text="Data cap in GB; null for none.",
    )
    description = serializers.CharField(
        max_length=200, required=False, allow_blank=True, default=""
    )

    class Meta:
        model = ServiceBlock
        fields = [
            "id",
            "starts_at",
            "ends_at",
            "max_rate_mbps",
            "min_rate_mbps",
            "seats",
            "data_cap_gb",
            "description",
            "created_at",
        ]
        read_only_fields = ["created_at"]


# --- Auctions -----------------------------------------------------------------------------------


class AuctionProviderSerializer(serializers.Serializer):
    """Who sells the block."""

    slug = serializers.SlugField(source="organization.slug", read_only=True)
    name = serializers.CharField(source="organization.name", read_only=True)


class AuctionBlockSerializer(serializers.ModelSerializer):
    """The block an auction sells."""

    class Meta:
        model = ServiceBlock
        fields = [
            "id",
            "starts_at",
            "ends_at",
            "max_rate_mbps",
            "min_rate_mbps",
            "seats",
            "data_cap_gb",
            "description",
        ]
        read_only_fields = fields


class LeaseSummarySerializer(serializers.ModelSerializer):
    """The outcome of a sold auction: who won (by handle) and the price."""

    auction = serializers.IntegerField(source="auction_id", read_only=True)
    winner = serializers.SerializerMethodField(help_text="The winner's handle in this auction.")

    class Meta:
        model = Lease
        fields = [
            "id",
            "auction",
            "winner",
            "price_minor",
            "currency",
            "bought_now",
            "starts_at",
            "ends_at",
        ]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.STR)
    def get_winner(self, lease: Lease) -> str:
        return bidder_handle(lease.auction_id, lease.winner_id)


class AuctionSerializer(serializers.ModelSerializer):
    """An auction as anyone may see it: no reserve amount, no proxy maximum, bidders by handle."""

    provider = AuctionProviderSerializer(source="block.provider", read_only=True)
    block = AuctionBlockSerializer(read_only=True)
    status = serializers.ChoiceField(choices=AuctionStatus.choices, read_only=True)
    price_minor = serializers.IntegerField(
        source="current_price_minor",
        read_only=True,
        allow_null=True,
        help_text="The current price; null before the first bid.",
    )
    min_next_minor = serializers.SerializerMethodField(
        help_text="The lowest bid another bidder may place now; null once the auction ended."
    )
    leader = serializers.SerializerMethodField(
        help_text="The leading bidder's handle in this auction; null before the first bid."
    )
    has_reserve = serializers.SerializerMethodField(
        help_text="Whether the provider set a hidden reserve price."
    )
    reserve_met = serializers.BooleanField(
        read_only=True,
        help_text="Whether the current price reaches the reserve (without a reserve: whether "
        "anyone has bid).",
    )
    buy_now_minor = serializers.SerializerMethodField(
        help_text="The buy-now price while it is offered (until the first bid); else null."
    )
    lease = serializers.SerializerMethodField(help_text="Once sold: the winner and the price.")

    class Meta:
        model = Auction
        fields = [
            "id",
            "provider",
            "block",
            "status",
            "opens_at",
            "closes_at",
            "currency",
            "start_price_minor",
            "price_minor",
            "min_next_minor",
            "bid_count",
            "leader",
            "has_reserve",
            "reserve_met",
            "buy_now_minor",
            "lease",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_min_next_minor(self, auction: Auction) -> int | None:
        return minimum_next_bid(auction) if auction.status in LIVE_STATUSES else None

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_leader(self, auction: Auction) -> str | None:
        return bidder_handle(auction.pk, auction.leader_id)

    @extend_schema_field(OpenApiTypes.BOOL)
    def get_has_reserve(self, auction: Auction) -> bool:
        return auction.reserve_price_minor is not None

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_buy_now_minor(self, auction: Auction) -> int | None:
        return auction.buy_now_price_minor if auction.buy_now_available else None

    @extend_schema_field(LeaseSummarySerializer(allow_null=True))
    def get_lease(self, auction: Auction) -> dict | None:
        if auction.status != AuctionStatus.CLOSED:
            return None
        try:
            lease = auction.lease
        except ObjectDoesNotExist:
            return None
        return LeaseSummarySerializer(lease).data


class IncrementBandSerializer(StrictJsonTypes, serializers.Serializer):
    """From this price on, bids rise by at least this much."""

    from_minor = MinorUnitsField(help_text="The band applies from this price, in minor units.")
    increment_minor = MinorUnitsField(min_value=1, help_text="The step, in minor units.")


class AuctionCreateSerializer(StrictJsonTypes, serializers.Serializer):
    """What a provider gives to auction one of its own blocks."""

    block = serializers.PrimaryKeyRelatedField(
        queryset=ServiceBlock.objects.none(),
        error_messages={
            "does_not_exist": "Block {pk_value} is not one of your blocks.",
            "incorrect_type": "Give the block as its id, not {data_type}.",
        },
        help_text="Id of one of your own blocks (see /blocks/); another provider's is refused.",
    )
    opens_at = serializers.DateTimeField(
        required=False, help_text="When bidding opens; now when omitted."
    )
    closes_at = serializers.DateTimeField(
        help_text="The scheduled close. With `max_extension_seconds` it must end before the "
        "block starts."
    )
    start_price_minor = MinorUnitsField(min_value=1, help_text="The first bid's minimum.")
    currency = serializers.ChoiceField(choices=CURRENCY_CHOICES, help_text="ISO 4217 code.")
    reserve_price_minor = MinorUnitsField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Hidden reserve: below it the block is not sold. Never shown to bidders.",
    )
    buy_now_price_minor = MinorUnitsField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Offered until the first bid; above the start price and the reserve.",
    )
    increment_bands = IncrementBandSerializer(
        many=True,
        required=False,
        help_text="The increment table, first band from 0; the exchange's default when omitted.",
    )
    soft_close_seconds = StrictIntegerField(
        min_value=0,
        max_value=CAPACITY_MAX,
        default=120,
        help_text="A bid in this many last seconds moves the close to now + this window.",
    )
    max_extension_seconds = StrictIntegerField(
        min_value=0,
        max_value=CAPACITY_MAX,
        default=3600,
        help_text="Soft close never moves the close more than this beyond the scheduled one.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        provider = self.context.get("provider")
        if provider is not None:
            self.fields["block"].queryset = ServiceBlock.objects.filter(provider=provider)


# --- Bids ---------------------------------------------------------------------------------------


class BidPublicSerializer(serializers.Serializer):
    """An accepted bid as every watcher sees it: bidders by handle, no maxima."""

    seq = serializers.IntegerField(help_text="The auction's event number of this bid.")
    amount_minor = serializers.IntegerField(help_text="What the bidder bid.")
    price_minor = serializers.IntegerField(help_text="The auction's price after this bid.")
    bidder = serializers.CharField(help_text="The bidder's handle in this auction.")
    leader = serializers.CharField(help_text="The leader's handle after this bid.")
    placed_at = serializers.DateTimeField()
    retracted_at = serializers.DateTimeField(
        allow_null=True,
        help_text="When exchange staff retracted this bid (null if it stands): a retracted "
        "bid counts no more; the auction's price and leader were recomputed without it.",
    )


@extend_schema_field(
    {"type": "integer", "minimum": 1, "maximum": MINOR_UNITS_MAX, "format": "int64"}
)
class BidAmountField(MinorUnitsField):
    """A bid's amount: documented as positive; bid_place refuses zero as `invalid_amount`, the
    code bids have always had for it, so the field itself still reads zero."""


class BidCreateSerializer(StrictJsonTypes, serializers.Serializer):
    """A bid; with `max_amount_minor` a proxy bid the exchange raises for you as needed."""

    amount_minor = BidAmountField(help_text="Your bid, at least the auction's `min_next_minor`.")
    max_amount_minor = BidAmountField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Your hidden maximum for proxy bidding; at least `amount_minor`.",
    )
    client_bid_id = serializers.CharField(
        max_length=64,
        required=False,
        allow_blank=True,
        default="",
        help_text="Your id for this bid: sending the same id again returns the first "
        "outcome (200) instead of bidding twice.",
    )


class BidPlacedSerializer(serializers.Serializer):
    """The outcome of your bid."""

    id = serializers.IntegerField(source="bid.pk")
    seq = serializers.IntegerField(source="bid.seq", help_text="The auction's event number.")
    auction = serializers.IntegerField(source="bid.auction_id")
    amount_minor = serializers.IntegerField(source="bid.amount_minor")
    price_minor = serializers.IntegerField(
        source="bid.price_after_minor", help_text="The auction's price right after this bid."
    )
    currency = serializers.CharField(source="auction.currency")
    leading = serializers.SerializerMethodField(
        help_text="Whether this bid left you in the lead (another bidder's proxy may outbid "
        "you at once)."
    )
    leader = serializers.SerializerMethodField(help_text="The leader's handle after this bid.")
    closes_at = serializers.DateTimeField(
        source="auction.closes_at", help_text="The auction's close, possibly extended."
    )
    placed_at = serializers.DateTimeField(source="bid.placed_at")

    @extend_schema_field(OpenApiTypes.BOOL)
    def get_leading(self, outcome) -> bool:
        return outcome.bid.leader_after_id == outcome.bid.bidder_id

    @extend_schema_field(OpenApiTypes.STR)
    def get_leader(self, outcome) -> str:
        return bidder_handle(outcome.bid.auction_id, outcome.bid.leader_after_id)
