"""Reads for jobs: a member's jobs, one job's progress, metering per provider and lease."""

from django.db.models import Count, QuerySet, Sum
from django.urls import reverse

from auctions.models import Lease
from marketplace.models import Organization
from segmentation.models import (
    Job,
    JobStatus,
    SegmentationProfile,
    UsageRecord,
    WorkItem,
)


def jobs_of(organization: Organization) -> QuerySet[Job]:
    return Job.objects.filter(organization=organization).select_related(
        "lease__block__provider", "profile"
    )


def job_of(organization: Organization, job_id) -> Job | None:
    try:
        return jobs_of(organization).filter(pk=int(job_id)).first()
    except (TypeError, ValueError):
        return None


def job_items(job: Job) -> QuerySet[WorkItem]:
    return job.items.select_related("provider").order_by("number")


def profiles_of(organization: Organization) -> QuerySet[SegmentationProfile]:
    return SegmentationProfile.objects.filter(organization=organization)


def leases_usable(organization: Organization, *, now) -> QuerySet[Lease]:
    """Leases a job can run under now: the organization's, begun and not ended."""
    return (
        Lease.objects.filter(winner=organization, starts_at__lte=now, ends_at__gt=now)
        .select_related("block__provider")
        .order_by("ends_at")
    )


def job_progress(job: Job) -> dict:
    """The figures the job page, the websocket and the API share."""
    succeeded = job.status == JobStatus.SUCCEEDED
    return {
        "id": job.pk,
        "seq": job.seq,
        "status": job.status,
        "status_display": job.get_status_display(),
        "percent": job.progress_percent,
        "items_total": job.items_total,
        "items_done": job.items_done,
        "packets_total": job.packets_total,
        "packets_done": job.packets_done,
        "bytes_total": job.bytes_total,
        "bytes_done": job.bytes_done,
        "output_packets": job.output_packets,
        "output_bytes": job.output_bytes,
        "output_sha256": job.output_sha256,
        "failure_code": job.failure_code,
        "failure_reason": job.failure_reason,
        "output_url": reverse("job_output", args=[job.pk]) if succeeded else None,
        "manifest_url": reverse("job_manifest", args=[job.pk]) if succeeded else None,
    }


def usage_by_provider(*, lease: Lease | None = None, job: Job | None = None) -> list[dict]:
    """Metered packets and bytes per provider (and kind of work) for a lease or a job."""
    records = UsageRecord.objects.all()
    if lease is not None:
        records = records.filter(lease=lease)
    if job is not None:
        records = records.filter(job=job)
    return list(
        records.values("provider_id", "provider__legal_name", "lease_id", "kind")
        .annotate(packets=Sum("packets"), bytes=Sum("bytes"), items=Count("id"))
        .order_by("provider__legal_name", "kind")
    )
