"""Reads for segmentation: profiles, jobs and their progress, metering per provider and lease,
service requests with their availability and plans."""

from django.db.models import Count, Q, QuerySet, Sum
from django.urls import reverse

from auctions.models import Lease
from marketplace.models import Organization
from providers.models import Network, ProviderStatus
from segmentation.models import (
    AvailabilityMessage,
    Job,
    JobStatus,
    SegmentationProfile,
    ServiceRequest,
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


def leases_usable(organization: Organization, *, now, user=None) -> QuerySet[Lease]:
    """Leases a job can run under now, begun and not ended: the organization's, and those
    the caller holds a seat on (a buying group's, say: auctions.seats)."""
    from auctions.seats import seats_held

    seated = seats_held(user=user, organization=organization, now=now).values("lease_id")
    return (
        Lease.objects.filter(Q(winner=organization) | Q(pk__in=seated))
        .filter(starts_at__lte=now, ends_at__gt=now)
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


def networks_public() -> QuerySet[Network]:
    """The networks of verified providers, which profiles may prefer or block."""
    return (
        Network.objects.filter(
            provider__status=ProviderStatus.VERIFIED, provider__organization__is_active=True
        )
        .select_related("provider")
        .order_by("provider__legal_name", "name")
    )


def profile_summary(profile: SegmentationProfile, provider_names: dict, network_names: dict):
    """A profile with its preferences in words, for its row on the profiles page."""

    def named(entries, key, names, kind):
        return [
            f"{names.get(entry[key], f'{kind} {entry[key]}')} ({entry['weight']:g})"
            for entry in entries
        ]

    return {
        "profile": profile,
        "preferred": named(profile.preferred_providers, "provider", provider_names, "provider"),
        "networks": named(profile.preferred_networks, "network", network_names, "network"),
        "blocked": [provider_names.get(i, f"provider {i}") for i in profile.blocked_providers]
        + [network_names.get(i, f"network {i}") for i in profile.blocked_networks],
    }


def service_requests_of(organization: Organization) -> QuerySet[ServiceRequest]:
    """The requests an organization made."""
    return ServiceRequest.objects.filter(organization=organization).select_related(
        "profile", "device"
    )


def service_requests_received(organization: Organization) -> QuerySet[ServiceRequest]:
    """The requests broadcast to the organization's provider profile (none if it is none)."""
    return ServiceRequest.objects.filter(broadcast_to__organization=organization).select_related(
        "profile", "device"
    )


def service_request_visible(organization: Organization | None, pk) -> ServiceRequest | None:
    """A request its maker or a provider it was broadcast to may see; None otherwise."""
    if organization is None:
        return None
    try:
        pk = int(pk)
    except (TypeError, ValueError):
        return None
    return (
        ServiceRequest.objects.filter(pk=pk)
        .filter(Q(organization=organization) | Q(broadcast_to__organization=organization))
        .select_related("profile", "device", "organization")
        .distinct()
        .first()
    )


def availability_of(service_request: ServiceRequest, organization: Organization):
    """The request's availability messages the organization may see: all of them for the
    request's maker, a provider's own for a provider."""
    messages = AvailabilityMessage.objects.filter(service_request=service_request)
    if service_request.organization_id != organization.pk:
        messages = messages.filter(provider__organization=organization)
    return messages.select_related("provider").prefetch_related("paths__path")


def plan_drawing(plan, *, limit: int = 40) -> dict:
    """Coordinates for the plan's SVG: the data as stacked segments on the left (heights in
    proportion to their bytes), each joined to its provider and path on the right, whose bar
    is the path's bandwidth (longest: the widest path) filled to the share of the makespan the
    segment keeps it busy. The `limit` largest lines are drawn; the rest are counted."""
    lines = list(plan.lines.select_related("provider", "path")[:limit])
    more = plan.lines.count() - len(lines)
    row, gap, top = 34, 6, 10
    height = max(top * 2 + len(lines) * (row + gap), 80)
    total = sum(line.bytes for line in lines) or 1
    widest = max((line.bandwidth_mbps for line in lines), default=1) or 1
    makespan = plan.makespan_seconds or 1
    usable = height - 2 * top
    drawn = []
    offset = top
    for k, line in enumerate(lines):
        segment_height = max(2.0, usable * line.bytes / total)
        y = top + k * (row + gap)
        bar = 260 * line.bandwidth_mbps / widest
        drawn.append(
            {
                "line": line,
                "segment_y": round(offset, 1),
                "segment_height": round(segment_height, 1),
                "segment_middle": round(offset + segment_height / 2, 1),
                "y": y,
                "middle": y + row / 2,
                "bar_width": round(bar, 1),
                "busy_width": round(bar * min(1.0, line.seconds / makespan), 1),
                "label_y": y + 13,
                "bar_y": y + 19,
                "bar_label_x": round(310 + bar, 1),
                "bar_label_y": y + 27,
            }
        )
        offset += segment_height
    return {"height": height, "lines": drawn, "more": more}


def negotiation_standing(negotiation) -> dict:
    """A negotiation's reverse auction as anyone invited may see it: how many providers
    quoted in it, and the lowest price quoted (no names)."""
    quotes = negotiation.quotes.all()
    lowest = min((quote.price_per_gb_minor for quote in quotes), default=None)
    return {"providers": len({quote.provider_id for quote in quotes}), "lowest": lowest}
