"""Partner API for leases (SPEC §7 `leases`): the leases a caller holds, those of its buying
groups, and, for a provider, the leases of its blocks. Read-only: a lease comes from a won
auction, a buy-now or a group offer, never from a request of its own. Any other lease is a 404
`lease_not_found`, as if it did not exist; its seats are `leases/{lease_id}/seats/`.
"""

from django.db.models import Q, QuerySet
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from rest_framework import serializers, viewsets
from rest_framework.response import Response

from auctions.api.groups import ActsAsPerson, one_of
from auctions.api.serializers import QueryIntegerField
from auctions.models import Lease
from marketplace.api.permissions import ScopedAccess
from marketplace.api.schema import ApiAutoSchema, problem_example, problem_responses
from providers.selectors import provider_of
from segmentation.api.serializers import ID_MAX

ROLE_HOLDER = "holder"
ROLE_PROVIDER = "provider"
STATUS_UPCOMING = "upcoming"
STATUS_ACTIVE = "active"
STATUS_ENDED = "ended"
LEASE_STATUS_CHOICES = [
    (STATUS_UPCOMING, "Not started yet"),
    (STATUS_ACTIVE, "Running now"),
    (STATUS_ENDED, "Ended"),
]


def lease_status(lease: Lease, *, now=None) -> str:
    """Where the lease's time is relative to now: upcoming, active or ended."""
    now = now or timezone.now()
    if now < lease.starts_at:
        return STATUS_UPCOMING
    return STATUS_ACTIVE if now < lease.ends_at else STATUS_ENDED


def leases_at(leases: QuerySet[Lease], status: str, *, now) -> QuerySet[Lease]:
    """The leases whose time is `status` (see lease_status) at `now`."""
    if status == STATUS_UPCOMING:
        return leases.filter(starts_at__gt=now)
    if status == STATUS_ACTIVE:
        return leases.filter(starts_at__lte=now, ends_at__gt=now)
    return leases.filter(ends_at__lte=now)


# --- serializers ---------------------------------------------------------------------------------


class LeaseFilterSerializer(serializers.Serializer):
    """The filters of the lease list, read from the query string."""

    role = serializers.ChoiceField(
        choices=[
            (ROLE_HOLDER, "Leases you (or a buying group of yours) hold"),
            (ROLE_PROVIDER, "Leases of your blocks"),
        ],
        required=False,
        help_text="`holder`: only leases you or one of your buying groups hold; `provider`: "
        "only leases of your own blocks. Both when omitted.",
    )
    status = serializers.ChoiceField(
        choices=LEASE_STATUS_CHOICES,
        required=False,
        help_text="`upcoming` (not started), `active` (running now) or `ended`.",
    )
    active = serializers.BooleanField(
        required=False,
        allow_null=True,
        default=None,
        help_text="`true`: only leases running now; `false`: only those not running now.",
    )
    provider = serializers.SlugField(
        required=False, help_text="Only leases of this provider's blocks (its slug)."
    )
    auction = QueryIntegerField(
        required=False,
        min_value=1,
        max_value=ID_MAX,
        help_text="Only the lease won in this auction (its id).",
        error_messages={"invalid": "Give the auction as its id, e.g. 12."},
    )
    block = QueryIntegerField(
        required=False,
        min_value=1,
        max_value=ID_MAX,
        help_text="Only the lease of this block (its id).",
        error_messages={"invalid": "Give the block as its id, e.g. 12."},
    )


class LeasePartySerializer(serializers.Serializer):
    """An organization taking part in a lease."""

    slug = serializers.SlugField()
    name = serializers.CharField()


class LeaseSerializer(serializers.ModelSerializer):
    """A lease: the right to use a block of service time, won in an auction, bought outright
    or taken up by a buying group. Times are UTC, the price in minor units of `currency`."""

    auction = serializers.IntegerField(
        source="auction_id",
        allow_null=True,
        help_text="The auction it was won or bought in; null for a group offer's lease.",
    )
    group_offer = serializers.IntegerField(
        source="group_offer_id",
        allow_null=True,
        help_text="The provider's offer to a buying group it comes from; else null.",
    )
    block = serializers.IntegerField(source="block_id", help_text="The leased block's id.")
    provider = LeasePartySerializer(source="block.provider.organization")
    leaseholder = LeasePartySerializer(
        source="winner", help_text="Who holds it: a buyer organization or a buying group."
    )
    price_minor = serializers.IntegerField(help_text="What the leaseholder pays, minor units.")
    seats = serializers.IntegerField(
        source="block.seats", help_text="How many seats the block has (see its seats)."
    )
    max_rate_mbps = serializers.IntegerField(source="block.max_rate_mbps")
    min_rate_mbps = serializers.IntegerField(source="block.min_rate_mbps")
    status = serializers.SerializerMethodField(
        help_text="`upcoming` (not started), `active` (running now) or `ended`."
    )
    created_at = serializers.DateTimeField(help_text="When the lease was made.")

    class Meta:
        model = Lease
        fields = [
            "id",
            "auction",
            "group_offer",
            "block",
            "provider",
            "leaseholder",
            "price_minor",
            "currency",
            "bought_now",
            "starts_at",
            "ends_at",
            "seats",
            "max_rate_mbps",
            "min_rate_mbps",
            "status",
            "created_at",
        ]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.STR)
    def get_status(self, lease: Lease) -> str:
        return lease_status(lease, now=self.context.get("now"))


LEASE_EXAMPLE = OpenApiExample(
    "A lease won in an auction",
    response_only=True,
    value={
        "id": 15,
        "auction": 42,
        "group_offer": None,
        "block": 31,
        "provider": {"slug": "alpha-networks", "name": "Alpha Networks"},
        "leaseholder": {"slug": "harbour-labs", "name": "Harbour Labs"},
        "price_minor": 125000,
        "currency": "EUR",
        "bought_now": False,
        "starts_at": "2026-12-01T08:00:00Z",
        "ends_at": "2026-12-01T20:00:00Z",
        "seats": 4,
        "max_rate_mbps": 1000,
        "min_rate_mbps": 200,
        "status": "upcoming",
        "created_at": "2026-11-20T06:00:00Z",
    },
)
LEASE_FILTER_EXAMPLE = problem_example(
    400,
    "validation_failed",
    'role: "buyer" is not a valid choice.',
    name="A filter value that is not valid",
    instance="/api/v1/leases/?role=buyer",
    errors={"role": ['"buyer" is not a valid choice.']},
)
LEASE_404_EXAMPLE = problem_example(
    404,
    "lease_not_found",
    "No lease you hold, nor one of your blocks, has this id.",
    name="Not one of your leases",
    instance="/api/v1/leases/999/",
)
LEASE_ID = OpenApiParameter("id", int, OpenApiParameter.PATH, description="The lease's id.")
LEASE_404 = "`lease_not_found`: no lease you hold, nor one of your blocks, has this id."


# --- views ---------------------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(
        summary="Your leases",
        description="Leases your organization holds, those of the buying groups you are in, "
        "and, for a provider, the leases of its blocks; soonest start first.",
        parameters=[LeaseFilterSerializer],
        responses={200: LeaseSerializer(many=True)}
        | problem_responses(
            400, 401, s400="`validation_failed`: a filter value is not valid (see `errors`)."
        ),
        examples=[LEASE_EXAMPLE, LEASE_FILTER_EXAMPLE],
    ),
    retrieve=extend_schema(
        summary="One of your leases",
        parameters=[LEASE_ID],
        responses={200: LeaseSerializer} | problem_responses(401, 404, s404=LEASE_404),
        examples=[LEASE_EXAMPLE, LEASE_404_EXAMPLE],
    ),
)
class LeaseViewSet(ActsAsPerson, viewsets.GenericViewSet):
    """Leases the caller holds or provides; any other lease is a 404."""

    schema = ApiAutoSchema()

    permission_classes = [ScopedAccess]
    serializer_class = LeaseSerializer

    def base_queryset(self) -> QuerySet[Lease]:
        return Lease.objects.select_related("block__provider__organization", "winner").order_by(
            "starts_at", "pk"
        )

    def held(self) -> Q:
        """Leases of the acting organization and of the buying groups the caller sees (through
        an API key, only those its organization takes part in: ActsAsPerson.visible_groups)."""
        held = Q(pk__in=[])
        if self.acting_organization is not None:
            held |= Q(winner=self.acting_organization)
        held |= Q(winner__in=self.visible_groups().values("organization"))
        return held

    def provided(self) -> Q:
        """Leases of the acting provider's blocks."""
        provider = provider_of(organization=self.acting_organization)
        return Q(block__provider=provider) if provider is not None else Q(pk__in=[])

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Lease.objects.none()
        return self.base_queryset().filter(self.held() | self.provided())

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "now": timezone.now()}

    def filtered(self, leases: QuerySet[Lease]) -> QuerySet[Lease]:
        filters = LeaseFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        values = filters.validated_data
        now = timezone.now()
        if values.get("role") == ROLE_HOLDER:
            leases = leases.filter(self.held())
        elif values.get("role") == ROLE_PROVIDER:
            leases = leases.filter(self.provided())
        if values.get("status"):
            leases = leases_at(leases, values["status"], now=now)
        if values.get("active") is True:
            leases = leases_at(leases, STATUS_ACTIVE, now=now)
        elif values.get("active") is False:
            leases = leases.exclude(pk__in=leases_at(Lease.objects.all(), STATUS_ACTIVE, now=now))
        if values.get("provider"):
            leases = leases.filter(block__provider__organization__slug=values["provider"])
        if values.get("auction"):
            leases = leases.filter(auction_id=values["auction"])
        if values.get("block"):
            leases = leases.filter(block_id=values["block"])
        return leases

    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.filtered(self.get_queryset()))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    def retrieve(self, request, *args, **kwargs):
        lease = one_of(
            self.get_queryset(),
            kwargs["pk"],
            "lease_not_found",
            "No lease you hold, nor one of your blocks, has this id.",
        )
        return Response(self.get_serializer(lease).data)
