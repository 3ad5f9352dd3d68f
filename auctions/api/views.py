"""Partner API for auctions: the public auction list and bid history, bids and buy-now for buyers,
blocks and auctions for providers. Views parse input, call one service and render the result.

Who bids with an API key: a bid is binding and is recorded with the person who placed it, so a
key bids as the member who created it, for the key's organization. When that person has left the
organization (or was deactivated) the key can still read but no longer bid: ``not_a_buyer``.
A signed-in browser bids as its user for the organization chosen in the session.
"""

from contextlib import contextmanager

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import IntegrityError
from django.utils import timezone
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    extend_schema,
    extend_schema_view,
)
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from auctions.api.serializers import (
    AuctionCreateSerializer,
    AuctionFilterSerializer,
    AuctionSerializer,
    BidCreateSerializer,
    BidPlacedSerializer,
    BidPublicSerializer,
    LeaseSummarySerializer,
    ServiceBlockSerializer,
)
from auctions.models import Auction, BidChannel, ServiceBlock
from auctions.selectors import auctions_filter, auctions_public, bid_public
from auctions.services import (
    BidRejected,
    auction_buy_now,
    auction_create,
    bid_place,
    block_create,
)
from marketplace.api.authentication import ApiKeyPrincipal
from marketplace.api.idempotency import IdempotentCreateMixin, idempotent
from marketplace.api.organization import api_organization
from marketplace.api.permissions import ScopedAccess
from marketplace.api.problems import Problem
from marketplace.api.schema import (
    IDEMPOTENCY_PARAMETERS,
    ApiAutoSchema,
    PublicReadAutoSchema,
    problem_example,
    problem_responses,
)
from marketplace.api.throttling import BidRateThrottle
from marketplace.models import Organization, User
from marketplace.selectors import membership_get
from providers.api.views import ActsForProvider
from providers.models import ProviderProfile
from providers.selectors import provider_of
from providers.services import ProviderNotVerified

# HTTP status of each stable rejection code of bid_place / auction_buy_now.
REJECTION_STATUS = {
    "invalid_amount": status.HTTP_400_BAD_REQUEST,
    "not_a_buyer": status.HTTP_403_FORBIDDEN,
    "own_auction": status.HTTP_403_FORBIDDEN,
    "card_required": status.HTTP_403_FORBIDDEN,
    "unpaid_leases": status.HTTP_403_FORBIDDEN,
    "auction_not_found": status.HTTP_404_NOT_FOUND,
    "auction_not_open": status.HTTP_409_CONFLICT,
    "already_leading": status.HTTP_409_CONFLICT,
    "buy_now_unavailable": status.HTTP_409_CONFLICT,
    "bid_too_low": status.HTTP_422_UNPROCESSABLE_ENTITY,
    # a buying group's bids (auctions.groups)
    "group_admin_only": status.HTTP_403_FORBIDDEN,
    "group_no_payer": status.HTTP_403_FORBIDDEN,
    "payer_card_required": status.HTTP_403_FORBIDDEN,
    "payer_unpaid_leases": status.HTTP_403_FORBIDDEN,
    "group_currency": status.HTTP_422_UNPROCESSABLE_ENTITY,
    "group_limit": status.HTTP_422_UNPROCESSABLE_ENTITY,
}

ONE_AUCTION_PER_BLOCK = next(
    constraint
    for constraint in Auction._meta.constraints
    if constraint.name == "auction_one_live_or_sold_per_block"
)

AUCTION_ID_PARAMETER = OpenApiParameter(
    "id", int, OpenApiParameter.PATH, description="The auction's id."
)


def rejection_problem(rejection: BidRejected) -> Problem:
    """A refused bid or buy-now as problem details with the service's code (and its extras,
    e.g. ``minimum_minor`` of ``bid_too_low``)."""
    return Problem(
        rejection.message,
        code=rejection.code,
        status_code=REJECTION_STATUS.get(rejection.code, status.HTTP_409_CONFLICT),
        extra=rejection.extra,
    )


def not_a_buyer(detail: str) -> Problem:
    return Problem(detail, code="not_a_buyer", status_code=status.HTTP_403_FORBIDDEN)


def bidding_party(request) -> tuple[Organization, User]:
    """The organization a bid is for and the person who answers for it (see the module doc)."""
    organization = api_organization(request)
    if organization is None:
        raise not_a_buyer("You act for no organization; create or join a buyer organization.")
    principal = request.user
    if not isinstance(principal, ApiKeyPrincipal):
        return organization, principal
    user = principal.api_key.created_by
    if (
        user is None
        or not user.is_active
        or membership_get(user=user, organization=organization) is None
    ):
        raise not_a_buyer(
            "This API key bids as the member who created it, who no longer belongs to "
            f"{organization}; ask an owner or admin to issue a new key."
        )
    return organization, user


@contextmanager
def selling_problems():
    """Provider-side refusals of the block and auction services as problem details."""
    try:
        yield
    except ProviderNotVerified as error:
        raise Problem(
            str(error), code="provider_not_verified", status_code=status.HTTP_403_FORBIDDEN
        ) from None


def block_already_auctioned() -> Problem:
    return Problem(
        str(ONE_AUCTION_PER_BLOCK.violation_error_message),
        code="block_already_auctioned",
        status_code=status.HTTP_409_CONFLICT,
    )


class ActingProviderMixin:
    """The provider the caller acts for (None when its organization is not a provider); used by
    ``ActsForProvider`` and to scope a provider's own objects."""

    @property
    def acting_provider(self) -> ProviderProfile | None:
        if not hasattr(self, "_acting_provider"):
            self._acting_provider = provider_of(organization=api_organization(self.request))
        return self._acting_provider


PRIVATE = (401, 403)
CREATE_CONFLICT = (
    "`idempotency_in_progress`: the first request with this Idempotency-Key is still running."
)
NOT_A_PROVIDER = (
    "`not_a_provider`, `provider_not_verified`, `manager_role_required` (signed-in members "
    "who are not owner or admin) or `insufficient_scope`."
)


@extend_schema_view(
    list=extend_schema(
        summary="Your blocks",
        responses={200: ServiceBlockSerializer(many=True)}
        | problem_responses(*PRIVATE, s403=NOT_A_PROVIDER),
    ),
    retrieve=extend_schema(
        summary="One of your blocks",
        responses={200: ServiceBlockSerializer}
        | problem_responses(*PRIVATE, 404, s403=NOT_A_PROVIDER),
    ),
    create=extend_schema(
        summary="List a block of service time",
        description="Only verified providers list blocks. The block must start in the future "
        "and end after it starts; the guaranteed rate cannot exceed the maximum rate.",
        parameters=IDEMPOTENCY_PARAMETERS,
        responses={201: ServiceBlockSerializer}
        | problem_responses(400, *PRIVATE, 409, 422, s403=NOT_A_PROVIDER, s409=CREATE_CONFLICT),
    ),
)
class ServiceBlockViewSet(
    ActingProviderMixin,
    IdempotentCreateMixin,
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """A provider's own blocks; another provider's block is a 404."""

    schema = ApiAutoSchema()

    permission_classes = [ScopedAccess, ActsForProvider]
    serializer_class = ServiceBlockSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return ServiceBlock.objects.none()
        return ServiceBlock.objects.filter(provider=self.acting_provider).order_by(
            "starts_at", "pk"
        )

    def perform_create(self, serializer):
        with selling_problems():
            serializer.instance = block_create(
                provider=self.acting_provider, **serializer.validated_data
            )


AUCTION_EXAMPLE = OpenApiExample(
    "An open auction with bids",
    response_only=True,
    status_codes=["200"],
    value={
        "id": 42,
        "provider": {"slug": "alpha-networks", "name": "Alpha Networks"},
        "block": {
            "id": 31,
            "starts_at": "2026-12-01T08:00:00Z",
            "ends_at": "2026-12-01T20:00:00Z",
            "max_rate_mbps": 1000,
            "min_rate_mbps": 200,
            "seats": 4,
            "data_cap_gb": None,
            "description": "Evening capacity, Frankfurt",
        },
        "status": "open",
        "opens_at": "2026-11-20T08:00:00Z",
        "closes_at": "2026-11-25T18:02:00Z",
        "currency": "EUR",
        "start_price_minor": 50000,
        "price_minor": 61000,
        "min_next_minor": 62000,
        "bid_count": 7,
        "leader": "bidder-3",
        "has_reserve": True,
        "reserve_met": True,
        "buy_now_minor": None,
        "lease": None,
    },
)
BID_REQUEST_EXAMPLE = OpenApiExample(
    "A proxy bid",
    request_only=True,
    value={"amount_minor": 62000, "max_amount_minor": 80000, "client_bid_id": "order-17-bid-1"},
)
BID_PLACED_EXAMPLE = OpenApiExample(
    "Leading after the bid",
    response_only=True,
    status_codes=["201", "200"],
    value={
        "id": 904,
        "seq": 8,
        "auction": 42,
        "amount_minor": 62000,
        "price_minor": 62000,
        "currency": "EUR",
        "leading": True,
        "leader": "bidder-5",
        "closes_at": "2026-11-25T18:02:00Z",
        "placed_at": "2026-11-25T17:58:41Z",
    },
)
BID_TOO_LOW_EXAMPLE = problem_example(
    422,
    "bid_too_low",
    "Bid at least 620.00 EUR: the price plus the increment.",
    name="Below the next acceptable bid",
    instance="/api/v1/auctions/42/bids/",
    minimum_minor=62000,
)
AUCTION_FILTER_EXAMPLE = problem_example(
    400,
    "validation_failed",
    "min_rate: Give a whole number of Mbit/s, e.g. 100.",
    name="A filter value that is not valid",
    instance="/api/v1/auctions/?min_rate=fast",
    errors={"min_rate": ["Give a whole number of Mbit/s, e.g. 100."]},
)

BID_403 = (
    "`not_a_buyer` (not acting for an active buyer organization, or the API key's creator "
    "left it), `own_auction`, `card_required`, `unpaid_leases`, `insufficient_scope` for a "
    "read-only key; for a buying group: `group_admin_only` (only its admins bid), "
    "`group_no_payer`, `payer_card_required`, `payer_unpaid_leases`."
)
BID_409 = (
    "`auction_not_open` (not yet open or ended), `already_leading` (raise your maximum "
    "instead), or `idempotency_in_progress`."
)
BID_422 = (
    "`bid_too_low`, with `minimum_minor`, the lowest acceptable bid; `invalid_amount`: a "
    "maximum below the bid; `idempotency_key_reused`; "
    "for a buying group: `group_limit` (above what its payers' pledges cover, with `limit_minor`) "
    "or `group_currency`."
)


@extend_schema_view(
    list=extend_schema(
        summary="Auctions",
        description="Auctions of verified providers, soonest close first. Anyone may read them.",
        parameters=[AuctionFilterSerializer],
        responses={200: AuctionSerializer(many=True)}
        | problem_responses(
            400, 401, s400="`validation_failed`: a filter value is not valid (see `errors`)."
        ),
        examples=[AUCTION_EXAMPLE, AUCTION_FILTER_EXAMPLE],
    ),
    retrieve=extend_schema(
        summary="One auction",
        parameters=[AUCTION_ID_PARAMETER],
        responses={200: AuctionSerializer} | problem_responses(401, 404),
        examples=[AUCTION_EXAMPLE],
    ),
    create=extend_schema(
        summary="Auction one of your blocks",
        description="For providers. The block must be one of your own (another provider's "
        "block id is a 400 `validation_failed` on `block`, as if it did not exist). The "
        "auction must close, with every possible soft-close extension, before the block "
        "starts. The reserve amount is never shown again, not even to you: the answer "
        "says only `has_reserve`.",
        request=AuctionCreateSerializer,
        parameters=IDEMPOTENCY_PARAMETERS,
        responses={201: AuctionSerializer}
        | problem_responses(
            400,
            *PRIVATE,
            409,
            422,
            s403=NOT_A_PROVIDER,
            s409="`block_already_auctioned`: the block is already up for auction or sold; "
            "or `idempotency_in_progress`.",
        ),
    ),
)
class AuctionViewSet(
    ActingProviderMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Auctions anyone may read; buyers bid and buy now; providers auction their blocks."""

    public_read = True
    schema = PublicReadAutoSchema()
    serializer_class = AuctionSerializer

    def get_queryset(self):
        return auctions_public().select_related("lease").order_by("closes_at", "pk")

    def get_permissions(self):
        if self.action == "create":
            return [ScopedAccess(), ActsForProvider()]
        return super().get_permissions()

    def get_throttles(self):
        throttles = super().get_throttles()
        if self.action in ("bid_create", "buy_now"):
            throttles.append(BidRateThrottle())
        return throttles

    def filter_queryset(self, queryset):
        if self.action != "list":
            return queryset
        filters = AuctionFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        values = filters.validated_data
        return auctions_filter(
            queryset,
            status=values.get("status"),
            provider_slug=values.get("provider"),
            closes_before=values.get("closes_before"),
            min_rate_mbps=values.get("min_rate"),
            max_rate_mbps=values.get("max_rate"),
        )

    def public_auction_id(self) -> int:
        """The auction of the URL if anyone may see it, else a 404 ``auction_not_found``."""
        try:
            auction_id = int(self.kwargs[self.lookup_url_kwarg or self.lookup_field])
        except ValueError:
            auction_id = None
        if auction_id is None or not self.get_queryset().filter(pk=auction_id).exists():
            raise Problem(
                "There is no such auction.",
                code="auction_not_found",
                status_code=status.HTTP_404_NOT_FOUND,
            )
        return auction_id

    @idempotent
    def create(self, request, *args, **kwargs):
        serializer = AuctionCreateSerializer(
            data=request.data, context={"request": request, "provider": self.acting_provider}
        )
        serializer.is_valid(raise_exception=True)
        values = dict(serializer.validated_data)
        block = values.pop("block")
        opens_at = values.pop("opens_at", None) or timezone.now()
        bands = values.pop("increment_bands", None)
        try:
            with selling_problems():
                auction = auction_create(
                    block=block,
                    opens_at=opens_at,
                    increment_bands=[dict(band) for band in bands] if bands is not None else None,
                    **values,
                )
        except ValidationError as error:
            general = (
                error.message_dict.get(NON_FIELD_ERRORS, []) if hasattr(error, "error_dict") else []
            )
            if ONE_AUCTION_PER_BLOCK.violation_error_message in general:
                raise block_already_auctioned() from None
            raise
        except IntegrityError:
            # A concurrent request auctioned the block between the check and the insert.
            raise block_already_auctioned() from None
        auction = self.get_queryset().get(pk=auction.pk)
        return Response(
            AuctionSerializer(auction, context=self.get_serializer_context()).data,
            status=status.HTTP_201_CREATED,
        )

    @extend_schema(
        summary="Bids of an auction",
        description="Accepted bids, oldest first, bidders by their handle in this auction. "
        "Anyone may read them.",
        parameters=[AUCTION_ID_PARAMETER],
        responses={200: BidPublicSerializer(many=True)} | problem_responses(401, 404),
    )
    @action(detail=True, methods=["get"], url_path="bids")
    def bids(self, request, *args, **kwargs):
        auction = self.get_object()
        page = self.paginate_queryset(auction.bids.order_by("seq"))
        return self.get_paginated_response(
            BidPublicSerializer([bid_public(bid) for bid in page], many=True).data
        )

    @bids.mapping.post
    @extend_schema(
        summary="Bid",
        description=(
            "Bid for the organization you act for; with `max_amount_minor` the exchange bids "
            "for you one increment at a time up to that hidden maximum. Bids are binding. "
            "An API key bids as the member who created it; once that person has left the "
            "organization the key gets `not_a_buyer` and a new key is needed. Sending the "
            "same `client_bid_id` again returns the first outcome with status 200 instead of "
            "bidding twice; an `Idempotency-Key` replays the first response as well."
        ),
        parameters=[AUCTION_ID_PARAMETER, *IDEMPOTENCY_PARAMETERS],
        request=BidCreateSerializer,
        responses={
            200: BidPlacedSerializer,
            201: BidPlacedSerializer,
        }
        | problem_responses(
            400,
            401,
            403,
            404,
            409,
            422,
            s400="`validation_failed` (amounts must be non-negative JSON integers) or "
            "`invalid_amount` (a zero bid).",
            s403=BID_403,
            s404="`auction_not_found`.",
            s409=BID_409,
            s422=BID_422,
        ),
        examples=[BID_REQUEST_EXAMPLE, BID_PLACED_EXAMPLE, BID_TOO_LOW_EXAMPLE],
    )
    @idempotent
    def bid_create(self, request, *args, **kwargs):
        auction_id = self.public_auction_id()
        bidder, user = bidding_party(request)
        serializer = BidCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        values = serializer.validated_data
        maximum = values["max_amount_minor"]
        if maximum is not None and maximum < values["amount_minor"]:
            # well-formed, but the two amounts contradict each other: a rule, like bid_too_low
            raise Problem(
                "Your maximum cannot be below your bid.",
                code="invalid_amount",
                status_code=status.HTTP_422_UNPROCESSABLE_ENTITY,
            )
        try:
            outcome = bid_place(
                auction_id=auction_id,
                bidder=bidder,
                user=user,
                channel=BidChannel.API,
                **serializer.validated_data,
            )
        except BidRejected as rejection:
            raise rejection_problem(rejection) from None
        return Response(
            BidPlacedSerializer(outcome).data,
            status=status.HTTP_200_OK if outcome.replayed else status.HTTP_201_CREATED,
        )

    @extend_schema(
        summary="Buy now",
        description="Buy the block at the buy-now price, offered until the first bid. Ends "
        "the auction with a lease for your organization. Acts as for bids.",
        parameters=[AUCTION_ID_PARAMETER, *IDEMPOTENCY_PARAMETERS],
        request=None,
        responses={201: LeaseSummarySerializer}
        | problem_responses(
            401,
            403,
            404,
            409,
            422,
            s403=BID_403,
            s404="`auction_not_found`.",
            s409="`buy_now_unavailable` (bidding has started, or there is no buy-now price), "
            "`auction_not_open`, or `idempotency_in_progress`.",
        ),
    )
    @action(detail=True, methods=["post"], url_path="buy-now")
    @idempotent
    def buy_now(self, request, *args, **kwargs):
        auction_id = self.public_auction_id()
        buyer, user = bidding_party(request)
        try:
            lease = auction_buy_now(auction_id=auction_id, buyer=buyer, user=user)
        except BidRejected as rejection:
            raise rejection_problem(rejection) from None
        return Response(LeaseSummarySerializer(lease).data, status=status.HTTP_201_CREATED)
