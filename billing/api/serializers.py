"""Shapes of ratings in the partner API."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from billing.models import Rating, RatingKind, RatingSource
from billing.ratings import (
    COMMENT_MAX_LENGTH,
    REPLY_MAX_LENGTH,
    provider_rating_summaries,
    rating_direction,
)


@extend_schema_field(OpenApiTypes.STR)
class RatingKindField(serializers.ChoiceField):
    """`provider` or `recipient`. Documented as a plain string (the values are in each field's
    help text): an enum named after the field, "Kind", would collide with the work items'."""

    def __init__(self, **kwargs):
        super().__init__(choices=RatingKind.choices, **kwargs)


class RatingSummarySerializer(serializers.Serializer):
    """A party's aggregates (``RatingSummary.as_dict``)."""

    count = serializers.IntegerField(help_text="Ratings received, ever.")
    count_12_months = serializers.IntegerField(help_text="Ratings received in the last 12 months.")
    share_positive_12_months = serializers.FloatField(
        allow_null=True,
        help_text="Share (0 to 1) of the last 12 months' ratings that are positive; null "
        "without any.",
    )
    bayesian_mean = serializers.FloatField(
        allow_null=True,
        help_text="Providers: Bayesian mean (1 to 5) of the mean of quality, communication and "
        "delivery, with a prior of 5 ratings of 3.0; null while unrated. Recipients: null.",
    )


@extend_schema_field(RatingSummarySerializer)
class ProviderRatingField(serializers.Field):
    """A provider's aggregates, for the provider's own serializer (``source="*"``). In a list
    the whole page's summaries come from one query."""

    def __init__(self, **kwargs):
        kwargs.setdefault("source", "*")
        kwargs.setdefault("read_only", True)
        kwargs.setdefault(
            "help_text",
            "Ratings by recipients: count, share positive over 12 months, Bayesian mean.",
        )
        super().__init__(**kwargs)

    def to_representation(self, provider):
        summaries = self.context.setdefault("provider_rating_summaries", {})
        if provider.pk not in summaries:
            page = getattr(getattr(self.parent, "parent", None), "instance", None)
            ids = {p.pk for p in page} if isinstance(page, list) else set()
            summaries.update(provider_rating_summaries(provider_ids=ids | {provider.pk}))
        return summaries[provider.pk].as_dict()


class StrictIntegerField(serializers.IntegerField):
    """An integer sent as a JSON number: "3", 3.0 and true are refused."""

    default_error_messages = {"invalid": "Send a whole number as a JSON integer."}

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class OwnRatingSummarySerializer(serializers.Serializer):
    """The acting organization's own aggregates, as a provider and as a recipient."""

    as_provider = RatingSummarySerializer(
        allow_null=True, help_text="Null when the organization is not a provider."
    )
    as_recipient = RatingSummarySerializer()


class PartySerializer(serializers.Serializer):
    slug = serializers.SlugField()
    name = serializers.CharField()


class RatingSerializer(serializers.ModelSerializer):
    """A rating the acting organization gave or received."""

    kind = RatingKindField(
        help_text="`provider` (a recipient's rating of a provider) or `recipient` (a "
        "provider's rating of a recipient, or one set from a payment)."
    )
    direction = serializers.SerializerMethodField(help_text="`given` or `received`.")
    automatic = serializers.SerializerMethodField(
        help_text="Set from a payment's outcome (recipient ratings only), not by a person."
    )
    provider = serializers.SerializerMethodField()
    recipient = serializers.SerializerMethodField()
    satisfied = serializers.SerializerMethodField(
        help_text="Provider ratings: was the service satisfactory. Null on recipient ratings."
    )
    paid_satisfactorily = serializers.SerializerMethodField(
        help_text="Recipient ratings: did the recipient pay satisfactorily. Null on provider "
        "ratings."
    )

    class Meta:
        model = Rating
        fields = [
            "id",
            "kind",
            "direction",
            "automatic",
            "provider",
            "recipient",
            "lease",
            "job",
            "satisfied",
            "paid_satisfactorily",
            "quality",
            "communication",
            "delivery",
            "comment",
            "reply",
            "replied_at",
            "created_at",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.ChoiceField(choices=["given", "received"]))
    def get_direction(self, rating) -> str:
        return rating_direction(rating, organization=self.context["organization"])

    def get_automatic(self, rating) -> bool:
        return rating.source == RatingSource.PAYMENT

    @extend_schema_field(PartySerializer)
    def get_provider(self, rating) -> dict:
        organization = rating.provider.organization
        return {"slug": organization.slug, "name": organization.name}

    @extend_schema_field(PartySerializer)
    def get_recipient(self, rating) -> dict:
        return {"slug": rating.recipient.slug, "name": rating.recipient.name}

    @extend_schema_field(OpenApiTypes.BOOL)
    def get_satisfied(self, rating) -> bool | None:
        return rating.positive if rating.kind == RatingKind.PROVIDER else None

    @extend_schema_field(OpenApiTypes.BOOL)
    def get_paid_satisfactorily(self, rating) -> bool | None:
        return rating.positive if rating.kind == RatingKind.RECIPIENT else None


def _score(name: str) -> StrictIntegerField:
    return StrictIntegerField(
        min_value=1, max_value=5, required=False, help_text=f"Provider ratings: {name}, 1 to 5."
    )


class RatingCreateSerializer(serializers.Serializer):
    """A rating to give: about a lease, or about a planned job (and, rating providers, which of
    the job's providers)."""

    kind = RatingKindField(
        help_text="`provider`: you are the recipient and rate the provider. `recipient`: you "
        "are the provider and rate the recipient.",
    )
    lease = StrictIntegerField(required=False, min_value=1, help_text="The lease's id.")
    job = StrictIntegerField(
        required=False, min_value=1, help_text="A planned job's id (a job with no lease)."
    )
    provider = serializers.SlugField(
        required=False, help_text="Rating a provider of a planned job: its organization slug."
    )
    satisfied = serializers.BooleanField(required=False, help_text="Provider ratings.")
    paid_satisfactorily = serializers.BooleanField(required=False, help_text="Recipient ratings.")
    quality = _score("quality")
    communication = _score("communication")
    delivery = _score("delivery")
    comment = serializers.CharField(
        required=False, allow_blank=True, max_length=COMMENT_MAX_LENGTH, default=""
    )

    def validate(self, attrs):
        errors = {}
        if ("lease" in attrs) == ("job" in attrs):
            errors["non_field_errors"] = ["Give either `lease` or `job`."]
        scores = ("quality", "communication", "delivery")
        if attrs["kind"] == RatingKind.PROVIDER:
            for name in ("satisfied", *scores):
                if name not in attrs:
                    errors[name] = ["Required to rate a provider."]
            if "paid_satisfactorily" in attrs:
                errors["paid_satisfactorily"] = ["Only for rating a recipient."]
            if "job" in attrs and "provider" not in attrs:
                errors["provider"] = ["Say which provider of the job you rate."]
            if "lease" in attrs and "provider" in attrs:
                errors["provider"] = ["Only for a job: a lease has one provider."]
        else:
            if "paid_satisfactorily" not in attrs:
                errors["paid_satisfactorily"] = ["Required to rate a recipient."]
            for name in ("satisfied", "provider", *scores):
                if name in attrs:
                    errors[name] = ["Only for rating a provider."]
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class RatingReplySerializer(serializers.Serializer):
    text = serializers.CharField(max_length=REPLY_MAX_LENGTH, help_text="Your public reply.")


class RatingFilterSerializer(serializers.Serializer):
    direction = serializers.ChoiceField(
        choices=["given", "received"],
        required=False,
        help_text="Only ratings your organization gave, or only those it received.",
    )
    kind = RatingKindField(required=False, help_text="`provider` or `recipient`.")
