"""Jobs: a lease holder's capture segmented, its segments processed as work items by
providers (the lease's, or a subcontractor), and the results assembled, with metering."""

from django.conf import settings
from django.db import models
from django.db.models import Q

from auctions.models import Lease
from marketplace.models import ApiKey, Organization
from providers.models import ProviderProfile, WorkLocation
from segmentation.split import METHODS

METHOD_CHOICES = [(method, method) for method in METHODS]


class SegmentationProfile(models.Model):
    """A recipient's saved choice of split method, parameter, BPF and processing pipeline,
    with the providers it prefers for subcontracted work (in order)."""

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
        help_text="Provider ids in order of preference for subcontracted work.",
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
    profile = models.ForeignKey(
        SegmentationProfile, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
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
    lease = models.ForeignKey(Lease, on_delete=models.PROTECT, related_name="usage")
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
