"""Segmentation: profiles; service requests, the providers' availability messages, plans and
negotiation; jobs: a capture segmented, its segments processed as work items by providers (a
lease's, the plan's, or a subcontractor), and the results assembled, with metering."""

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from auctions.models import Lease
from marketplace.models import ApiKey, ClientDevice, Organization
from marketplace.money import CURRENCY_CHOICES, currency_validate
from providers.models import ProviderProfile, RoutingPath, WorkLocation
from segmentation.split import METHODS

METHOD_CHOICES = [(method, method) for method in METHODS]


class BillingPresentation(models.TextChoices):
    CONSOLIDATED = "consolidated", "One statement for all providers"
    PER_PROVIDER = "per_provider", "One statement per provider"


class SegmentationProfile(models.Model):
    """A recipient's saved choice of split method, parameter, BPF and processing pipeline, and
    what the planner honours: preferred providers and networks (ordered, weighted), blocked
    ones, a minimum rating, prefer-highest-rated, the time-or-cost balance; and how billing
    presents the charges."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="segmentation_profiles"
    )
    name = models.CharField(max_length=100)
    method = models.CharField(max_length=16, choices=METHOD_CHOICES)
    param = models.CharField("parameter", max_length=200, blank=True)
    bpf_filter = models.CharField(
        "BPF filter", max_length=1000, blank=True, help_text="Only packets it matches are split."
    )
    pipeline = models.JSONField(default=list, blank=True)
    preferred_providers = models.JSONField(
        default=list,
        blank=True,
        help_text='In order: [{"provider": id, "weight": 0..1}]. The planner favours them by '
        "their weight; subcontracted work goes to the first that offers every service.",
    )
    preferred_networks = models.JSONField(
        default=list,
        blank=True,
        help_text='In order: [{"network": id, "weight": 0..1}]: paths through them are favoured.',
    )
    blocked_providers = models.JSONField(
        default=list, blank=True, help_text="Provider ids never planned nor asked."
    )
    blocked_networks = models.JSONField(
        default=list, blank=True, help_text="Network ids no planned path may cross."
    )
    min_provider_rating = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0), MaxValueValidator(5)],
        help_text="Providers rated below it (or not rated yet) are not planned.",
    )
    prefer_highest_rated = models.BooleanField(default=False)
    cost_weight = models.FloatField(
        "time or cost",
        default=0.0,
        validators=[MinValueValidator(0), MaxValueValidator(1)],
        help_text="0: fastest first, then cheapest; 1: cheapest first, then fastest; between: "
        "the weight of cost against time. Preferences count only where cost has some weight "
        "or where paths are not all needed at full speed.",
    )
    billing_presentation = models.CharField(
        max_length=16, choices=BillingPresentation.choices, default=BillingPresentation.CONSOLIDATED
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "name"],
                name="segmentation_profile_unique_name",
                violation_error_message="Your organization already has a profile of this name.",
            ),
            models.CheckConstraint(
                condition=Q(method__in=METHODS), name="segmentation_profile_method_valid"
            ),
            models.CheckConstraint(
                condition=Q(cost_weight__gte=0, cost_weight__lte=1),
                name="segmentation_profile_cost_weight_range",
                violation_error_message="The time-or-cost weight is between 0 and 1.",
            ),
            models.CheckConstraint(
                condition=Q(min_provider_rating__isnull=True)
                | Q(min_provider_rating__gte=0, min_provider_rating__lte=5),
                name="segmentation_profile_min_rating_range",
                violation_error_message="The minimum rating is between 0 and 5.",
            ),
        ]

    def __str__(self):
        return self.name


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    SPLITTING = "splitting", "Splitting"
    PROCESSING = "processing", "Processing"
    ASSEMBLING = "assembling", "Assembling"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


JOB_ENDED = (JobStatus.SUCCEEDED, JobStatus.FAILED)


class Job(models.Model):
    """The segmentation of one uploaded capture under a lease."""

    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="jobs")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    lease = models.ForeignKey(
        Lease,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="jobs",
        help_text="Empty when the job was refused for a lease it may not use.",
    )
    seat = models.ForeignKey(
        "auctions.LeaseSeat",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="jobs",
        help_text="The lease's seat it ran under: its usage is attributed to it.",
    )
    profile = models.ForeignKey(
        SegmentationProfile, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    plan = models.ForeignKey(
        "Plan",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="jobs",
        help_text="The accepted plan of a service request: its providers share the segments.",
    )
    # the profile as it was when the job was submitted
    method = models.CharField(max_length=16, choices=METHOD_CHOICES)
    param = models.CharField(max_length=200, blank=True)
    bpf_filter = models.CharField(max_length=1000, blank=True)
    pipeline = models.JSONField(default=list, blank=True)
    preferred_providers = models.JSONField(default=list, blank=True)

    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    failure_code = models.CharField(max_length=40, blank=True)
    failure_reason = models.TextField(blank=True)

    input_name = models.CharField(max_length=255)
    input_format = models.CharField(max_length=8, blank=True)
    input_bytes = models.PositiveBigIntegerField(default=0)
    input_sha256 = models.CharField(max_length=64, blank=True)
    packets_total = models.PositiveBigIntegerField(default=0, help_text="Packets split.")
    bytes_total = models.PositiveBigIntegerField(default=0, help_text="Bytes of the segments.")
    items_total = models.PositiveIntegerField(default=0)
    items_done = models.PositiveIntegerField(default=0)
    packets_done = models.PositiveBigIntegerField(default=0)
    bytes_done = models.PositiveBigIntegerField(default=0)

    output_packets = models.PositiveBigIntegerField(default=0)
    output_bytes = models.PositiveBigIntegerField(default=0)
    output_sha256 = models.CharField(max_length=64, blank=True)
    manifest = models.JSONField(null=True, blank=True)

    key_per_job = models.BooleanField(
        default=False,
        help_text="anonymize-ip runs at a partner: the job has a key of its own, so the "
        "recipient's key never leaves the exchange.",
    )
    pace_until = models.DateTimeField(
        null=True, blank=True, help_text="End of the time reserved so far at the block's max rate."
    )
    seq = models.PositiveBigIntegerField(default=0, help_text="Number of the last live event.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(
        auto_now=True, help_text="Last change; the reconciler nudges jobs idle for long."
    )
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["organization", "-created_at"], name="job_org_created")]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=JobStatus.values), name="job_status_valid"
            ),
            models.CheckConstraint(
                condition=~Q(status="failed") | ~Q(failure_reason=""),
                name="job_failed_has_reason",
            ),
            models.CheckConstraint(
                condition=Q(items_done__lte=models.F("items_total")),
                name="job_items_done_within_total",
            ),
        ]

    def __str__(self):
        return f"Job {self.pk} ({self.input_name})"

    @property
    def ended(self) -> bool:
        return self.status in JOB_ENDED

    @property
    def progress_percent(self) -> int:
        if self.status == JobStatus.SUCCEEDED:
            return 100
        if not self.bytes_total:
            return 0
        return min(99, self.bytes_done * 100 // self.bytes_total)


class WorkItemKind(models.TextChoices):
    SEGMENT = "segment", "Segment"
    SUBCONTRACT = "subcontract", "Subcontracted segment"


class WorkItemStatus(models.TextChoices):
    PENDING = "pending", "Waiting"
    CLAIMED = "claimed", "Claimed by a partner"
    RUNNING = "running", "Running"
    DONE = "done", "Done"


class WorkItem(models.Model):
    """One segment of a job, to be processed by one provider: in the exchange's workers, or
    claimed by the provider's partner agent through the API (a claim with a deadline)."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="items")
    number = models.PositiveBigIntegerField(help_text="The segment's number in the split.")
    kind = models.CharField(max_length=16, choices=WorkItemKind.choices)
    provider = models.ForeignKey(
        ProviderProfile, on_delete=models.PROTECT, related_name="work_items"
    )
    plan_line = models.ForeignKey(
        "PlanLine",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="work_items",
        help_text="The plan's provider and path this segment went to (planned jobs).",
    )
    location = models.CharField(max_length=16, choices=WorkLocation.choices)
    steps = models.JSONField(default=list, blank=True)
    segment_path = models.CharField(max_length=500)
    packets_in = models.PositiveBigIntegerField()
    bytes_in = models.PositiveBigIntegerField()
    sha256_in = models.CharField(max_length=64)

    status = models.CharField(
        max_length=16, choices=WorkItemStatus.choices, default=WorkItemStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    claim_token_hash = models.CharField(max_length=64, blank=True)
    claimed_by = models.ForeignKey(
        ApiKey, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    claim_deadline = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(
        max_length=64,
        blank=True,
        help_text="The exchange's task worker that ran the item last (host-pid-suffix, as "
        "`manage.py worker` prints its name); empty for an item a partner processed.",
    )
    last_error = models.TextField(blank=True)

    result_path = models.CharField(max_length=500, blank=True)
    packets_out = models.PositiveBigIntegerField(default=0)
    bytes_out = models.PositiveBigIntegerField(default=0)
    sha256_out = models.CharField(max_length=64, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["job", "number"]
        indexes = [
            models.Index(fields=["provider", "status", "location"], name="work_item_claimable")
        ]
        constraints = [
            models.UniqueConstraint(fields=["job", "number"], name="work_item_unique_number"),
            models.CheckConstraint(
                condition=Q(status__in=WorkItemStatus.values), name="work_item_status_valid"
            ),
            models.CheckConstraint(
                condition=~Q(status="claimed") | Q(claim_deadline__isnull=False),
                name="work_item_claim_has_deadline",
            ),
        ]

    def __str__(self):
        return f"{self.get_kind_display()} {self.number} of job {self.job_id}"


class UsageRecord(models.Model):
    """Metering: what one provider processed for one work item of a job under a lease."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="usage")
    lease = models.ForeignKey(
        Lease,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="usage",
        help_text="Empty for a planned job (its providers were chosen by a plan).",
    )
    provider = models.ForeignKey(ProviderProfile, on_delete=models.PROTECT, related_name="usage")
    work_item = models.OneToOneField(WorkItem, on_delete=models.CASCADE, related_name="usage")
    kind = models.CharField(max_length=16, choices=WorkItemKind.choices)
    packets = models.PositiveBigIntegerField()
    bytes = models.PositiveBigIntegerField()
    recorded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["recorded_at", "id"]

    def __str__(self):
        return f"{self.provider}: {self.packets} packets, {self.bytes} bytes (job {self.job_id})"


class SlaBreach(models.Model):
    """A job that ran slower than its block's guaranteed minimum rate (billing credits it)."""

    lease = models.ForeignKey(Lease, on_delete=models.PROTECT, related_name="sla_breaches")
    job = models.OneToOneField(Job, on_delete=models.CASCADE, related_name="sla_breach")
    guaranteed_mbps = models.PositiveIntegerField()
    measured_mbps = models.FloatField()
    bytes = models.PositiveBigIntegerField()
    seconds = models.FloatField(help_text="How long the job took to process its data.")
    allowed_seconds = models.FloatField(help_text="How long it could take at the minimum rate.")
    recorded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-recorded_at"]

    def __str__(self):
        return f"SLA breach on job {self.job_id}: {self.measured_mbps:.2f} < {self.guaranteed_mbps}"


# --- service requests, availability, plans, negotiation ----------------------------------------


class ServiceRequestStatus(models.TextChoices):
    OPEN = "open", "Open to availability"
    ACCEPTED = "accepted", "Plan accepted"
    CANCELLED = "cancelled", "Cancelled"


class ServiceRequest(models.Model):
    """A recipient's (or one of its client devices') request for communications service,
    broadcast to every eligible provider, which answer with availability messages."""

    organization = models.ForeignKey(
        Organization, on_delete=models.PROTECT, related_name="service_requests"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    device = models.ForeignKey(
        ClientDevice,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="service_requests",
        help_text="The client device the request comes from, if any.",
    )
    profile = models.ForeignKey(
        SegmentationProfile, on_delete=models.PROTECT, related_name="service_requests"
    )
    data_bytes = models.PositiveBigIntegerField("data volume (bytes)")
    deadline = models.DateTimeField(help_text="When all the data must have been carried.")
    services = models.JSONField(
        default=list, blank=True, help_text="Processing services the providers must offer."
    )
    price_limit_minor = models.PositiveBigIntegerField(
        "price limit (minor units)", null=True, blank=True
    )
    currency = models.CharField(
        max_length=3, choices=CURRENCY_CHOICES, default="USD", validators=[currency_validate]
    )
    sla_min_rate_mbps = models.PositiveIntegerField(
        "guaranteed minimum rate (Mbit/s)",
        null=True,
        blank=True,
        help_text="An SLA: the plan must carry the data at least this fast on average.",
    )
    negotiate = models.BooleanField(
        default=False, help_text="Ask the answering providers for better quotes before planning."
    )
    status = models.CharField(
        max_length=16, choices=ServiceRequestStatus.choices, default=ServiceRequestStatus.OPEN
    )
    broadcast_to = models.ManyToManyField(
        ProviderProfile, blank=True, related_name="service_requests_received"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    accepted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=ServiceRequestStatus.values),
                name="service_request_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(data_bytes__gte=1),
                name="service_request_volume_positive",
                violation_error_message="The data volume must be at least one byte.",
            ),
            models.CheckConstraint(
                condition=Q(sla_min_rate_mbps__isnull=True) | Q(sla_min_rate_mbps__gte=1),
                name="service_request_sla_rate_positive",
                violation_error_message="The guaranteed rate must be at least 1 Mbit/s.",
            ),
        ]

    def __str__(self):
        return f"Service request {self.pk}"


class AvailabilityMessage(models.Model):
    """A provider's answer to a service request: routing paths immediately available, the
    bandwidth immediately available along each, a price per GB, and until when it holds."""

    service_request = models.ForeignKey(
        ServiceRequest, on_delete=models.CASCADE, related_name="availability"
    )
    provider = models.ForeignKey(
        ProviderProfile, on_delete=models.PROTECT, related_name="availability_messages"
    )
    price_per_gb_minor = models.PositiveBigIntegerField("price per GB (minor units)")
    currency = models.CharField(
        max_length=3, choices=CURRENCY_CHOICES, validators=[currency_validate]
    )
    valid_until = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            models.Index(fields=["service_request", "provider"], name="availability_request")
        ]

    def __str__(self):
        return f"{self.provider} on request {self.service_request_id}"


class AvailabilityPath(models.Model):
    """One routing path of an availability message, with its bandwidth available now."""

    message = models.ForeignKey(AvailabilityMessage, on_delete=models.CASCADE, related_name="paths")
    path = models.ForeignKey(RoutingPath, on_delete=models.PROTECT, related_name="+")
    bandwidth_mbps = models.PositiveIntegerField("bandwidth available (Mbit/s)")

    class Meta:
        ordering = ["message", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["message", "path"],
                name="availability_path_unique",
                violation_error_message="A message names each path once.",
            ),
            models.CheckConstraint(
                condition=Q(bandwidth_mbps__gte=1),
                name="availability_path_bandwidth_positive",
                violation_error_message="The bandwidth must be at least 1 Mbit/s.",
            ),
        ]

    def __str__(self):
        return f"{self.path.name}: {self.bandwidth_mbps} Mbit/s"


class NegotiationStatus(models.TextChoices):
    OPEN = "open", "Open to quotes"
    CLOSED = "closed", "Closed"


class Negotiation(models.Model):
    """A reverse auction among the providers that answered a service request: each may quote
    a lower price per GB until it closes (equal prices: the earlier quote ranks first); then
    the request is planned again with the quotes."""

    service_request = models.ForeignKey(
        ServiceRequest, on_delete=models.CASCADE, related_name="negotiations"
    )
    status = models.CharField(
        max_length=16, choices=NegotiationStatus.choices, default=NegotiationStatus.OPEN
    )
    invited = models.ManyToManyField(ProviderProfile, blank=True, related_name="+")
    opened_at = models.DateTimeField(auto_now_add=True)
    closes_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-opened_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["service_request"],
                condition=Q(status="open"),
                name="negotiation_one_open_per_request",
                violation_error_message="A negotiation is already open for this request.",
            ),
            models.CheckConstraint(
                condition=Q(status__in=NegotiationStatus.values), name="negotiation_status_valid"
            ),
        ]

    def __str__(self):
        return f"Negotiation {self.pk} on request {self.service_request_id}"


class Quote(models.Model):
    """A provider's lower price per GB in a negotiation, for its availability message."""

    negotiation = models.ForeignKey(Negotiation, on_delete=models.CASCADE, related_name="quotes")
    provider = models.ForeignKey(ProviderProfile, on_delete=models.PROTECT, related_name="+")
    message = models.ForeignKey(
        AvailabilityMessage, on_delete=models.CASCADE, related_name="quotes"
    )
    price_per_gb_minor = models.PositiveBigIntegerField("price per GB (minor units)")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self):
        return f"{self.provider}: {self.price_per_gb_minor} per GB"


class Plan(models.Model):
    """A computed scenario of segmentation, dispersion and assemblage for a service request:
    its lines (provider, path, share), predicted time and cost, and the reason for each
    choice; or, when infeasible, which constraint fails. The newest plan is the current one."""

    service_request = models.ForeignKey(
        ServiceRequest, on_delete=models.CASCADE, related_name="plans"
    )
    negotiation = models.ForeignKey(
        Negotiation,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="plans",
        help_text="The negotiation whose quotes it used.",
    )
    feasible = models.BooleanField()
    volume_bytes = models.PositiveBigIntegerField()
    makespan_seconds = models.FloatField(null=True, blank=True)
    total_cost_minor = models.PositiveBigIntegerField(null=True, blank=True)
    currency = models.CharField(max_length=3, choices=CURRENCY_CHOICES)
    cost_weight = models.FloatField()
    assemblage_provider = models.ForeignKey(
        ProviderProfile, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    binding = models.JSONField(default=list, blank=True)
    failures = models.JSONField(default=list, blank=True)
    reasons = models.JSONField(default=list, blank=True)
    exclusions = models.JSONField(default=list, blank=True)
    fastest_seconds = models.FloatField(null=True, blank=True)
    cheapest_cost_minor = models.FloatField(null=True, blank=True)
    messages_used = models.PositiveIntegerField(
        default=0, help_text="Availability messages valid when it was computed."
    )
    valid_until = models.DateTimeField(
        null=True, blank=True, help_text="When the first availability message it uses expires."
    )
    computed_ms = models.FloatField(default=0)
    inputs_at = models.DateTimeField(
        help_text="When it read the messages and quotes: anything newer makes it out of date."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"Plan {self.pk} of request {self.service_request_id}"


class PlanLine(models.Model):
    """One provider and path of a plan, with its share: one segment of the data."""

    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="lines")
    position = models.PositiveIntegerField()
    provider = models.ForeignKey(ProviderProfile, on_delete=models.PROTECT, related_name="+")
    path = models.ForeignKey(RoutingPath, on_delete=models.PROTECT, related_name="+")
    message = models.ForeignKey(
        AvailabilityMessage, on_delete=models.PROTECT, related_name="plan_lines"
    )
    bandwidth_mbps = models.FloatField()
    price_per_gb_minor = models.PositiveBigIntegerField()
    fraction = models.FloatField()
    bytes = models.PositiveBigIntegerField()
    seconds = models.FloatField()
    cost_minor = models.PositiveBigIntegerField()
    full_bandwidth = models.BooleanField()
    reason = models.TextField()

    class Meta:
        ordering = ["plan", "position"]
        constraints = [
            models.UniqueConstraint(fields=["plan", "position"], name="plan_line_unique_position")
        ]

    def __str__(self):
        return f"{self.provider} / {self.path.name}: {self.bytes} bytes"
