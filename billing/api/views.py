"""Partner API for ratings: those the acting organization gave and received, giving one, and
replying to one received. Another organization's ratings are 404s; what is public about a
provider's ratings is its `rating` aggregate in /providers/ and its page (see billing.ratings).
"""

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from auctions.models import Lease
from billing.api.serializers import (
    OwnRatingSummarySerializer,
    RatingCreateSerializer,
    RatingFilterSerializer,
    RatingReplySerializer,
    RatingSerializer,
)
from billing.models import Rating, RatingKind
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
from marketplace.api.authentication import ApiKeyPrincipal
from marketplace.api.idempotency import idempotent
from marketplace.api.organization import api_organization
from marketplace.api.permissions import ScopedAccess
from marketplace.api.problems import Problem
from marketplace.api.schema import IDEMPOTENCY_PARAMETERS, problem_responses
from marketplace.models import User
from providers.models import ProviderProfile
from providers.selectors import provider_of
from segmentation.api.views import ActsForOrganization
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
        lease = job = None
        if "lease" in values:
            lease = Lease.objects.filter(pk=values["lease"]).first()
            if lease is None:
                raise not_a_party(f"lease {values['lease']}")
        else:
            job = Job.objects.filter(pk=values["job"]).first()
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
                provider = provider_of(organization=organization)
                if provider is None:
                    raise Problem(
                        "Only providers rate recipients; your organization is not a provider.",
                        code="not_a_party",
                        status_code=status.HTTP_403_FORBIDDEN,
                    )
                rating = recipient_rating_create(
                    provider=provider,
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
