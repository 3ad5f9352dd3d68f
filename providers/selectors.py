"""Reads for providers."""

from django.db.models import Prefetch, QuerySet

from marketplace.models import Organization
from providers.models import (
    Network,
    Offer,
    ProviderProfile,
    ProviderStatus,
    RoutingPath,
    WebhookDelivery,
    WebhookEndpoint,
)


def providers_public() -> QuerySet[ProviderProfile]:
    """Providers anyone may see and buy from: verified ones only."""
    return (
        ProviderProfile.objects.filter(status=ProviderStatus.VERIFIED, organization__is_active=True)
        .select_related("organization")
        .prefetch_related(
            Prefetch("offers", queryset=Offer.objects.filter(is_active=True)), "networks"
        )
    )


def provider_of(*, organization: Organization | None) -> ProviderProfile | None:
    if organization is None:
        return None
    return ProviderProfile.objects.filter(organization=organization).first()


def networks_of(*, provider: ProviderProfile) -> QuerySet[Network]:
    return provider.networks.all()


def routing_paths_of(*, provider: ProviderProfile) -> QuerySet[RoutingPath]:
    return provider.routing_paths.prefetch_related("hops__network")


def offers_of(*, provider: ProviderProfile) -> QuerySet[Offer]:
    return provider.offers.all()


def webhook_endpoints_of(*, provider: ProviderProfile) -> QuerySet[WebhookEndpoint]:
    """The provider's webhook endpoints, active or not."""
    return WebhookEndpoint.objects.filter(provider=provider)


def webhook_deliveries_of(*, provider: ProviderProfile) -> QuerySet[WebhookDelivery]:
    """The delivery log of the provider's endpoints, newest first, with each attempt."""
    return (
        WebhookDelivery.objects.filter(endpoint__provider=provider)
        .select_related("endpoint")
        .prefetch_related("attempt_log")
    )
