"""Shapes of providers' networks, routing paths and offers in the partner API."""

from rest_framework import serializers

from billing.api.serializers import ProviderRatingField
from marketplace.api.strict import StrictJsonTypes
from marketplace.money import CURRENCY_CHOICES
from providers.models import (
    Network,
    NetworkTechnology,
    Offer,
    ProviderProfile,
    RoutingPath,
    Service,
)

# Largest value a PositiveBigIntegerField holds on every supported database.
MINOR_UNITS_MAX = 2**63 - 1
CAPACITY_MAX = 2**31 - 1


class StrictIntegerField(serializers.IntegerField):
    """An integer that must arrive as a JSON number without a fraction: "12", 12.0 and true
    are refused instead of being coerced, so a client mistake never becomes a wrong price."""

    default_error_messages = {
        "invalid": "Send a whole number as a JSON integer, not a string or a decimal.",
    }

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return data


class MinorUnitsField(StrictIntegerField):
    """An amount of money in minor units of the accompanying currency (cents for USD)."""

    default_error_messages = {
        "invalid": (
            "Send the amount as a whole number of minor units in a JSON integer, "
            "e.g. 1250 for 12.50 USD; strings and decimals are not accepted."
        ),
        "min_value": "An amount cannot be negative.",
    }

    def __init__(self, **kwargs):
        kwargs.setdefault("min_value", 0)
        kwargs.setdefault("max_value", MINOR_UNITS_MAX)
        super().__init__(**kwargs)


class NetworkSerializer(StrictJsonTypes, serializers.ModelSerializer):
    """One of the provider's own networks."""

    technology = serializers.ChoiceField(choices=NetworkTechnology.choices)

    class Meta:
        model = Network
        fields = ["id", "name", "technology", "region"]


class RoutingPathHopsField(serializers.ManyRelatedField):
    """The path's hops as the ids of the provider's networks, ingress first."""

    def get_attribute(self, instance):
        return [hop.network for hop in instance.hops.all()]


class RoutingPathSerializer(StrictJsonTypes, serializers.ModelSerializer):
    """One of the provider's own routing paths."""

    capacity_mbps = StrictIntegerField(
        min_value=1, max_value=CAPACITY_MAX, help_text="Nominal capacity in Mbit/s."
    )
    hops = RoutingPathHopsField(
        child_relation=serializers.PrimaryKeyRelatedField(
            queryset=Network.objects.none(),
            error_messages={
                "does_not_exist": "Network {pk_value} is not one of your networks.",
                "incorrect_type": "Give each hop as a network id, not {data_type}.",
            },
        ),
        allow_empty=False,
        error_messages={"empty": "A routing path needs at least one hop."},
        help_text=(
            "Ids of your own networks (see /networks/) in order from ingress to egress. "
            "A network of another provider is refused."
        ),
    )

    class Meta:
        model = RoutingPath
        fields = ["id", "name", "capacity_mbps", "hops"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        provider = self.context.get("provider")
        if provider is not None:
            self.fields["hops"].child_relation.queryset = Network.objects.filter(provider=provider)


class OfferSerializer(StrictJsonTypes, serializers.ModelSerializer):
    """One of the provider's own offers: a service with its unit prices."""

    service = serializers.ChoiceField(choices=Service.choices)
    price_per_gb_minor = MinorUnitsField(help_text="Price per GB processed, in minor units.")
    price_per_minute_minor = MinorUnitsField(
        help_text="Price per minute of block time, in minor units."
    )
    currency = serializers.ChoiceField(
        choices=CURRENCY_CHOICES, help_text="ISO 4217 code of both prices."
    )
    is_active = serializers.BooleanField(
        default=True, help_text="Inactive offers are hidden from buyers."
    )

    class Meta:
        model = Offer
        fields = [
            "id",
            "service",
            "price_per_gb_minor",
            "price_per_minute_minor",
            "currency",
            "is_active",
            "created_at",
        ]
        read_only_fields = ["created_at"]


class ProviderNetworkSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = Network
        fields = ["name", "technology", "region"]


class ProviderOfferSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = Offer
        fields = ["service", "price_per_gb_minor", "price_per_minute_minor", "currency"]


class ProviderSerializer(serializers.ModelSerializer):
    """A verified provider as anyone may see it, with its networks and active offers."""

    slug = serializers.SlugField(source="organization.slug", read_only=True)
    name = serializers.CharField(source="organization.name", read_only=True)
    networks = ProviderNetworkSummarySerializer(many=True, read_only=True)
    offers = ProviderOfferSummarySerializer(
        many=True, read_only=True, help_text="Active offers only."
    )
    rating = ProviderRatingField()
    # a plain string: a provider without a web site has an empty one, which is no URI
    website = serializers.CharField(
        read_only=True, help_text="The provider's web site (a URL); empty when it gave none."
    )

    class Meta:
        model = ProviderProfile
        fields = [
            "slug",
            "name",
            "legal_name",
            "website",
            "description",
            "verified_at",
            "networks",
            "offers",
            "rating",
        ]
        read_only_fields = fields
