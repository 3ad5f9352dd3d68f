"""Shapes of ratings, statements, settlements and cards in the partner API. Money is an
integer `*_minor` amount with its `currency`, as everywhere in the exchange."""

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from billing.models import (
    Card,
    Charge,
    ChargeStatus,
    LineItem,
    LineItemKind,
    Rating,
    RatingKind,
    RatingSource,
    Settlement,
    Statement,
    StatementStatus,
)
from billing.ratings import (
    COMMENT_MAX_LENGTH,
    REPLY_MAX_LENGTH,
    provider_rating_summaries,
    rating_direction,
)
from marketplace.api.problems import RULE
from marketplace.api.strict import StrictJsonTypes
from marketplace.money import CURRENCY_CHOICES
from segmentation.models import BillingPresentation


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


class RatingCreateSerializer(StrictJsonTypes, serializers.Serializer):
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
            # which fields a rating takes depends on its kind and on each other: a 422
            raise serializers.ValidationError(errors, code=RULE)
        return attrs


class RatingReplySerializer(StrictJsonTypes, serializers.Serializer):
    text = serializers.CharField(max_length=REPLY_MAX_LENGTH, help_text="Your public reply.")


class RatingFilterSerializer(serializers.Serializer):
    direction = serializers.ChoiceField(
        choices=["given", "received"],
        required=False,
        help_text="Only ratings your organization gave, or only those it received.",
    )
    # a query parameter is documented inline: its values may be an enum of its own here
    kind = serializers.ChoiceField(
        choices=RatingKind.choices, required=False, help_text="`provider` or `recipient`."
    )


# --- statements, settlements, cards --------------------------------------------------------------


def _absolute(request, name: str, *args) -> str:
    path = reverse(name, args=args)
    return request.build_absolute_uri(path) if request is not None else path


@extend_schema_field(OpenApiTypes.STR)
class ValuesField(serializers.ChoiceField):
    """A choice documented as a plain string with its values in the help text, like
    `RatingKindField`: the enums drf-spectacular names after the field ("Status", "Kind",
    "Presentation") would collide with other choice sets of the same name."""

    def __init__(self, *, choices, help_text: str, **kwargs):
        kwargs.setdefault("read_only", True)
        values = ", ".join(f"`{value}`" for value, _label in choices)
        super().__init__(choices=choices, help_text=f"{help_text} One of {values}.", **kwargs)


class BilledProviderSerializer(serializers.Serializer):
    """The provider a line, a subtotal or a per-provider statement is attributed to."""

    slug = serializers.SlugField(source="organization.slug")
    legal_name = serializers.CharField()


class StatementLineSerializer(serializers.ModelSerializer):
    """A line of a statement: a charge, or a credit (negative)."""

    kind = ValuesField(
        choices=LineItemKind.choices,
        help_text="What it bills: a won auction, metered usage, subcontracted work, an SLA "
        "credit (negative) or a sponsorship allocation.",
    )

    class Meta:
        model = LineItem
        fields = ["id", "kind", "description", "amount_minor", "currency", "occurred_at", "lease"]
        read_only_fields = fields


class StatementGroupSerializer(serializers.Serializer):
    """A provider's lines on a statement, with their subtotal."""

    provider = BilledProviderSerializer()
    subtotal_minor = serializers.IntegerField(help_text="The sum of the provider's lines.")
    lines = StatementLineSerializer(many=True)


class StatementChargeSerializer(serializers.ModelSerializer):
    """The payment of a statement's amount due by the default card."""

    status = ValuesField(
        choices=ChargeStatus.choices,
        help_text="`requires_action`: the bank wants the cardholder to confirm it, at "
        "`authenticate_url`; `failed`: declined (tried again at `next_attempt_at`, if any).",
    )
    authenticate_url = serializers.SerializerMethodField(
        help_text="The page where a member confirms the payment with the bank (Stripe.js), "
        "while it waits for that; null otherwise."
    )

    class Meta:
        model = Charge
        fields = [
            "status",
            "amount_minor",
            "currency",
            "attempts",
            "next_attempt_at",
            "last_error_code",
            "succeeded_at",
            "authenticate_url",
        ]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.URI)
    def get_authenticate_url(self, charge) -> str | None:
        if charge.status != ChargeStatus.REQUIRES_ACTION:
            return None
        return _absolute(self.context.get("request"), "charge_authenticate", charge.pk)


class StatementSerializer(serializers.ModelSerializer):
    """A statement of the acting organization: a period's lines in one currency, of every
    provider (consolidated) or of one (per provider)."""

    url = serializers.SerializerMethodField()
    pdf_url = serializers.SerializerMethodField()
    presentation = ValuesField(
        choices=BillingPresentation.choices,
        help_text="`consolidated`: every provider's lines, grouped by provider; "
        "`per_provider`: one provider's (see `provider`).",
    )
    provider = BilledProviderSerializer(
        read_only=True,
        allow_null=True,
        help_text="The provider of a per-provider statement; null when consolidated.",
    )
    period_end = serializers.DateField(
        read_only=True, help_text="The day after the period's last day."
    )
    status = ValuesField(choices=StatementStatus.choices, help_text="The statement's state.")
    amount_due_minor = serializers.IntegerField(
        read_only=True, help_text="What the card is charged: the total when positive, else 0."
    )

    class Meta:
        model = Statement
        fields = [
            "number",
            "url",
            "pdf_url",
            "period_start",
            "period_end",
            "presentation",
            "provider",
            "currency",
            "charges_minor",
            "credits_minor",
            "carried_minor",
            "total_minor",
            "amount_due_minor",
            "status",
            "issued_at",
            "paid_at",
        ]
        read_only_fields = fields

    def get_url(self, statement) -> str:
        return _absolute(self.context.get("request"), "statement-detail", statement.number)

    def get_pdf_url(self, statement) -> str:
        return _absolute(self.context.get("request"), "statement-pdf", statement.number)


class StatementDetailSerializer(StatementSerializer):
    """A statement with its lines grouped by provider (by name), each group's subtotal, and
    its payment. The subtotals add up to `total_minor`."""

    groups = serializers.SerializerMethodField()
    charge = serializers.SerializerMethodField(
        help_text="The payment of the amount due; null while none was attempted (or nothing "
        "is due)."
    )

    class Meta(StatementSerializer.Meta):
        fields = [*StatementSerializer.Meta.fields, "groups", "charge"]
        read_only_fields = fields

    @extend_schema_field(StatementGroupSerializer(many=True))
    def get_groups(self, statement) -> list:
        return StatementGroupSerializer(self.context["groups"], many=True).data

    @extend_schema_field(StatementChargeSerializer(allow_null=True))
    def get_charge(self, statement) -> dict | None:
        charge = Charge.objects.filter(statement=statement).first()
        if charge is None:
            return None
        return StatementChargeSerializer(charge, context=self.context).data


class StatementFilterSerializer(serializers.Serializer):
    """The filters of the statement list, read from the query string."""

    status = serializers.ChoiceField(
        choices=StatementStatus.choices, required=False, help_text="Only statements in this state."
    )
    currency = serializers.ChoiceField(
        choices=CURRENCY_CHOICES,
        required=False,
        help_text="Only statements in this currency.",
    )


class SettlementLineSerializer(serializers.ModelSerializer):
    """A paid line attributed to the provider, as it counts in its settlement's gross."""

    statement = serializers.CharField(
        source="statement.number", read_only=True, help_text="Its statement's number."
    )
    kind = ValuesField(choices=LineItemKind.choices, help_text="What it billed.")

    class Meta:
        model = LineItem
        fields = ["statement", "occurred_at", "kind", "description", "amount_minor", "currency"]
        read_only_fields = fields


class SettlementSerializer(serializers.ModelSerializer):
    """What the exchange owes the acting provider for a period in one currency: the paid
    lines attributed to it (gross), the exchange's fee and the net."""

    url = serializers.SerializerMethodField()
    csv_url = serializers.SerializerMethodField()

    class Meta:
        model = Settlement
        fields = [
            "id",
            "url",
            "csv_url",
            "period_start",
            "period_end",
            "currency",
            "gross_minor",
            "fee_bps",
            "fee_minor",
            "reversals_minor",
            "net_minor",
            "lines_count",
            "created_at",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "period_end": {"help_text": "The day after the period's last day."},
            "gross_minor": {"help_text": "The sum of the paid lines attributed to you."},
            "fee_bps": {"help_text": "The exchange's fee rate, in basis points (1000 = 10 %)."},
            "fee_minor": {"help_text": "The exchange's fee: the rate of the gross, half up."},
            "reversals_minor": {
                "help_text": "What you return (0 or less) of earlier settlements' lines whose "
                "statements were charged back after a lost dispute."
            },
            "net_minor": {"help_text": "Gross minus fee plus reversals: what is paid out to you."},
        }

    def get_url(self, settlement) -> str:
        return _absolute(self.context.get("request"), "settlement-detail", settlement.pk)

    def get_csv_url(self, settlement) -> str:
        return _absolute(self.context.get("request"), "settlement-csv", settlement.pk)


class SettlementDetailSerializer(SettlementSerializer):
    """A settlement with the lines its gross adds up."""

    lines = serializers.SerializerMethodField()

    class Meta(SettlementSerializer.Meta):
        fields = [*SettlementSerializer.Meta.fields, "lines"]
        read_only_fields = fields

    @extend_schema_field(SettlementLineSerializer(many=True))
    def get_lines(self, settlement) -> list:
        return SettlementLineSerializer(self.context["lines"], many=True).data


class CardSerializer(serializers.ModelSerializer):
    """A card on file: what the exchange knows of it (never its number)."""

    class Meta:
        model = Card
        fields = ["id", "brand", "last4", "exp_month", "exp_year", "is_default", "created_at"]
        read_only_fields = fields
        extra_kwargs = {
            "is_default": {"help_text": "Statements are charged to the default card."},
        }
