"""Writes for providers: registration, verification, networks, routing paths, offers, and the
webhooks the exchange sends them."""

import json
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import F, ProtectedError, Q
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
    WebhookAttempt,
    WebhookDelivery,
    WebhookDeliveryStatus,
    WebhookEndpoint,
    WorkLocation,
    webhook_secret_generate,
)
from providers.webhooks import webhook_body, webhook_send

logger = logging.getLogger(__name__)


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


class RoutingPathInUse(Exception):
    """Raised when a routing path was offered in an availability message (the plans and jobs
    that used it keep naming it), so it cannot be deleted."""

    def __init__(self, *, path: RoutingPath):
        self.path = path
        super().__init__(
            f"The routing path “{path.name}” was offered to service requests, whose plans keep "
            "it on record: it cannot be deleted. Stop offering it in your answers instead."
        )


def routing_path_delete(*, path: RoutingPath) -> None:
    """Delete a routing path with its hops; RoutingPathInUse once it was offered."""
    try:
        with transaction.atomic():
            RoutingPath.objects.select_for_update().get(pk=path.pk).delete()
    except ProtectedError:
        raise RoutingPathInUse(path=path) from None


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


# --- Outbound webhooks ---------------------------------------------------------------------------

# Event names are dotted lower-case words: "service_request.created".
WEBHOOK_EVENT_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
# Past an attempt's time-out, how long before another run may treat it as lost (its worker died).
WEBHOOK_IN_FLIGHT_GRACE_SECONDS = 30
# A task queued for a due delivery that has not run after this long is queued again (lost with a
# worker or a Redis restart); running it twice is harmless.
WEBHOOK_REQUEUE_SECONDS = 120


def webhook_timeout_seconds() -> float:
    return float(getattr(settings, "WEBHOOK_TIMEOUT_SECONDS", 5.0))


def webhook_retry_base_seconds() -> float:
    return float(getattr(settings, "WEBHOOK_RETRY_BASE_SECONDS", 2.0))


def webhook_private_targets_allowed() -> bool:
    """Whether receivers on loopback or private addresses are allowed (development, tests)."""
    return bool(getattr(settings, "WEBHOOK_PRIVATE_TARGETS", False))


def webhook_max_attempts() -> int:
    return max(1, int(getattr(settings, "WEBHOOK_MAX_ATTEMPTS", 6)))


def webhook_retry_delay(*, attempt: int) -> timedelta:
    """How long after failed attempt number `attempt` (from 1) the next one is due:
    base, 2 x base, 4 x base, ..."""
    return timedelta(seconds=webhook_retry_base_seconds() * 2 ** (attempt - 1))


def webhook_endpoint_create(
    *, provider: ProviderProfile, url: str, description: str = "", actor: User | None = None
) -> WebhookEndpoint:
    """Register a URL of the provider that will receive webhooks, with a new signing secret."""
    endpoint = WebhookEndpoint(
        provider=provider,
        url=url.strip(),
        description=description.strip(),
        secret=webhook_secret_generate(),
    )
    endpoint.full_clean()
    endpoint.save()
    audit_log_record(
        action="webhook_endpoint.created",
        actor=actor,
        organization=provider.organization,
        target=endpoint,
        data={"url": endpoint.url},
    )
    return endpoint


@transaction.atomic
def webhook_endpoint_secret_rotate(
    *, endpoint: WebhookEndpoint, actor: User | None = None
) -> WebhookEndpoint:
    """Replace the endpoint's signing secret. Every POST from now on, retries of older
    deliveries included, is signed with the new one."""
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
    endpoint.secret = webhook_secret_generate()
    endpoint.save(update_fields=["secret"])
    audit_log_record(
        action="webhook_endpoint.secret_rotated",
        actor=actor,
        organization=endpoint.provider.organization,
        target=endpoint,
    )
    return endpoint


@transaction.atomic
def webhook_endpoint_deactivate(
    *, endpoint: WebhookEndpoint, actor: User | None = None
) -> WebhookEndpoint:
    """Stop sending to the endpoint: no new deliveries, and its pending ones give up at their
    next turn. Deactivating twice changes nothing."""
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
    if not endpoint.is_active:
        return endpoint
    endpoint.is_active = False
    endpoint.save(update_fields=["is_active"])
    audit_log_record(
        action="webhook_endpoint.deactivated",
        actor=actor,
        organization=endpoint.provider.organization,
        target=endpoint,
    )
    return endpoint


@transaction.atomic
def webhook_broadcast(
    *, providers: Iterable[ProviderProfile | int], event: str, payload: dict
) -> list[WebhookDelivery]:
    """Send `event` with `payload` to every active webhook endpoint of the given providers
    (profiles or ids): one delivery per endpoint, its first attempt queued once the caller's
    transaction commits. Providers without an active endpoint get none. The event's
    eligibility rules (verified, offers the service, ...) are the caller's."""
    if not WEBHOOK_EVENT_PATTERN.match(event or "") or len(event) > 100:
        raise ValidationError({"event": f"{event!r} is not an event name like 'thing.happened'."})
    if not isinstance(payload, dict):
        raise ValidationError({"payload": "A webhook payload is a JSON object (a dict)."})
    try:
        # The payload as it will be stored and sent: dates, decimals and UUIDs become strings.
        data = json.loads(json.dumps(payload, cls=DjangoJSONEncoder))
    except (TypeError, ValueError) as exc:
        raise ValidationError({"payload": f"The payload is not JSON: {exc}"}) from None
    provider_ids = {p.pk if isinstance(p, ProviderProfile) else int(p) for p in providers}
    if not provider_ids:
        return []
    endpoints = WebhookEndpoint.objects.filter(
        provider_id__in=provider_ids, is_active=True
    ).order_by("provider_id", "pk")
    now = timezone.now()
    deliveries = WebhookDelivery.objects.bulk_create(
        WebhookDelivery(
            endpoint=endpoint,
            event=event,
            payload=data,
            created_at=now,
            next_attempt_at=now,
            enqueued_at=now,
        )
        for endpoint in endpoints
    )
    for delivery in deliveries:
        # robust: the caller's writes are committed; a queue that is down must not turn its
        # request into an error. The sweep queues the delivery again later.
        transaction.on_commit(partial(_webhook_deliver_enqueue, delivery.pk), robust=True)
    return deliveries


def _webhook_deliver_enqueue(delivery_id: int) -> None:
    from providers.tasks import webhook_deliver

    webhook_deliver.enqueue(delivery_id)


class WebhookAttemptOutcome:
    """What `webhook_delivery_attempt` did (the task's result)."""

    DELIVERED = "delivered"
    RETRY_SCHEDULED = "retry_scheduled"
    FAILED = "failed"
    NOT_DUE = "not_due"  # not yet due, or another run's attempt is under way
    ALREADY_DONE = "already_done"  # delivered or given up before: nothing sent
    SUPERSEDED = "superseded"  # a later attempt took over while this one was in flight
    MISSING = "missing"


def _webhook_delivery_locked(delivery_id: int) -> WebhookDelivery | None:
    return (
        WebhookDelivery.objects.select_for_update(of=("self",))
        .select_related("endpoint")
        .filter(pk=delivery_id)
        .first()
    )


def _webhook_delivery_give_up(delivery: WebhookDelivery, *, reason: str) -> None:
    delivery.status = WebhookDeliveryStatus.FAILED
    delivery.next_attempt_at = None
    delivery.save(
        update_fields=["status", "next_attempt_at", "attempts", "last_status_code", "last_error"]
    )
    logger.warning(
        "Webhook delivery %s (%s %s to %s) given up after %d attempt(s): %s",
        delivery.pk,
        delivery.event,
        delivery.event_id,
        delivery.endpoint.url,
        delivery.attempts,
        reason,
    )


def webhook_delivery_attempt(*, delivery_id: int, now: datetime | None = None) -> str:
    """Make the next attempt of a delivery if it is due (at `now`, the clock by default).

    The row is locked only to take the attempt and again to record its result, never during
    the POST. Taking the attempt counts it and pushes `next_attempt_at` past its time-out, so
    a second run meanwhile finds it not due, and a delivered or given-up delivery is never
    sent again. A 2xx answer delivers it; anything else schedules the next attempt after
    WEBHOOK_RETRY_BASE_SECONDS x 2^(n-1), or gives up after WEBHOOK_MAX_ATTEMPTS. Returns a
    `WebhookAttemptOutcome`."""
    now = now or timezone.now()
    timeout = webhook_timeout_seconds()
    with transaction.atomic():
        delivery = _webhook_delivery_locked(delivery_id)
        if delivery is None:
            return WebhookAttemptOutcome.MISSING
        if delivery.status != WebhookDeliveryStatus.PENDING:
            return WebhookAttemptOutcome.ALREADY_DONE
        if delivery.next_attempt_at > now:
            return WebhookAttemptOutcome.NOT_DUE
        endpoint = delivery.endpoint
        if not endpoint.is_active:
            delivery.last_error = "The endpoint was deactivated; not sent."
            _webhook_delivery_give_up(delivery, reason=delivery.last_error)
            return WebhookAttemptOutcome.FAILED
        number = delivery.attempts + 1
        delivery.attempts = number
        delivery.next_attempt_at = now + timedelta(
            seconds=timeout + WEBHOOK_IN_FLIGHT_GRACE_SECONDS
        )
        delivery.save(update_fields=["attempts", "next_attempt_at"])
        WebhookAttempt.objects.create(delivery=delivery, number=number, at=now)

    body = webhook_body(
        event_id=str(delivery.event_id),
        event=delivery.event,
        created=delivery.created_at,
        data=delivery.payload,
    )
    response = webhook_send(
        url=endpoint.url,
        secret=endpoint.secret,
        event=delivery.event,
        event_id=str(delivery.event_id),
        body=body,
        timeout=timeout,
        public_only=not webhook_private_targets_allowed(),
    )
    finished_at = now + timedelta(milliseconds=response.duration_ms)

    with transaction.atomic():
        delivery = _webhook_delivery_locked(delivery_id)
        if delivery is None:
            return WebhookAttemptOutcome.MISSING
        WebhookAttempt.objects.filter(delivery=delivery, number=number).update(
            status_code=response.status_code,
            error=response.error[:2000],
            duration_ms=response.duration_ms,
        )
        if response.ok:
            if delivery.status != WebhookDeliveryStatus.DELIVERED:
                # Even one given up meanwhile: the receiver has it, and says so.
                delivery.status = WebhookDeliveryStatus.DELIVERED
                delivery.delivered_at = finished_at
                delivery.next_attempt_at = None
                delivery.last_status_code = response.status_code
                delivery.last_error = ""
                delivery.save(
                    update_fields=[
                        "status",
                        "delivered_at",
                        "next_attempt_at",
                        "last_status_code",
                        "last_error",
                    ]
                )
            return WebhookAttemptOutcome.DELIVERED
        if delivery.status != WebhookDeliveryStatus.PENDING or delivery.attempts != number:
            # This attempt outlived its time-out and a later one took over: that one decides.
            return WebhookAttemptOutcome.SUPERSEDED
        delivery.last_status_code = response.status_code
        delivery.last_error = response.error[:2000]
        if number >= webhook_max_attempts():
            _webhook_delivery_give_up(delivery, reason=response.error)
            return WebhookAttemptOutcome.FAILED
        delivery.next_attempt_at = finished_at + webhook_retry_delay(attempt=number)
        delivery.save(update_fields=["next_attempt_at", "last_status_code", "last_error"])
        return WebhookAttemptOutcome.RETRY_SCHEDULED


def webhook_deliveries_enqueue_due(*, now: datetime | None = None, limit: int = 500) -> int:
    """Queue a delivery task for each pending delivery whose next attempt is due and has no
    task queued for it yet (or one queued so long ago that it was lost). Retries come from
    here rather than from deferred tasks: the project's Redis workers run without rq's
    scheduler, and a sweep also finds attempts whose worker died. Returns how many it queued.
    """
    now = now or timezone.now()
    due = WebhookDelivery.objects.filter(
        status=WebhookDeliveryStatus.PENDING, next_attempt_at__lte=now
    ).filter(
        Q(enqueued_at__isnull=True)
        | Q(enqueued_at__lt=F("next_attempt_at"))
        | Q(enqueued_at__lt=now - timedelta(seconds=WEBHOOK_REQUEUE_SECONDS))
    )
    # A cheap read first: it runs every second in every worker.
    delivery_ids = list(due.order_by("next_attempt_at").values_list("pk", flat=True)[:limit])
    queued = 0
    for delivery_id in delivery_ids:
        # The conditional update claims the delivery: of several workers sweeping at once,
        # one queues it.
        if due.filter(pk=delivery_id).update(enqueued_at=now):
            _webhook_deliver_enqueue(delivery_id)
            queued += 1
    return queued
