"""Providers: their profile and verification, networks, routing paths and offers."""

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q

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
