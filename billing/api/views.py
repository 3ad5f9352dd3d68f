"""Partner API for billing. Ratings: those the acting organization gave and received, giving
one, and replying to one received. Statements (list, detail grouped by provider, PDF), the
acting provider's settlements (list, detail, CSV), and the cards on file (list, remove; a card
is added in the browser with Stripe.js). Another organization's objects are 404s; what is
public about a provider's ratings is its `rating` aggregate in /providers/ and its page (see
billing.ratings).
"""

from django.db.models import Q
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import exceptions, mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import BasePermission
from rest_framework.response import Response

from auctions.models import Lease
from billing.api.serializers import (
    CardSerializer,
    OwnRatingSummarySerializer,
    RatingCreateSerializer,
    RatingFilterSerializer,
    RatingReplySerializer,
    RatingSerializer,
    SettlementDetailSerializer,
    SettlementSerializer,
    StatementDetailSerializer,
    StatementFilterSerializer,
    StatementSerializer,
)
from billing.models import (
    Card,
    Rating,
    RatingKind,
    Settlement,
    Statement,
)
from billing.payments import PaymentRefused, card_remove
from billing.pdf import statement_pdf
from billing.ratings import (
    RatingRefused,
    Scores,
    provider_rating_create,
    provider_rating_summary,
    rating_reply,
    ratings_of,
    recipient_rating_create,
    recipient_rating_summary,
)
from billing.statements import (
    cards_of,
    settlement_lines,
    settlements_of,
    statement_groups,
    statements_of,
)
from billing.views import settlement_csv_response
from marketplace.api.authentication import ApiKeyPrincipal
from marketplace.api.idempotency import idempotent
from marketplace.api.organization import api_organization
from marketplace.api.permissions import ScopedAccess
from marketplace.api.problems import Problem
from marketplace.api.schema import IDEMPOTENCY_PARAMETERS, ApiAutoSchema, problem_responses
from marketplace.models import User
from providers.models import ProviderProfile
from providers.selectors import provider_of
from segmentation.api.serializers import ID_MAX
from segmentation.api.views import ActsForOrganization, DownloadNegotiationMixin
from segmentation.models import Job

# HTTP status of each stable refusal code of the rating services.
REFUSAL_STATUS = {
    "invalid_rating": status.HTTP_400_BAD_REQUEST,
    "reply_empty": status.HTTP_400_BAD_REQUEST,
    "rate_the_lease": status.HTTP_400_BAD_REQUEST,
    "not_a_party": status.HTTP_403_FORBIDDEN,
    "not_the_rated_party": status.HTTP_403_FORBIDDEN,
    "rating_not_found": status.HTTP_404_NOT_FOUND,
    "rating_not_open": status.HTTP_409_CONFLICT,
    "rating_window_closed": status.HTTP_409_CONFLICT,
    "already_rated": status.HTTP_409_CONFLICT,
    "already_replied": status.HTTP_409_CONFLICT,
}

PRIVATE_403 = "`organization_required` (you act for no organization) or `insufficient_scope`."
RATING_ID_PARAMETER = OpenApiParameter(
    "id", int, OpenApiParameter.PATH, description="The rating's id."
)


def refusal_problem(refusal: RatingRefused) -> Problem:
    return Problem(
        refusal.message,
        code=refusal.code,
        status_code=REFUSAL_STATUS.get(refusal.code, status.HTTP_409_CONFLICT),
    )


def acting_user(request) -> User | None:
    """Who answers for a rating: the signed-in person, or the member who created the key."""
    principal = request.user
    if isinstance(principal, ApiKeyPrincipal):
        return principal.api_key.created_by
    return principal


def not_a_party(what: str) -> Problem:
    return Problem(
        f"Your organization is not a party to {what}.",
        code="not_a_party",
        status_code=status.HTTP_403_FORBIDDEN,
    )


@extend_schema_view(
    list=extend_schema(
        summary="Your ratings",
        description="Ratings your organization gave and received (as a recipient and, for a "
        "provider, as that provider), newest first; recipient ratings set from payments are "
        "`automatic`.",
        parameters=[RatingFilterSerializer],
        responses={200: RatingSerializer(many=True)}
        | problem_responses(400, 401, 403, s403=PRIVATE_403),
    ),
    retrieve=extend_schema(
        summary="One of your ratings",
        parameters=[RATING_ID_PARAMETER],
        responses={200: RatingSerializer}
        | problem_responses(401, 403, 404, s403=PRIVATE_403, s404="Not one of your ratings."),
    ),
)
class RatingViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Ratings given and received by the acting organization."""

    schema = ApiAutoSchema()

    serializer_class = RatingSerializer
    permission_classes = [ScopedAccess, ActsForOrganization]

    @property
    def organization(self):
        return api_organization(self.request)

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Rating.objects.none()
        return ratings_of(organization=self.organization)

    def filter_queryset(self, queryset):
        if self.action != "list":
            return queryset
        filters = RatingFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        values = filters.validated_data
        if values.get("direction"):
            queryset = ratings_of(organization=self.organization, direction=values["direction"])
        if values.get("kind"):
            queryset = queryset.filter(kind=values["kind"])
        return queryset

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "organization": self.organization}

    def rating_response(self, rating: Rating, *, status_code: int) -> Response:
        rating = self.get_queryset().get(pk=rating.pk)
        return Response(
            RatingSerializer(rating, context=self.get_serializer_context()).data,
            status=status_code,
        )

    @extend_schema(
        summary="Rate a provider or a recipient",
        description=(
            "Within 60 days after the lease ended (or the planned job finished), each side "
            "rates the other once: `kind=provider` (you are the recipient: `satisfied`, "
            "`quality`, `communication`, `delivery` from 1 to 5, `comment`) or `kind=recipient` "
            "(you are the provider: `paid_satisfactorily`, `comment`). A planned job has "
            "several providers: give the one you rate in `provider`. A job that ran under a "
            "lease is rated through its lease."
        ),
        request=RatingCreateSerializer,
        parameters=IDEMPOTENCY_PARAMETERS,
        responses={201: RatingSerializer}
        | problem_responses(
            400,
            401,
            403,
            409,
            422,
            s400="`validation_failed` (see `errors`), or `rate_the_lease`.",
            s403="`not_a_party` (not your lease or job, or no such one), "
            "`organization_required` or `insufficient_scope`.",
            s409="`rating_not_open` (the lease has not ended yet), `rating_window_closed` "
            "(more than 60 days ago), `already_rated`, or `idempotency_in_progress`.",
        ),
    )
    @idempotent
    def create(self, request, *args, **kwargs):
        serializer = RatingCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        values = serializer.validated_data
        organization = self.organization
        rater = None
        if values["kind"] != RatingKind.PROVIDER:
            rater = provider_of(organization=organization)
            if rater is None:
                raise Problem(
                    "Only providers rate recipients; your organization is not a provider.",
                    code="not_a_party",
                    status_code=status.HTTP_403_FORBIDDEN,
                )
        # only a lease or job the caller is a party to is looked at: another's is answered
        # exactly as one that does not exist
        lease = job = None
        if "lease" in values:
            lease = (
                Lease.objects.filter(pk=values["lease"])
                .filter(Q(winner=organization) | Q(block__provider__organization=organization))
                .first()
            )
            if lease is None:
                raise not_a_party(f"lease {values['lease']}")
        else:
            job = (
                Job.objects.filter(pk=values["job"])
                .filter(
                    Q(organization=organization)
                    | Q(items__provider__organization=organization)
                    | Q(lease__block__provider__organization=organization)
                )
                .distinct()
                .first()
            )
            if job is None:
                raise not_a_party(f"job {values['job']}")
        try:
            if values["kind"] == RatingKind.PROVIDER:
                provider = None
                if job is not None:
                    provider = ProviderProfile.objects.filter(
                        organization__slug=values["provider"]
                    ).first()
                    if provider is None:
                        raise not_a_party(f"job {job.pk} with provider {values['provider']}")
                rating = provider_rating_create(
                    organization=organization,
                    user=acting_user(request),
                    lease=lease,
                    job=job,
                    provider=provider,
                    satisfied=values["satisfied"],
                    scores=Scores(
                        quality=values["quality"],
                        communication=values["communication"],
                        delivery=values["delivery"],
                    ),
                    comment=values["comment"],
                )
            else:
                rating = recipient_rating_create(
                    provider=rater,
                    user=acting_user(request),
                    lease=lease,
                    job=job,
                    paid_satisfactorily=values["paid_satisfactorily"],
                    comment=values["comment"],
                )
        except RatingRefused as refusal:
            raise refusal_problem(refusal) from None
        return self.rating_response(rating, status_code=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Reply to a rating",
        description="The rated party may reply once, publicly; a reply cannot be changed.",
        parameters=[RATING_ID_PARAMETER],
        request=RatingReplySerializer,
        responses={200: RatingSerializer}
        | problem_responses(
            400,
            401,
            403,
            404,
            409,
            s403="`not_the_rated_party` (you gave this rating), `organization_required` or "
            "`insufficient_scope`.",
            s404="`rating_not_found`: not one of your ratings.",
            s409="`already_replied`.",
        ),
    )
    @action(detail=True, methods=["post"])
    def reply(self, request, *args, **kwargs):
        serializer = RatingReplySerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            rating_id = int(kwargs["pk"])
        except ValueError:
            rating_id = 0
        try:
            rating = rating_reply(
                rating_id=rating_id,
                organization=self.organization,
                user=acting_user(request),
                text=serializer.validated_data["text"],
            )
        except RatingRefused as refusal:
            raise refusal_problem(refusal) from None
        return self.rating_response(rating, status_code=status.HTTP_200_OK)

    @extend_schema(
        summary="Your aggregates",
        description="Your organization's own aggregates: as a provider (count, share positive "
        "over 12 months, Bayesian mean) and as a recipient (count, share positive).",
        responses={200: OwnRatingSummarySerializer} | problem_responses(401, 403, s403=PRIVATE_403),
    )
    @action(detail=False, methods=["get"])
    def summary(self, request, *args, **kwargs):
        organization = self.organization
        provider = provider_of(organization=organization)
        return Response(
            {
                "as_provider": (
                    provider_rating_summary(provider=provider).as_dict() if provider else None
                ),
                "as_recipient": recipient_rating_summary(organization=organization).as_dict(),
            }
        )


# --- Statements ----------------------------------------------------------------------------------

PRIVATE = (401, 403)

STATEMENT_NUMBER_PARAMETER = OpenApiParameter(
    "number",
    str,
    OpenApiParameter.PATH,
    description="The statement's number, e.g. `ST-202611-00012-USD-ALL`.",
)
STATEMENT_404 = "`statement_not_found`: no statement of your organization has this number."
PDF_RESPONSE = {
    (200, "application/pdf"): OpenApiResponse(
        OpenApiTypes.BINARY, description="The statement as a PDF document (A4)."
    )
}
STATEMENT_SUMMARY = {
    "number": "ST-202611-00012-USD-ALL",
    "url": "https://segment.exchange/api/v1/statements/ST-202611-00012-USD-ALL/",
    "pdf_url": "https://segment.exchange/api/v1/statements/ST-202611-00012-USD-ALL/pdf",
    "period_start": "2026-11-01",
    "period_end": "2026-12-01",
    "presentation": "consolidated",
    "provider": None,
    "currency": "USD",
    "charges_minor": 17000,
    "credits_minor": -1250,
    "carried_minor": 0,
    "total_minor": 15750,
    "amount_due_minor": 15750,
    "status": "paid",
    "issued_at": "2026-12-01T00:05:12Z",
    "paid_at": "2026-12-01T00:06:40Z",
}
STATEMENT_LIST_EXAMPLE = OpenApiExample(
    "A paid monthly statement",
    response_only=True,
    status_codes=["200"],
    value=STATEMENT_SUMMARY,
)

STATEMENT_EXAMPLE = OpenApiExample(
    "A consolidated statement",
    response_only=True,
    value={
        **STATEMENT_SUMMARY,
        "groups": [
            {
                "provider": {"slug": "alpha", "legal_name": "Alpha Networks Ltd"},
                "subtotal_minor": 10750,
                "lines": [
                    {
                        "id": 41,
                        "kind": "auction",
                        "description": "Block of Alpha Networks Ltd, 2026-11-10 09:00 to "
                        "2026-11-10 12:00 UTC, up to 1000 Mbit/s (auction 7)",
                        "amount_minor": 12000,
                        "currency": "USD",
                        "occurred_at": "2026-11-09T17:00:00Z",
                        "lease": 12,
                    },
                    {
                        "id": 44,
                        "kind": "sla_credit",
                        "description": "SLA credit, job 3: 850.00 Mbit/s against 1000 guaranteed",
                        "amount_minor": -1250,
                        "currency": "USD",
                        "occurred_at": "2026-11-10T12:02:00Z",
                        "lease": 12,
                    },
                ],
            },
            {
                "provider": {"slug": "beta", "legal_name": "Beta Telecom Ltd"},
                "subtotal_minor": 5000,
                "lines": [
                    {
                        "id": 45,
                        "kind": "auction",
                        "description": "Block of Beta Telecom Ltd, 2026-11-20 06:00 to "
                        "2026-11-20 08:00 UTC, up to 500 Mbit/s (bought now)",
                        "amount_minor": 5000,
                        "currency": "USD",
                        "occurred_at": "2026-11-19T08:30:00Z",
                        "lease": 15,
                    }
                ],
            },
        ],
        "charge": {
            "status": "succeeded",
            "amount_minor": 15750,
            "currency": "USD",
            "attempts": 1,
            "next_attempt_at": None,
            "last_error_code": "",
            "succeeded_at": "2026-12-01T00:06:40Z",
            "authenticate_url": None,
        },
    },
)


@extend_schema_view(
    list=extend_schema(
        summary="Your statements",
        description="Your organization's statements, newest period first: per billing period "
        "and currency, one consolidated statement (every provider's lines) and one per "
        "provider whose lines ask for it (the job's profile, else your billing preference).",
        parameters=[StatementFilterSerializer],
        responses={200: StatementSerializer(many=True)}
        | problem_responses(400, *PRIVATE, s403=PRIVATE_403),
        examples=[STATEMENT_LIST_EXAMPLE],
    ),
    retrieve=extend_schema(
        summary="One of your statements",
        description="The statement with its lines grouped by provider, each group's "
        "subtotal, the charges, credits (SLA credits are negative lines), total and amount "
        "due, and its payment. Every amount is in minor units of the statement's currency; "
        "the subtotals add up to `total_minor`.",
        parameters=[STATEMENT_NUMBER_PARAMETER],
        responses={200: StatementDetailSerializer}
        | problem_responses(*PRIVATE, 404, s403=PRIVATE_403, s404=STATEMENT_404),
        examples=[STATEMENT_EXAMPLE],
    ),
    pdf=extend_schema(
        summary="A statement as PDF",
        description="The statement as its page shows it, as a PDF document. Answers in "
        "`application/pdf` whatever the `Accept` header asks; problems are JSON.",
        parameters=[STATEMENT_NUMBER_PARAMETER],
        responses=PDF_RESPONSE
        | problem_responses(*PRIVATE, 404, s403=PRIVATE_403, s404=STATEMENT_404),
    ),
)
class StatementViewSet(DownloadNegotiationMixin, mixins.ListModelMixin, viewsets.GenericViewSet):
    """The acting organization's statements; another organization's is a 404."""

    schema = ApiAutoSchema()

    serializer_class = StatementSerializer
    permission_classes = [ScopedAccess, ActsForOrganization]
    lookup_field = "number"
    download_actions = ("pdf",)

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Statement.objects.none()
        return statements_of(api_organization(self.request)).select_related(
            "organization", "provider__organization"
        )

    def filter_queryset(self, queryset):
        if self.action != "list":
            return queryset
        filters = StatementFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        values = filters.validated_data
        if values.get("status"):
            queryset = queryset.filter(status=values["status"])
        if values.get("currency"):
            queryset = queryset.filter(currency=values["currency"])
        return queryset

    def get_object(self) -> Statement:
        statement = self.get_queryset().filter(number=self.kwargs["number"]).first()
        if statement is None:
            raise Problem(
                "No statement of your organization has this number.",
                code="statement_not_found",
                status_code=status.HTTP_404_NOT_FOUND,
            )
        return statement

    def retrieve(self, request, *args, **kwargs):
        statement = self.get_object()
        context = {**self.get_serializer_context(), "groups": statement_groups(statement)}
        return Response(StatementDetailSerializer(statement, context=context).data)

    @action(detail=True, methods=["get"], url_path="pdf")
    def pdf(self, request, *args, **kwargs):
        statement = self.get_object()
        response = HttpResponse(
            statement_pdf(statement, statement_groups(statement)), content_type="application/pdf"
        )
        response["Content-Disposition"] = f'attachment; filename="{statement.number}.pdf"'
        return response


# --- Settlements ---------------------------------------------------------------------------------


def path_id(value: str) -> int | None:
    """An id from the path, or None when it is no id a database holds."""
    return int(value) if value.isdigit() and 0 < int(value) <= ID_MAX else None


class NotAProvider(exceptions.PermissionDenied):
    default_code = "not_a_provider"
    default_detail = "Settlements are for providers; the organization you act for is no provider."


class ActsForProvider(BasePermission):
    """The acting organization is a provider (after ActsForOrganization)."""

    def has_permission(self, request, view):
        if provider_of(organization=api_organization(request)) is None:
            raise NotAProvider()
        return True


SETTLEMENT_ID_PARAMETER = OpenApiParameter(
    "id", int, OpenApiParameter.PATH, description="The settlement's id."
)
SETTLEMENT_403 = (
    "`not_a_provider` (the organization you act for is no provider), `organization_required` "
    "or `insufficient_scope`."
)
SETTLEMENT_404 = "`settlement_not_found`: no settlement of yours has this id."
CSV_RESPONSE = {
    (200, "text/csv"): OpenApiResponse(
        OpenApiTypes.STR,
        description="Columns `statement, occurred_at, kind, description, amount_minor, "
        "currency`: one row per line, then the rows `gross`, `fee` (its rate in `description`) "
        "and `net`.",
    )
}


@extend_schema_view(
    list=extend_schema(
        summary="Your settlements",
        description="What the exchange owes you as a provider, per billing period and "
        "currency, newest first: the paid lines attributed to you (gross), the exchange's fee "
        "and the net paid out. A period is settled once its statements are paid.",
        responses={200: SettlementSerializer(many=True)}
        | problem_responses(*PRIVATE, s403=SETTLEMENT_403),
    ),
    retrieve=extend_schema(
        summary="One of your settlements",
        description="The settlement with the lines its gross adds up.",
        parameters=[SETTLEMENT_ID_PARAMETER],
        responses={200: SettlementDetailSerializer}
        | problem_responses(*PRIVATE, 404, s403=SETTLEMENT_403, s404=SETTLEMENT_404),
    ),
    csv=extend_schema(
        summary="A settlement as CSV",
        description="The settlement's lines and totals as CSV, in `text/csv` whatever the "
        "`Accept` header asks; problems are JSON.",
        parameters=[SETTLEMENT_ID_PARAMETER],
        responses=CSV_RESPONSE
        | problem_responses(*PRIVATE, 404, s403=SETTLEMENT_403, s404=SETTLEMENT_404),
    ),
)
class SettlementViewSet(DownloadNegotiationMixin, mixins.ListModelMixin, viewsets.GenericViewSet):
    """The acting provider's settlements; another provider's is a 404."""

    schema = ApiAutoSchema()

    serializer_class = SettlementSerializer
    permission_classes = [ScopedAccess, ActsForOrganization, ActsForProvider]
    download_actions = ("csv",)

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Settlement.objects.none()
        return settlements_of(provider_of(organization=api_organization(self.request)))

    def get_object(self) -> Settlement:
        pk = path_id(self.kwargs["pk"])
        settlement = self.get_queryset().filter(pk=pk).first() if pk else None
        if settlement is None:
            raise Problem(
                "No settlement of yours has this id.",
                code="settlement_not_found",
                status_code=status.HTTP_404_NOT_FOUND,
            )
        return settlement

    def retrieve(self, request, *args, **kwargs):
        settlement = self.get_object()
        context = {**self.get_serializer_context(), "lines": settlement_lines(settlement)}
        return Response(SettlementDetailSerializer(settlement, context=context).data)

    @action(detail=True, methods=["get"], url_path="csv")
    def csv(self, request, *args, **kwargs):
        return settlement_csv_response(self.get_object())


# --- Cards ---------------------------------------------------------------------------------------

CARD_ID_PARAMETER = OpenApiParameter("id", int, OpenApiParameter.PATH, description="The card's id.")
# HTTP status of each stable code of a refused card operation.
PAYMENT_REFUSAL_STATUS = {
    "payments_unavailable": status.HTTP_503_SERVICE_UNAVAILABLE,
}


@extend_schema_view(
    list=extend_schema(
        summary="Your cards on file",
        description="The cards your organization's statements are charged to, the default "
        "first. Cards are added in the browser only, on the cards page (/billing/cards/), "
        "with Stripe.js: the card's number goes from the browser to Stripe and never "
        "reaches the exchange, so the API cannot add one.",
        responses={200: CardSerializer(many=True)} | problem_responses(*PRIVATE, s403=PRIVATE_403),
    ),
    destroy=extend_schema(
        summary="Remove a card",
        description="Detaches the card at Stripe and forgets it; when it was the default, the "
        "most recently added of the others becomes the default. Statements are charged to "
        "the default card: with none left, a charge fails until a card is added.",
        parameters=[CARD_ID_PARAMETER],
        responses={204: None}
        | problem_responses(
            *PRIVATE,
            404,
            503,
            s403=PRIVATE_403,
            s404="`card_not_found`: no card of your organization has this id.",
            s503="`payments_unavailable`: Stripe cannot be reached; nothing was removed.",
        ),
    ),
)
class CardViewSet(mixins.ListModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet):
    """The acting organization's cards on file; another organization's is a 404."""

    schema = ApiAutoSchema()

    serializer_class = CardSerializer
    permission_classes = [ScopedAccess, ActsForOrganization]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Card.objects.none()
        return cards_of(api_organization(self.request))

    def get_object(self) -> Card:
        pk = path_id(self.kwargs["pk"])
        card = self.get_queryset().filter(pk=pk).first() if pk else None
        if card is None:
            raise Problem(
                "No card of your organization has this id.",
                code="card_not_found",
                status_code=status.HTTP_404_NOT_FOUND,
            )
        return card

    def perform_destroy(self, instance):
        try:
            card_remove(card=instance)
        except PaymentRefused as refusal:
            raise Problem(
                refusal.message,
                code=refusal.code,
                status_code=PAYMENT_REFUSAL_STATUS.get(refusal.code, status.HTTP_409_CONFLICT),
            ) from None
