"""Writes for providers: registration, verification, networks, routing paths, offers."""

from collections.abc import Sequence
from dataclasses import dataclass

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import ProtectedError
from django.utils import timezone

from marketplace.models import Organization, OrganizationKind, User
from marketplace.money import currency_validate
from marketplace.services import audit_log_record, organization_create
from providers.models import (
    Network,
    Offer,
    ProviderProfile,
    ProviderStatus,
    RoutingPath,
    RoutingPathHop,
    Service,
    WorkLocation,
)


class ProviderNotVerified(PermissionDenied):
    """Raised when an unverified (or suspended) provider tries to sell."""


@dataclass(frozen=True, kw_only=True)
class NetworkInput:
    name: str
    technology: str
    region: str


@dataclass(frozen=True, kw_only=True)
class RoutingPathInput:
    name: str
    capacity_mbps: int
    hops: Sequence[str]  # network names, ingress first


@dataclass(frozen=True, kw_only=True)
class OfferInput:
    service: str
    price_per_gb_minor: int
    price_per_minute_minor: int
    currency: str = "USD"


def provider_assert_can_sell(*, provider: ProviderProfile) -> None:
    """The gate every selling action passes: only verified providers sell."""
    if not provider.is_verified:
        raise ProviderNotVerified(
            f"{provider.legal_name} is {provider.get_status_display().lower()}; "
            "only verified providers can sell."
        )


@transaction.atomic
def provider_register(
    *,
    user: User,
    organization: Organization | None,
    organization_name: str = "",
    legal_name: str,
    contact_name: str,
    contact_email: str,
    contact_phone: str = "",
    website: str = "",
    description: str = "",
    work_location: str = WorkLocation.EXCHANGE,
    networks: Sequence[NetworkInput] = (),
    routing_paths: Sequence[RoutingPathInput] = (),
    offers: Sequence[OfferInput] = (),
) -> ProviderProfile:
    """Apply to sell: creates (or upgrades) the organization and its provider profile, networks,
    routing paths and offers, all awaiting staff verification."""
    if organization is None:
        organization = organization_create(
            user=user, name=organization_name or legal_name, kind=OrganizationKind.PROVIDER
        )
    else:
        organization = Organization.objects.select_for_update().get(pk=organization.pk)
        if not organization.memberships.filter(user=user, role__in=("owner", "admin")).exists():
            raise PermissionDenied("Only an owner or admin can register the organization.")
        if ProviderProfile.objects.filter(organization=organization).exists():
            raise ValidationError(f"{organization} has already applied as a provider.")
        if not organization.is_provider:
            organization.kind = OrganizationKind.BOTH
            organization.save(update_fields=["kind"])
    provider = ProviderProfile(
        organization=organization,
        legal_name=legal_name.strip(),
        contact_name=contact_name.strip(),
        contact_email=contact_email.strip(),
        contact_phone=contact_phone.strip(),
        website=website.strip(),
        description=description.strip(),
        work_location=work_location,
    )
    provider.full_clean(exclude=["organization"])
    provider.save()
    for network in networks:
        network_create(provider=provider, data=network)
    for path in routing_paths:
        routing_path_create(provider=provider, data=path)
    for offer in offers:
        offer_create(provider=provider, data=offer)
    audit_log_record(
        action="provider.applied", actor=user, organization=organization, target=provider
    )
    return provider


@transaction.atomic
def provider_verify(*, provider: ProviderProfile, staff_user: User) -> ProviderProfile:
    """Staff verify a provider; records who and when. Verifying twice changes nothing."""
    if not staff_user.is_staff:
        raise PermissionDenied("Only exchange staff can verify providers.")
    provider = ProviderProfile.objects.select_for_update().get(pk=provider.pk)
    if provider.status == ProviderStatus.VERIFIED:
        return provider
    provider.status = ProviderStatus.VERIFIED
    provider.verified_at = timezone.now()
    provider.verified_by = staff_user
    provider.save(update_fields=["status", "verified_at", "verified_by"])
    audit_log_record(
        action="provider.verified",
        actor=staff_user,
        organization=provider.organization,
        target=provider,
    )
    return provider


@transaction.atomic
def provider_suspend(
    *, provider: ProviderProfile, staff_user: User, reason: str
) -> ProviderProfile:
    """Staff stop a provider from selling (it keeps its data)."""
    if not staff_user.is_staff:
        raise PermissionDenied("Only exchange staff can suspend providers.")
    provider = ProviderProfile.objects.select_for_update().get(pk=provider.pk)
    if provider.status != ProviderStatus.SUSPENDED:
        provider.status = ProviderStatus.SUSPENDED
        provider.save(update_fields=["status"])
        audit_log_record(
            action="provider.suspended",
            actor=staff_user,
            organization=provider.organization,
            target=provider,
            data={"reason": reason},
        )
    return provider


def network_create(*, provider: ProviderProfile, data: NetworkInput) -> Network:
    network = Network(
        provider=provider,
        name=data.name.strip(),
        technology=data.technology,
        region=data.region.strip(),
    )
    network.full_clean()
    network.save()
    return network


@transaction.atomic
def routing_path_create(*, provider: ProviderProfile, data: RoutingPathInput) -> RoutingPath:
    """Create a path whose hops are the provider's own networks, ingress first."""
    path = RoutingPath(provider=provider, name=data.name.strip(), capacity_mbps=data.capacity_mbps)
    path.full_clean()
    path.save()
    routing_path_set_hops(path=path, network_names=data.hops)
    return path


@transaction.atomic
def routing_path_set_hops(*, path: RoutingPath, network_names: Sequence[str]) -> None:
    names = [name.strip() for name in network_names if name.strip()]
    if not names:
        raise ValidationError({"hops": "A routing path needs at least one hop."})
    networks = {n.name: n for n in Network.objects.filter(provider=path.provider, name__in=names)}
    unknown = [name for name in names if name not in networks]
    if unknown:
        raise ValidationError(
            {"hops": f"Unknown network(s) of {path.provider}: {', '.join(unknown)}."}
        )
    path.hops.all().delete()
    RoutingPathHop.objects.bulk_create(
        RoutingPathHop(path=path, position=i, network=networks[name])
        for i, name in enumerate(names)
    )


def offer_create(*, provider: ProviderProfile, data: OfferInput) -> Offer:
    if data.service not in Service.values:
        raise ValidationError({"service": f"Unknown service {data.service!r}."})
    currency_validate(data.currency)
    for field in ("price_per_gb_minor", "price_per_minute_minor"):
        value = getattr(data, field)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValidationError({field: "Prices are whole, non-negative amounts in minor units."})
    offer = Offer(
        provider=provider,
        service=data.service,
        price_per_gb_minor=data.price_per_gb_minor,
        price_per_minute_minor=data.price_per_minute_minor,
        currency=data.currency,
    )
    offer.full_clean()
    offer.save()
    return offer


class NetworkInUse(Exception):
    """Raised when a network still carries hops of routing paths and so cannot be deleted."""

    def __init__(self, *, network: Network, path_names: list[str]):
        self.network = network
        self.path_names = path_names
        super().__init__(
            f"Network {network.name} is a hop of routing path(s) {', '.join(path_names)}; "
            "change or delete those paths first."
        )


@transaction.atomic
def network_update(*, network: Network, data: NetworkInput) -> Network:
    """Rename a network or change its technology or region."""
    network = Network.objects.select_for_update().get(pk=network.pk)
    network.name = data.name.strip()
    network.technology = data.technology
    network.region = data.region.strip()
    network.full_clean()
    network.save(update_fields=["name", "technology", "region"])
    return network


def _paths_through(network: Network) -> list[str]:
    return sorted(
        RoutingPath.objects.filter(hops__network=network).distinct().values_list("name", flat=True)
    )


@transaction.atomic
def network_delete(*, network: Network) -> None:
    """Delete a network that no routing path uses."""
    network = Network.objects.select_for_update().get(pk=network.pk)
    paths = _paths_through(network)
    if paths:
        raise NetworkInUse(network=network, path_names=paths)
    try:
        network.delete()
    except ProtectedError:
        # A path took the network as a hop after the check above.
        raise NetworkInUse(network=network, path_names=_paths_through(network)) from None


@transaction.atomic
def routing_path_update(*, path: RoutingPath, data: RoutingPathInput) -> RoutingPath:
    """Change a path's name and capacity and replace its hops (network names, ingress first)."""
    path = RoutingPath.objects.select_for_update().get(pk=path.pk)
    path.name = data.name.strip()
    path.capacity_mbps = data.capacity_mbps
    path.full_clean()
    path.save(update_fields=["name", "capacity_mbps"])
    routing_path_set_hops(path=path, network_names=data.hops)
    return path


@transaction.atomic
def routing_path_delete(*, path: RoutingPath) -> None:
    """Delete a routing path with its hops."""
    RoutingPath.objects.select_for_update().get(pk=path.pk).delete()


@transaction.atomic
def offer_update(*, offer: Offer, data: OfferInput, is_active: bool) -> Offer:
    """Change an offer's service, prices or currency, or pause and resume it."""
    offer = Offer.objects.select_for_update().get(pk=offer.pk)
    offer.service = data.service
    offer.price_per_gb_minor = data.price_per_gb_minor
    offer.price_per_minute_minor = data.price_per_minute_minor
    offer.currency = data.currency
    offer.is_active = is_active
    offer.full_clean()
    offer.save(
        update_fields=[
            "service",
            "price_per_gb_minor",
            "price_per_minute_minor",
            "currency",
            "is_active",
        ]
    )
    return offer


@transaction.atomic
def offer_delete(*, offer: Offer) -> None:
    """Withdraw an offer from the catalogue."""
    Offer.objects.select_for_update().get(pk=offer.pk).delete()
