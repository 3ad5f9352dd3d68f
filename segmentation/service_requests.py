"""Writes for service requests (SPEC §5.1): a recipient's request, broadcast to every eligible
provider; the providers' availability messages; the plan, computed by the planner's linear
program over the messages still valid; negotiation (a reverse auction among the providers that
answered); and the plan accepted, which starts a job dispersed over the planned providers.

Each refusal raises RequestRefused with a stable code and a message that says what to change;
nothing is stored for a refused call.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Prefetch
from django.urls import reverse
from django.utils import timezone

from marketplace.live import organization_notify
from marketplace.models import ClientDevice, Organization, User
from marketplace.money import CURRENCY_EXPONENTS, money_format
from providers.models import (
    Offer,
    ProviderProfile,
    ProviderStatus,
    RoutingPath,
    RoutingPathHop,
    Service,
)
from segmentation import planner
from segmentation.models import (
    AvailabilityMessage,
    AvailabilityPath,
    Job,
    Negotiation,
    NegotiationStatus,
    Plan,
    PlanLine,
    Quote,
    SegmentationProfile,
    ServiceRequest,
    ServiceRequestStatus,
)
from segmentation.processing import SERVICES as PROCESSING_SERVICES
from segmentation.processing import ProcessingError, services_required

logger = logging.getLogger(__name__)

LARGEST = 2**63 - 1  # the largest volume or amount the database stores

SERVICE_REQUEST_EVENT = "service_request.created"
QUOTE_REQUEST_EVENT = "service_request.quote_requested"
PLANNED_EVENT = "service_request.planned"


class RequestRefused(Exception):
    """A call on a service request that cannot be taken: `code` is stable, `message` says why."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class RequestSpec:
    """What a recipient asks for: the volume and deadline, the processing services the
    providers must offer (None: those of the profile's pipeline), the profile, the device it
    comes from, an optional price limit and guaranteed rate (an SLA), and whether to negotiate."""

    profile: SegmentationProfile
    data_bytes: int
    deadline: datetime
    services: Sequence[str] | None = None
    device: ClientDevice | None = None
    price_limit_minor: int | None = None
    currency: str = "USD"
    sla_min_rate_mbps: int | None = None
    negotiate: bool = False


@dataclass(frozen=True)
class PathOffer:
    """One path of an availability message: a routing path's id and the bandwidth available."""

    path_id: int
    bandwidth_mbps: int


# --- eligibility and the request -----------------------------------------------------------------


def providers_eligible(
    *,
    services: Iterable[str],
    profile: SegmentationProfile | None = None,
    maker: Organization | None = None,
) -> list[ProviderProfile]:
    """The providers a request goes to: verified (and active), offering the segmentation
    service and every required processing service, not blocked by the profile, and other
    than the maker itself (an organization that both buys and provides)."""
    providers = ProviderProfile.objects.filter(
        status=ProviderStatus.VERIFIED, organization__is_active=True
    )
    if maker is not None:
        providers = providers.exclude(organization=maker)
    for service in {Service.SEGMENTATION, *services}:
        providers = providers.filter(
            pk__in=Offer.objects.filter(service=service, is_active=True).values("provider")
        )
    if profile is not None and profile.blocked_providers:
        providers = providers.exclude(pk__in=profile.blocked_providers)
    providers = list(providers.select_related("organization").order_by("legal_name", "pk"))
    if profile is not None and profile.min_provider_rating is not None:
        # the planner would leave them out: they are not asked either
        providers = [
            provider
            for provider in providers
            if (rating := provider_rating(provider)) is not None
            and rating >= profile.min_provider_rating
        ]
    return providers


def _services_checked(services: Sequence[str] | None, profile: SegmentationProfile) -> list[str]:
    if services is None:
        try:
            return sorted(services_required(profile.pipeline))
        except ProcessingError as exc:  # pragma: no cover - profiles are validated when saved
            raise RequestRefused("invalid_services", f"The profile's pipeline: {exc}") from None
    if not isinstance(services, list | tuple) or not all(isinstance(s, str) for s in services):
        raise RequestRefused("invalid_services", "Services are a list of service names.")
    unknown = sorted(set(services) - set(PROCESSING_SERVICES))
    if unknown:
        raise RequestRefused(
            "invalid_services",
            f"Unknown processing service {unknown[0]!r}; the services are "
            f"{', '.join(sorted(PROCESSING_SERVICES))}.",
        )
    return sorted(set(services))


def service_request_create(
    *, organization: Organization, user: User | None, spec: RequestSpec
) -> ServiceRequest:
    """Record a request and broadcast it to every eligible provider: signed webhooks to their
    endpoints and a notice on their open pages (after commit); it is listed for them in the
    console and the API. Refused when nobody is eligible, saying why."""
    if not organization.is_recipient:
        raise RequestRefused(
            "not_a_recipient", f"{organization} is no recipient: only buyers request service."
        )
    profile = spec.profile
    if profile.organization_id != organization.pk:
        raise RequestRefused("profile_not_found", "This segmentation profile is not yours.")
    if spec.device is not None and spec.device.organization_id != organization.pk:
        raise RequestRefused("device_not_found", "This client device is not your organization's.")
    now = timezone.now()
    if spec.deadline <= now:
        raise RequestRefused(
            "deadline_past", f"The deadline {spec.deadline:%Y-%m-%d %H:%M} UTC has passed."
        )
    if isinstance(spec.data_bytes, bool) or not isinstance(spec.data_bytes, int):
        raise RequestRefused("invalid_volume", "The data volume is a whole number of bytes.")
    if not 1 <= spec.data_bytes <= LARGEST:
        raise RequestRefused(
            "invalid_volume", f"The data volume is between 1 and {LARGEST:,} bytes."
        )
    if spec.currency not in CURRENCY_EXPONENTS:
        raise RequestRefused("invalid_currency", f"Unsupported currency {spec.currency!r}.")
    if spec.price_limit_minor is not None and not 0 <= spec.price_limit_minor <= LARGEST:
        raise RequestRefused(
            "invalid_price_limit", "The price limit is an amount between 0 and 2^63 - 1."
        )
    if spec.sla_min_rate_mbps is not None and spec.sla_min_rate_mbps < 1:
        raise RequestRefused("invalid_sla", "The guaranteed rate must be at least 1 Mbit/s.")
    services = _services_checked(spec.services, profile)
    eligible = providers_eligible(services=services, profile=profile, maker=organization)
    if not eligible:
        raise RequestRefused(
            "no_eligible_provider", _nobody_eligible(services, profile, organization)
        )
    service_request = ServiceRequest.objects.create(
        organization=organization,
        created_by=user if user is not None and user.is_authenticated else None,
        device=spec.device,
        profile=profile,
        data_bytes=spec.data_bytes,
        deadline=spec.deadline,
        services=services,
        price_limit_minor=spec.price_limit_minor,
        currency=spec.currency,
        sla_min_rate_mbps=spec.sla_min_rate_mbps,
        negotiate=spec.negotiate,
    )
    service_request.broadcast_to.set(eligible)
    transaction.on_commit(
        partial(
            _broadcast,
            [provider.pk for provider in eligible],
            SERVICE_REQUEST_EVENT,
            service_request_payload(service_request),
            f"A new service request ({_volume(spec.data_bytes)} by "
            f"{spec.deadline:%Y-%m-%d %H:%M} UTC) awaits your availability.",
        )
    )
    return service_request


def _nobody_eligible(services: list[str], profile: SegmentationProfile, maker: Organization) -> str:
    needed = ", ".join(["segmentation", *services])
    verified = providers_eligible(services=services, maker=maker)
    if verified and profile.min_provider_rating is not None:
        return (
            f"No provider offering {needed} is rated at least {profile.min_provider_rating:g} "
            f"(the minimum of the profile “{profile.name}”; providers are unrated until "
            "recipients rate them): lower the minimum, or clear it."
        )
    if verified and profile.blocked_providers:
        return (
            f"Every verified provider offering {needed} is blocked by the profile "
            f"“{profile.name}”: unblock one, or ask for fewer services."
        )
    return f"No verified provider offers {needed}: ask for fewer services, or later."


def service_request_payload(service_request: ServiceRequest) -> dict:
    """What providers are told of a request (webhooks, API): no profile internals."""
    return {
        "service_request": service_request.pk,
        "data_bytes": service_request.data_bytes,
        "deadline": service_request.deadline.isoformat(),
        "services": list(service_request.services),
        "currency": service_request.currency,
        "price_limit_minor": service_request.price_limit_minor,
        "sla_min_rate_mbps": service_request.sla_min_rate_mbps,
        "availability_url": _absolute(
            reverse("service-request-availability", args=[service_request.pk])
        ),
    }


def _absolute(path: str) -> str:
    """A link for webhook receivers, which know the exchange only by SITE_URL."""
    return settings.SITE_URL.rstrip("/") + path


def _broadcast(provider_ids: list[int], event: str, payload: dict, text: str) -> None:
    """Webhooks to the providers' endpoints, and a notice on their members' open pages."""
    from providers.services import webhook_broadcast

    providers = list(
        ProviderProfile.objects.filter(pk__in=provider_ids).select_related("organization")
    )
    webhook_broadcast(providers=providers, event=event, payload=payload)
    for provider in providers:
        organization_notify(provider.organization_id, text=text)


def service_request_cancel(*, service_request: ServiceRequest) -> ServiceRequest:
    with transaction.atomic():
        locked = ServiceRequest.objects.select_for_update(of=("self",)).get(pk=service_request.pk)
        if locked.status == ServiceRequestStatus.ACCEPTED:
            raise RequestRefused(
                "request_accepted", "The plan was accepted: the request's job has started."
            )
        locked.status = ServiceRequestStatus.CANCELLED
        locked.save(update_fields=["status"])
        Negotiation.objects.filter(service_request=locked, status=NegotiationStatus.OPEN).update(
            status=NegotiationStatus.CLOSED, closed_at=timezone.now()
        )
    return locked


def _open_request(pk: int, now: datetime) -> ServiceRequest:
    """The request, locked, still open and before its deadline."""
    locked = ServiceRequest.objects.select_for_update(of=("self",)).get(pk=pk)
    if locked.status != ServiceRequestStatus.OPEN:
        raise RequestRefused(
            "request_closed", f"The request is {locked.get_status_display().lower()}."
        )
    if locked.deadline <= now:
        raise RequestRefused(
            "request_expired", f"The request's deadline passed at {locked.deadline:%H:%M} UTC."
        )
    return locked


# --- availability --------------------------------------------------------------------------------


def availability_submit(
    *,
    provider: ProviderProfile,
    service_request: ServiceRequest,
    paths: Sequence[PathOffer],
    price_per_gb_minor: int,
    currency: str,
    valid_until: datetime,
) -> AvailabilityMessage:
    """Record a provider's availability message, checked: the request was broadcast to it
    and is open; the paths are its own, each named once, each bandwidth within the path's
    capacity; the price in the request's currency; valid for a while yet; and no other message
    of its still valid (one live answer per provider: a lower price goes through negotiation)."""
    now = timezone.now()
    with transaction.atomic():
        locked = _open_request(service_request.pk, now)
        if not locked.broadcast_to.filter(pk=provider.pk).exists():
            raise RequestRefused(
                "not_asked", "This request was not sent to you: you are not eligible for it."
            )
        if provider.status != ProviderStatus.VERIFIED:
            raise RequestRefused("provider_not_verified", "Only verified providers may answer.")
        if valid_until <= now:
            raise RequestRefused(
                "message_expired",
                f"valid_until ({valid_until:%Y-%m-%d %H:%M:%S} UTC) has already passed.",
            )
        if currency != locked.currency:
            raise RequestRefused(
                "currency_mismatch",
                f"The request is priced in {locked.currency}, not {currency}.",
            )
        if isinstance(price_per_gb_minor, bool) or not 0 <= price_per_gb_minor <= LARGEST:
            raise RequestRefused("invalid_price", "The price per GB is between 0 and 2^63 - 1.")
        owned = _paths_checked(provider, paths)
        live = (
            AvailabilityMessage.objects.filter(
                service_request=locked, provider=provider, valid_until__gt=now
            )
            .order_by("-valid_until")
            .first()
        )
        if live is not None:
            raise RequestRefused(
                "duplicate_message",
                f"Your message {live.pk} holds until {live.valid_until:%Y-%m-%d %H:%M:%S} UTC: "
                "answer again after it expires, or quote a lower price when the recipient "
                "negotiates.",
            )
        message = AvailabilityMessage.objects.create(
            service_request=locked,
            provider=provider,
            price_per_gb_minor=price_per_gb_minor,
            currency=currency,
            valid_until=valid_until,
        )
        AvailabilityPath.objects.bulk_create(
            AvailabilityPath(message=message, path=owned[offer.path_id], bandwidth_mbps=bandwidth)
            for offer, bandwidth in ((o, o.bandwidth_mbps) for o in paths)
        )
        transaction.on_commit(
            partial(
                organization_notify,
                locked.organization_id,
                text=f"{provider.legal_name} answered service request {locked.pk}.",
                url=reverse("service_request_detail", args=[locked.pk]),
            )
        )
    return message


def _paths_checked(provider: ProviderProfile, paths: Sequence[PathOffer]) -> dict:
    if not paths:
        raise RequestRefused("no_paths", "Name at least one routing path with its bandwidth.")
    ids = [offer.path_id for offer in paths]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise RequestRefused("duplicate_path", f"Path {repeated[0]} is named twice.")
    owned = {
        path.pk: path for path in RoutingPath.objects.filter(provider=provider, pk__in=set(ids))
    }
    for offer in paths:
        path = owned.get(offer.path_id)
        if path is None:
            raise RequestRefused(
                "path_not_yours", f"Routing path {offer.path_id} is not one of your paths."
            )
        if isinstance(offer.bandwidth_mbps, bool) or offer.bandwidth_mbps < 1:
            raise RequestRefused(
                "invalid_bandwidth", f"The bandwidth on {path.name} must be at least 1 Mbit/s."
            )
        if offer.bandwidth_mbps > path.capacity_mbps:
            raise RequestRefused(
                "bandwidth_above_capacity",
                f"{offer.bandwidth_mbps} Mbit/s on {path.name} is more than its capacity of "
                f"{path.capacity_mbps} Mbit/s.",
            )
    return owned


# --- the plan ------------------------------------------------------------------------------------


def provider_rating(provider: ProviderProfile) -> float | None:
    """The provider's rating for the planner (1 to 5): the Bayesian mean of its ratings by
    recipients; None while it has none, which meets no minimum rating."""
    from billing.ratings import provider_bayesian_mean  # billing builds on segmentation

    return provider_bayesian_mean(provider)


def plan_compute(*, service_request: ServiceRequest, now: datetime | None = None) -> Plan:
    """Plan the request over the availability messages valid now (expired ones are ignored),
    with each provider's best quote of the last negotiation, and store the plan as the
    request's current one. The planner (HiGHS) decides the shares; the plan says why."""
    now = now or timezone.now()
    request = ServiceRequest.objects.select_related("profile").get(pk=service_request.pk)
    messages = list(
        AvailabilityMessage.objects.filter(service_request=request, valid_until__gt=now)
        .select_related("provider")
        .prefetch_related(
            Prefetch(
                "paths",
                queryset=AvailabilityPath.objects.select_related("path").prefetch_related(
                    Prefetch(
                        "path__hops",
                        queryset=RoutingPathHop.objects.select_related("network").order_by(
                            "position"
                        ),
                    )
                ),
            )
        )
        .order_by("created_at", "pk")
    )
    negotiation = request.negotiations.order_by("-opened_at", "-pk").first()
    prices = quoted_prices(request)
    # equal prices: the earlier quote (or message, when not quoted) ranks first
    priced_at = {
        message.pk: prices.get(message.pk, (message.price_per_gb_minor, message.created_at))
        for message in messages
    }
    order = sorted(priced_at, key=lambda pk: (priced_at[pk][1], pk))
    tie_rank = {pk: rank for rank, pk in enumerate(order)}
    candidates = []
    for message in messages:
        price = priced_at[message.pk][0]
        rating = provider_rating(message.provider)
        for offer in message.paths.all():
            hops = list(offer.path.hops.all())
            candidates.append(
                planner.Candidate(
                    provider_id=message.provider_id,
                    provider_name=message.provider.legal_name,
                    message_id=message.pk,
                    path_id=offer.path_id,
                    path_name=offer.path.name,
                    network_ids=tuple(hop.network_id for hop in hops),
                    network_names=tuple(hop.network.name for hop in hops),
                    bandwidth_mbps=offer.bandwidth_mbps,
                    price_per_gb_minor=price,
                    rating=rating,
                    valid_until=message.valid_until,
                    tie_rank=tie_rank[message.pk],
                )
            )
    started = time.perf_counter()
    result = planner.optimal_plan(
        request=_plan_request(request, now),
        profile=_planning_profile(request.profile),
        candidates=candidates,
        now=now,
    )
    elapsed_ms = (time.perf_counter() - started) * 1000
    return _plan_store(request, result, messages, negotiation, elapsed_ms, now)


def _plan_request(request: ServiceRequest, now: datetime) -> planner.PlanRequest:
    seconds = (request.deadline - now).total_seconds()
    if seconds <= 0:
        raise RequestRefused(
            "request_expired", f"The request's deadline passed at {request.deadline:%H:%M} UTC."
        )
    if request.sla_min_rate_mbps:
        # the SLA's guaranteed average rate bounds the makespan like a deadline
        seconds = min(seconds, request.data_bytes * 8 / (request.sla_min_rate_mbps * 1e6))
    return planner.PlanRequest(
        volume_bytes=request.data_bytes,
        currency=request.currency,
        deadline_seconds=seconds,
        price_limit_minor=request.price_limit_minor,
    )


def _planning_profile(profile: SegmentationProfile) -> planner.PlanningProfile:
    return planner.PlanningProfile(
        preferred_providers=[
            planner.Preference(id=p["provider"], weight=p["weight"])
            for p in profile.preferred_providers
        ],
        preferred_networks=[
            planner.Preference(id=n["network"], weight=n["weight"])
            for n in profile.preferred_networks
        ],
        blocked_providers=frozenset(profile.blocked_providers),
        blocked_networks=frozenset(profile.blocked_networks),
        min_rating=profile.min_provider_rating,
        prefer_highest_rated=profile.prefer_highest_rated,
        cost_weight=profile.cost_weight,
    )


def _plan_store(
    request: ServiceRequest,
    result: planner.Plan,
    messages: list[AvailabilityMessage],
    negotiation: Negotiation | None,
    elapsed_ms: float,
    inputs_at: datetime,
) -> Plan:
    used = {line.candidate.message_id for line in result.lines}
    expiries = [m.valid_until for m in messages if m.pk in used]
    with transaction.atomic():
        plan = Plan.objects.create(
            service_request=request,
            negotiation=negotiation,
            feasible=result.feasible,
            volume_bytes=result.volume_bytes,
            makespan_seconds=result.makespan_seconds,
            total_cost_minor=result.total_cost_minor,
            currency=result.currency,
            cost_weight=result.cost_weight,
            assemblage_provider_id=result.assemblage_provider_id,
            binding=list(result.binding),
            failures=list(result.failures),
            reasons=list(result.reasons),
            exclusions=[
                {
                    "provider": exclusion.candidate.provider_id,
                    "provider_name": exclusion.candidate.provider_name,
                    "path": exclusion.candidate.path_id,
                    "path_name": exclusion.candidate.path_name,
                    "message": exclusion.candidate.message_id,
                    "causes": list(exclusion.causes),
                    "reason": exclusion.reason,
                }
                for exclusion in result.exclusions
            ],
            fastest_seconds=result.fastest_seconds,
            cheapest_cost_minor=result.cheapest_cost_minor,
            messages_used=len(messages),
            valid_until=min(expiries) if expiries else None,
            computed_ms=elapsed_ms,
            inputs_at=inputs_at,
        )
        PlanLine.objects.bulk_create(
            PlanLine(
                plan=plan,
                position=position,
                provider_id=line.candidate.provider_id,
                path_id=line.candidate.path_id,
                message_id=line.candidate.message_id,
                bandwidth_mbps=line.candidate.bandwidth_mbps,
                price_per_gb_minor=line.candidate.price_per_gb_minor,
                fraction=line.fraction,
                bytes=line.bytes,
                seconds=line.seconds,
                cost_minor=line.cost_minor,
                full_bandwidth=line.full_bandwidth,
                reason=line.reason,
            )
            for position, line in enumerate(
                sorted(result.lines, key=lambda line: (-line.bytes, line.candidate.message_id))
            )
        )
    return plan


def plan_current(*, service_request: ServiceRequest, now: datetime | None = None) -> Plan | None:
    """The request's plan as of now: the stored one while nothing it depends on changed (no
    newer message or quote, none of its messages expired), else a new one. None while no
    provider has answered."""
    now = now or timezone.now()
    latest = service_request.plans.order_by("-created_at", "-pk").first()
    if service_request.status != ServiceRequestStatus.OPEN or service_request.deadline <= now:
        return latest
    if not service_request.availability.exists():
        return latest
    if latest is not None and not _plan_stale(service_request, latest, now):
        return latest
    return plan_compute(service_request=service_request, now=now)


def _plan_stale(service_request: ServiceRequest, plan: Plan, now: datetime) -> bool:
    if plan.valid_until is not None and plan.valid_until <= now:
        return True
    # the time left no longer holds the plan's makespan
    if (
        plan.feasible
        and plan.makespan_seconds is not None
        and now + timedelta(seconds=plan.makespan_seconds) > service_request.deadline
    ):
        return True
    # anything that arrived after the plan read its inputs
    changed = (
        AvailabilityMessage.objects.filter(
            service_request=service_request, created_at__gte=plan.inputs_at
        ).exists()
        or Quote.objects.filter(
            negotiation__service_request=service_request, created_at__gte=plan.inputs_at
        ).exists()
    )
    if changed:
        return True
    # a message it counted has expired since (an unused one counts too: the plan's
    # explanation lists it)
    valid_now = AvailabilityMessage.objects.filter(
        service_request=service_request, valid_until__gt=now
    ).count()
    return valid_now != plan.messages_used


# --- negotiation ---------------------------------------------------------------------------------


def negotiation_open(
    *, service_request: ServiceRequest, closes_at: datetime | None = None
) -> Negotiation:
    """Ask the providers whose messages are valid for better quotes, until `closes_at`
    (default: NEGOTIATION_SECONDS from now, and never after the request's deadline): a
    reverse auction among them. Webhooks and page notices tell them."""
    now = timezone.now()
    with transaction.atomic():
        locked = _open_request(service_request.pk, now)
        if Negotiation.objects.filter(
            service_request=locked, status=NegotiationStatus.OPEN
        ).exists():
            raise RequestRefused("negotiation_open", "A negotiation is already open.")
        closes_at = closes_at or now + timedelta(seconds=settings.NEGOTIATION_SECONDS)
        if closes_at <= now:
            raise RequestRefused("invalid_close", "The negotiation must close in the future.")
        if closes_at > locked.deadline:
            raise RequestRefused(
                "invalid_close",
                f"The negotiation must close before the request's deadline "
                f"({locked.deadline:%Y-%m-%d %H:%M} UTC).",
            )
        answering = sorted(
            set(
                AvailabilityMessage.objects.filter(
                    service_request=locked, valid_until__gt=now
                ).values_list("provider_id", flat=True)
            )
        )
        if not answering:
            raise RequestRefused(
                "no_answers", "No provider has a valid availability message to improve."
            )
        negotiation = Negotiation.objects.create(service_request=locked, closes_at=closes_at)
        negotiation.invited.set(answering)
        payload = service_request_payload(locked) | {
            "negotiation": negotiation.pk,
            "closes_at": closes_at.isoformat(),
            "quote_url": _absolute(reverse("service-request-quotes", args=[locked.pk])),
        }
        transaction.on_commit(
            partial(
                _broadcast,
                answering,
                QUOTE_REQUEST_EVENT,
                payload,
                f"Service request {locked.pk} asks for better quotes until "
                f"{closes_at:%H:%M:%S} UTC.",
            )
        )
    return negotiation


def quote_submit(
    *, provider: ProviderProfile, service_request: ServiceRequest, price_per_gb_minor: int
) -> Quote:
    """A lower price per GB from an invited provider, in the open negotiation: below its own
    current price (its message's or its last quote's), for its valid message."""
    now = timezone.now()
    with transaction.atomic():
        locked = _open_request(service_request.pk, now)
        negotiation = (
            Negotiation.objects.select_for_update(of=("self",))
            .filter(service_request=locked, status=NegotiationStatus.OPEN)
            .first()
        )
        if negotiation is None or negotiation.closes_at <= now:
            raise RequestRefused("no_negotiation", "No negotiation is open on this request.")
        if not negotiation.invited.filter(pk=provider.pk).exists():
            raise RequestRefused(
                "not_invited", "Only providers that had answered when it opened may quote."
            )
        message = (
            AvailabilityMessage.objects.filter(
                service_request=locked, provider=provider, valid_until__gt=now
            )
            .order_by("-valid_until")
            .first()
        )
        if message is None:
            raise RequestRefused(
                "message_expired", "Your availability message has expired: answer again first."
            )
        if isinstance(price_per_gb_minor, bool) or price_per_gb_minor < 0:
            raise RequestRefused("invalid_price", "The price per GB cannot be negative.")
        quoted = quoted_prices(locked).get(message.pk)
        current = quoted[0] if quoted else message.price_per_gb_minor
        if price_per_gb_minor >= current:
            raise RequestRefused(
                "quote_not_lower",
                f"A quote must be below your current price of "
                f"{money_format(current, locked.currency)} per GB.",
            )
        return Quote.objects.create(
            negotiation=negotiation,
            provider=provider,
            message=message,
            price_per_gb_minor=price_per_gb_minor,
        )


def quoted_prices(service_request: ServiceRequest) -> dict[int, tuple[int, datetime]]:
    """Each message's best quote in any negotiation of the request: {message id: (price,
    when first quoted)}. A quote binds its provider for the message's life: a later
    negotiation starts from it."""
    best: dict[int, tuple[int, datetime]] = {}
    quotes = Quote.objects.filter(negotiation__service_request=service_request)
    for quote in quotes.order_by("created_at", "pk"):
        known = best.get(quote.message_id)
        if known is None or quote.price_per_gb_minor < known[0]:
            best[quote.message_id] = (quote.price_per_gb_minor, quote.created_at)
    return best


def negotiations_open_due(*, now: datetime | None = None) -> int:
    """Open the negotiation of each request that asks for one (`negotiate`), once
    NEGOTIATION_COLLECT_SECONDS have passed since its first answer: the providers that
    answered by then are invited, until NEGOTIATION_SECONDS later or the deadline (a periodic
    job; safe in several processes at once)."""
    now = now or timezone.now()
    collected = now - timedelta(seconds=settings.NEGOTIATION_COLLECT_SECONDS)
    due = ServiceRequest.objects.filter(
        negotiate=True,
        status=ServiceRequestStatus.OPEN,
        deadline__gt=now,
        negotiations__isnull=True,
        availability__created_at__lte=collected,
        availability__valid_until__gt=now,
    ).distinct()
    opened = 0
    for service_request in due:
        closes_at = min(
            now + timedelta(seconds=settings.NEGOTIATION_SECONDS),
            service_request.deadline - timedelta(seconds=1),
        )
        try:
            negotiation_open(service_request=service_request, closes_at=closes_at)
        except (RequestRefused, IntegrityError) as refusal:
            # another process opened it first, or the request closed meanwhile
            logger.info("Request %s: no negotiation opened: %s", service_request.pk, refusal)
            continue
        opened += 1
    return opened


def negotiations_close(*, now: datetime | None = None) -> int:
    """Close the negotiations whose time is up and plan their requests again with the quotes
    (a periodic job; safe in several processes at once). `now` is for tests: by default each
    negotiation is closed at the time it is closed."""
    given = now
    closed = 0
    due = Negotiation.objects.filter(
        status=NegotiationStatus.OPEN, closes_at__lte=given or timezone.now()
    )
    for pk in due.values_list("pk", flat=True):
        now = given or timezone.now()
        with transaction.atomic():
            negotiation = (
                Negotiation.objects.select_for_update(of=("self",), skip_locked=True)
                .filter(pk=pk, status=NegotiationStatus.OPEN)
                .select_related("service_request")
                .first()
            )
            if negotiation is None:
                continue
            negotiation.status = NegotiationStatus.CLOSED
            negotiation.closed_at = now
            negotiation.save(update_fields=["status", "closed_at"])
            request = negotiation.service_request
            closed += 1
        if request.status == ServiceRequestStatus.OPEN and request.deadline > now:
            try:
                if request.availability.filter(valid_until__gt=now).exists():
                    plan_compute(service_request=request, now=now)
            except (RequestRefused, ValueError):
                # planned again when its page or API asks; the other negotiations close now
                logger.exception("Request %s could not be planned after its negotiation", pk)
            organization_notify(
                request.organization_id,
                text=f"The negotiation on service request {request.pk} closed: plan updated.",
                url=reverse("service_request_detail", args=[request.pk]),
            )
    return closed


# --- accepting the plan --------------------------------------------------------------------------


def plan_accept(
    *,
    service_request: ServiceRequest,
    user: User | None,
    chunks: Iterable[bytes],
    size: int | None,
    input_name: str,
    plan_id: int | None = None,
) -> Job:
    """Accept the request's current plan with the capture to carry: the request is closed and
    a job starts whose segments are dispersed over the plan's providers in its proportions
    (subcontracting still applies to services a planned provider lacks). Refused when the plan
    is out of date, infeasible, or a planned provider can no longer serve."""
    from segmentation.services import JobRejected, job_submit_planned

    now = timezone.now()
    with transaction.atomic():
        locked = _open_request(service_request.pk, now)
        plan = locked.plans.order_by("-created_at", "-pk").first()
        if plan is None:
            if locked.availability.exists():
                raise RequestRefused(
                    "no_plan",
                    "No plan has been computed yet: look at the plan (GET .../plan/ or the "
                    "request's page), then accept it.",
                )
            raise RequestRefused("no_plan", "No plan yet: no provider has answered.")
        if plan_id is not None and plan.pk != plan_id:
            raise RequestRefused(
                "plan_outdated",
                f"Plan {plan_id} is no longer the request's plan (plan {plan.pk} replaced it): "
                "look at the new plan and accept that one.",
            )
        negotiation = locked.negotiations.order_by("-opened_at", "-pk").first()
        if negotiation is not None and negotiation.status == NegotiationStatus.OPEN:
            raise RequestRefused(
                "negotiation_open",
                f"The negotiation takes quotes until {negotiation.closes_at:%H:%M:%S} UTC; the "
                "plan is made again then: accept it after.",
            )
        if locked.negotiate and negotiation is None:
            raise RequestRefused(
                "negotiation_pending",
                "The request negotiates first: the providers that answered are asked for "
                f"better quotes {settings.NEGOTIATION_COLLECT_SECONDS:g} s after the first "
                "answer, and the plan is made again when that closes.",
            )
        if _plan_stale(locked, plan, now):
            raise RequestRefused(
                "plan_outdated",
                "The plan is out of date (a message expired or arrived): look at the new plan "
                "and accept that one.",
            )
        if not plan.feasible:
            raise RequestRefused(
                "plan_infeasible", "The plan is infeasible: " + " ".join(plan.reasons[-2:])
            )
        lines = list(plan.lines.select_related("provider"))
        gone = [
            line.provider.legal_name
            for line in lines
            if line.provider.status != ProviderStatus.VERIFIED
        ]
        if gone:
            raise RequestRefused(
                "provider_unavailable", f"{gone[0]} can no longer serve: plan again."
            )
        try:
            job = job_submit_planned(
                service_request=locked,
                plan=plan,
                user=user,
                chunks=chunks,
                size=size,
                input_name=input_name,
            )
        except JobRejected as rejection:
            raise RequestRefused(rejection.code, rejection.message) from None
        locked.status = ServiceRequestStatus.ACCEPTED
        locked.accepted_at = now
        locked.save(update_fields=["status", "accepted_at"])
        Negotiation.objects.filter(service_request=locked, status=NegotiationStatus.OPEN).update(
            status=NegotiationStatus.CLOSED, closed_at=now
        )
    return job


def _volume(nbytes: int) -> str:
    for unit, size in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if nbytes >= size:
            return f"{nbytes / size:.3g} {unit}"
    return f"{nbytes} bytes"
