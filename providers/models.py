"""Providers: their profile and verification, networks, routing paths, offers and the
endpoints that receive the exchange's webhooks."""

import ipaddress
import secrets
import uuid
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from marketplace.models import Organization
from marketplace.money import CURRENCY_CHOICES, currency_validate


class ProviderStatus(models.TextChoices):
    PENDING = "pending", "Awaiting verification"
    VERIFIED = "verified", "Verified"
    SUSPENDED = "suspended", "Suspended"


class WorkLocation(models.TextChoices):
    """Where a provider's processing services run on jobs' segments."""

    EXCHANGE = "exchange", "In the exchange's workers (built-in services)"
    PARTNER = "partner", "At the provider, through the work API (a partner agent)"


class ProviderProfile(models.Model):
    """An organization's application to sell on the exchange. Staff verify it before the
    provider may list blocks or answer requests."""

    organization = models.OneToOneField(
        Organization, on_delete=models.CASCADE, related_name="provider_profile"
    )
    legal_name = models.CharField(max_length=200)
    contact_name = models.CharField(max_length=150)
    contact_email = models.EmailField()
    contact_phone = models.CharField(max_length=32, blank=True)
    website = models.URLField(blank=True)
    description = models.TextField(blank=True)
    status = models.CharField(
        max_length=16, choices=ProviderStatus.choices, default=ProviderStatus.PENDING
    )
    work_location = models.CharField(
        max_length=16,
        choices=WorkLocation.choices,
        default=WorkLocation.EXCHANGE,
        help_text="Partner: the provider claims work items with its API key and runs them itself.",
    )
    applied_at = models.DateTimeField(auto_now_add=True)
    verified_at = models.DateTimeField(null=True, blank=True)
    verified_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )

    class Meta:
        ordering = ["legal_name"]
        verbose_name = "provider"
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=ProviderStatus.values), name="provider_status_valid"
            ),
            models.CheckConstraint(
                condition=~Q(status="verified") | Q(verified_at__isnull=False),
                name="provider_verified_has_time",
                violation_error_message="A verified provider records when it was verified.",
            ),
        ]

    def __str__(self):
        return self.legal_name

    @property
    def is_verified(self) -> bool:
        return self.status == ProviderStatus.VERIFIED


class NetworkTechnology(models.TextChoices):
    FIBER = "fiber", "Fiber"
    CABLE = "cable", "Cable (DOCSIS)"
    DSL = "dsl", "DSL"
    LTE = "lte", "LTE"
    NR = "5g", "5G NR"
    SATELLITE = "satellite", "Satellite"
    MICROWAVE = "microwave", "Microwave"
    ETHERNET = "ethernet", "Carrier Ethernet"
    OTHER = "other", "Other"


class Network(models.Model):
    """A provider's communications network."""

    provider = models.ForeignKey(ProviderProfile, on_delete=models.CASCADE, related_name="networks")
    name = models.CharField(max_length=100)
    technology = models.CharField(max_length=16, choices=NetworkTechnology.choices)
    region = models.CharField(max_length=100)

    class Meta:
        ordering = ["provider", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "name"],
                name="network_unique_name_per_provider",
                violation_error_message="This provider already has a network with this name.",
            )
        ]

    def __str__(self):
        return f"{self.name} ({self.region})"


class RoutingPath(models.Model):
    """An ordered list of network hops from ingress to egress with a nominal capacity."""

    provider = models.ForeignKey(
        ProviderProfile, on_delete=models.CASCADE, related_name="routing_paths"
    )
    name = models.CharField(max_length=100)
    capacity_mbps = models.PositiveIntegerField(
        "capacity (Mbit/s)", validators=[MinValueValidator(1)]
    )

    class Meta:
        ordering = ["provider", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "name"],
                name="routingpath_unique_name_per_provider",
                violation_error_message="This provider already has a routing path with this name.",
            ),
            models.CheckConstraint(
                condition=Q(capacity_mbps__gte=1),
                name="routingpath_capacity_positive",
                violation_error_message="Capacity must be at least 1 Mbit/s.",
            ),
        ]

    def __str__(self):
        return f"{self.name} ({self.capacity_mbps} Mbit/s)"


class RoutingPathHop(models.Model):
    """One network on a routing path; position 0 is the ingress."""

    path = models.ForeignKey(RoutingPath, on_delete=models.CASCADE, related_name="hops")
    position = models.PositiveSmallIntegerField()
    network = models.ForeignKey(Network, on_delete=models.PROTECT, related_name="hops")

    class Meta:
        ordering = ["path", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["path", "position"], name="routingpathhop_unique_position"
            )
        ]

    def __str__(self):
        return f"{self.path.name} #{self.position}: {self.network.name}"


class Service(models.TextChoices):
    """The segmentation service and the built-in processing services (SPEC §5.3)."""

    SEGMENTATION = "segmentation", "Segmentation"
    ANONYMIZE_IP = "anonymize-ip", "IP anonymization (Crypto-PAn)"
    STRIP_PAYLOAD = "strip-payload", "Payload stripping"
    DEDUPE = "dedupe", "Duplicate removal"
    FILTER = "filter", "BPF filtering"
    COMPRESS = "compress", "zstd compression"


class Offer(models.Model):
    """A catalogue entry of a provider: one service with its unit prices in minor units."""

    provider = models.ForeignKey(ProviderProfile, on_delete=models.CASCADE, related_name="offers")
    service = models.CharField(max_length=32, choices=Service.choices)
    price_per_gb_minor = models.PositiveBigIntegerField(
        "price per GB processed (minor units)", default=0
    )
    price_per_minute_minor = models.PositiveBigIntegerField(
        "price per minute of block time (minor units)", default=0
    )
    currency = models.CharField(
        max_length=3, choices=CURRENCY_CHOICES, default="USD", validators=[currency_validate]
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["provider", "service"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "service"],
                name="offer_unique_service_per_provider",
                violation_error_message="This provider already offers this service.",
            ),
            models.CheckConstraint(
                condition=Q(service__in=Service.values), name="offer_service_valid"
            ),
            models.CheckConstraint(
                condition=Q(price_per_gb_minor__gte=0) & Q(price_per_minute_minor__gte=0),
                name="offer_prices_not_negative",
            ),
        ]

    def __str__(self):
        return f"{self.get_service_display()} by {self.provider}"


# --- Outbound webhooks ---------------------------------------------------------------------------


def webhook_secret_generate() -> str:
    """A new signing secret: 32 random bytes, URL-safe, with a prefix that says what it is."""
    return f"whsec_{secrets.token_urlsafe(32)}"


def webhook_url_validate(value: str) -> None:
    """https to anywhere; plain http only to this machine or a private network (a receiver
    under development), never across the internet where the body could be read in transit.
    Unless WEBHOOK_PRIVATE_TARGETS allows development receivers, an address literal must be
    public, and http is refused (the sender also checks what a host name resolves to)."""
    parts = urlsplit(value)
    private_allowed = getattr(settings, "WEBHOOK_PRIVATE_TARGETS", False)
    if parts.scheme == "https" and parts.hostname:
        if not private_allowed:
            try:
                literal = ipaddress.ip_address(parts.hostname)
            except ValueError:
                literal = None
            if (literal is not None and not literal.is_global) or parts.hostname == "localhost":
                raise ValidationError(
                    f"A webhook receiver must be on a public address, not {parts.hostname}."
                )
        return
    if parts.scheme == "http" and parts.hostname and not private_allowed:
        raise ValidationError("A webhook URL starts with https://.")
    if parts.scheme != "http" or not parts.hostname:
        raise ValidationError("A webhook URL starts with https:// (or http:// for development).")
    host = parts.hostname
    if host == "localhost" or host.endswith(".localhost"):
        return
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    # Link-local (169.254.x, where clouds answer metadata requests) and 0.0.0.0 count as
    # private to `ipaddress` but are no place for a receiver.
    if (
        address is None
        or not (address.is_loopback or address.is_private)
        or address.is_link_local
        or address.is_unspecified
    ):
        raise ValidationError(
            "Plain http:// is only for a receiver on this machine or a private network "
            "(localhost, 127.0.0.1, 10.x, 192.168.x, ...); use https:// anywhere else."
        )


class WebhookEndpoint(models.Model):
    """A URL of a provider that receives the exchange's events (SPEC §5.1), each POST signed
    with this endpoint's secret. The secret is stored as it is, since we sign with it."""

    provider = models.ForeignKey(
        ProviderProfile, on_delete=models.CASCADE, related_name="webhook_endpoints"
    )
    url = models.URLField("URL", max_length=500, validators=[webhook_url_validate])
    description = models.CharField(max_length=200, blank=True)
    secret = models.CharField(max_length=100, default=webhook_secret_generate, editable=False)
    is_active = models.BooleanField("active", default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["provider", "url"]
        verbose_name = "webhook endpoint"
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "url"],
                name="webhookendpoint_unique_url_per_provider",
                violation_error_message="You already have a webhook endpoint with this URL.",
            ),
            models.CheckConstraint(
                condition=Q(url__startswith="https://") | Q(url__startswith="http://"),
                name="webhookendpoint_url_http",
                violation_error_message="A webhook URL starts with https:// or http://.",
            ),
            models.CheckConstraint(
                condition=~Q(secret=""),
                name="webhookendpoint_has_secret",
                violation_error_message="A webhook endpoint needs a signing secret.",
            ),
        ]

    def __str__(self):
        return self.url


class WebhookDeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed (gave up)"


class WebhookDelivery(models.Model):
    """One event sent to one endpoint, tried until it answers 2xx or the attempts run out.

    While pending, `next_attempt_at` is when the next attempt is due; during an attempt it is
    pushed past the attempt's time-out, so that a second run of the task leaves it alone and
    an attempt whose worker died is tried again once it passes. `enqueued_at` is when a task
    was last queued for it, so the sweep queues each due attempt once."""

    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    event = models.CharField(max_length=100)
    event_id = models.UUIDField("event id", default=uuid.uuid4, editable=False)
    payload = models.JSONField(encoder=DjangoJSONEncoder)
    status = models.CharField(
        max_length=16, choices=WebhookDeliveryStatus.choices, default=WebhookDeliveryStatus.PENDING
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name = "webhook delivery"
        verbose_name_plural = "webhook deliveries"
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="webhookdelivery_due_idx"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["event_id"], name="webhookdelivery_unique_event_id"),
            models.CheckConstraint(
                condition=Q(status__in=WebhookDeliveryStatus.values),
                name="webhookdelivery_status_valid",
            ),
            models.CheckConstraint(
                condition=~Q(status=WebhookDeliveryStatus.DELIVERED)
                | Q(delivered_at__isnull=False),
                name="webhookdelivery_delivered_has_time",
                violation_error_message="A delivered webhook records when it was delivered.",
            ),
            models.CheckConstraint(
                condition=~Q(status=WebhookDeliveryStatus.PENDING)
                | Q(next_attempt_at__isnull=False),
                name="webhookdelivery_pending_has_next_attempt",
                violation_error_message="A pending webhook delivery has a next attempt time.",
            ),
        ]

    def __str__(self):
        return f"{self.event} {self.event_id} → {self.endpoint}"


class WebhookAttempt(models.Model):
    """One POST of a delivery, for the console's log. An attempt under way has no
    `duration_ms` yet."""

    delivery = models.ForeignKey(
        WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log"
    )
    number = models.PositiveSmallIntegerField()
    at = models.DateTimeField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["delivery", "number"]
        verbose_name = "webhook attempt"
        constraints = [
            models.UniqueConstraint(
                fields=["delivery", "number"], name="webhookattempt_unique_number"
            ),
            models.CheckConstraint(condition=Q(number__gte=1), name="webhookattempt_number_from_1"),
        ]

    def __str__(self):
        return f"attempt {self.number} of {self.delivery}"
