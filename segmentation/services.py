"""Writes for jobs: submission, the split into work items, processing in the exchange's
workers or by a partner's claims, subcontracting, assemblage, metering and failure.

A job moves queued → splitting → processing → assembling → succeeded (or failed, with its
reason). Every step is safe to run twice: the durable tasks that drive it (segmentation.tasks)
are run again when a worker dies, files are renamed into place only once complete, and each
state change happens under the job's or the item's row lock after re-reading its status.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import shutil
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from auctions.models import Lease
from auctions.seats import SeatRefused, seat_for_job, seat_holder_exists
from marketplace.live import organization_notify
from marketplace.models import ApiKey, Organization, User
from marketplace.taskqueue import task_worker_name
from providers.models import Network, Offer, ProviderProfile, ProviderStatus, WorkLocation
from segmentation.assemble import AssembleError, assemble
from segmentation.capture import capture_open
from segmentation.jobfiles import (
    chunks_store,
    file_sha256,
    indices_kept,
    indices_read,
    indices_write,
    is_zstd,
    job_dir,
    job_dir_remove,
    record_sizes_read,
    record_sizes_write,
    segment_process,
    temporary_beside,
)
from segmentation.live import job_event_publish
from segmentation.models import (
    JOB_ENDED,
    BillingPresentation,
    Job,
    JobStatus,
    PlanLine,
    SegmentationProfile,
    SlaBreach,
    UsageRecord,
    WorkItem,
    WorkItemKind,
    WorkItemStatus,
)
from segmentation.packet import CaptureError
from segmentation.processing import (
    ProcessingError,
    bpf_check,
    decompress_file,
    pipeline_needs,
    pipeline_validate,
    recipient_key,
    services_required,
)
from segmentation.split import (
    MAX_FILES_METHODS,
    MIN_FILE_SIZE,
    ROUTED_BASE,
    SegmentIndex,
    SplitError,
    split_capture,
    split_param_parse,
)

logger = logging.getLogger(__name__)

SUBCONTRACT_NUMBER = ROUTED_BASE  # the segment that gathers the packets to subcontract


class JobRejected(Exception):
    """A submission refused; `job` is the failed job recorded for it (None if none could be)."""

    def __init__(self, code: str, message: str, *, job: Job | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.job = job


class WorkRefused(Exception):
    """A partner's claim, result or failure report that cannot be accepted."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class JobSpec:
    """What to do with a capture: the split and the processing pipeline."""

    method: str
    param: str = ""
    bpf_filter: str = ""
    pipeline: tuple | list = ()
    preferred_providers: tuple | list = ()


# --- submission --------------------------------------------------------------------------------


def job_spec_validate(spec: JobSpec) -> JobSpec:
    """The spec, checked; JobRejected(code, message) naming what is wrong."""
    try:
        split_param_parse(spec.method, spec.param or None)
    except SplitError as exc:
        raise JobRejected("invalid_split", str(exc)) from None
    if spec.method == "bpf-filter":
        try:
            bpf_check(spec.param)
        except ProcessingError as exc:
            raise JobRejected("bad_bpf", f"The bpf-filter method's parameter: {exc}") from None
    if spec.bpf_filter:
        try:
            bpf_check(spec.bpf_filter)
        except ProcessingError as exc:
            raise JobRejected("bad_bpf", f"BPF filter: {exc}") from None
    try:
        pipeline = pipeline_validate(list(spec.pipeline or []))
    except ProcessingError as exc:
        raise JobRejected("invalid_pipeline", f"Processing pipeline: {exc}") from None
    try:
        preferred = weighted_preferences(spec.preferred_providers, "provider")
    except ValueError as exc:
        raise JobRejected("invalid_pipeline", str(exc)) from None
    return JobSpec(spec.method, spec.param or "", spec.bpf_filter or "", pipeline, preferred)


def weighted_preferences(entries, key: str) -> list[dict]:
    """Preferred providers or networks, in order, as [{key: id, "weight": w}]: each entry an
    id (weight 1) or such an object with a weight in (0, 1]. ValueError says what is wrong."""
    if entries is None:
        return []
    if not isinstance(entries, list | tuple):
        raise ValueError(f"Preferred {key}s are a list of {key} ids or {{{key}, weight}} objects.")
    normalized = []
    seen = set()
    for entry in entries:
        if isinstance(entry, dict):
            identifier, weight = entry.get(key), entry.get("weight", 1.0)
            unknown = set(entry) - {key, "weight"}
            if unknown:
                raise ValueError(f"Unknown field {sorted(unknown)[0]!r} in a preferred {key}.")
        else:
            identifier, weight = entry, 1.0
        if isinstance(identifier, bool) or not isinstance(identifier, int):
            raise ValueError(f"Preferred {key}s are a list of {key} ids or {{{key}, weight}}.")
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 < weight <= 1:
            raise ValueError(f"The weight of preferred {key} {identifier} must be in (0, 1].")
        if identifier in seen:
            raise ValueError(f"{key.capitalize()} {identifier} is preferred twice.")
        seen.add(identifier)
        normalized.append({key: identifier, "weight": float(weight)})
    return normalized


def preferred_ids(preferences: list, key: str = "provider") -> list[int]:
    """The ids of weighted preferences, in order (plain ids pass through)."""
    return [entry[key] if isinstance(entry, dict) else entry for entry in preferences]


@dataclass(frozen=True)
class ProfilePlanning:
    """What the planner honours in a profile, besides its preferred providers (in JobSpec),
    and how billing presents its charges."""

    preferred_networks: tuple | list = ()
    blocked_providers: tuple | list = ()
    blocked_networks: tuple | list = ()
    min_provider_rating: float | None = None
    prefer_highest_rated: bool = False
    cost_weight: float = 0.0
    billing_presentation: str = BillingPresentation.CONSOLIDATED


def profile_planning_validate(planning: ProfilePlanning, preferred_providers: list) -> dict:
    """The planning fields as the profile stores them; JobRejected("invalid_preferences")
    naming what is wrong: unknown providers or networks, one both preferred and blocked, a
    weight, rating or balance out of range, an unknown billing presentation."""

    def refused(message: str) -> JobRejected:
        return JobRejected("invalid_preferences", message)

    try:
        networks = weighted_preferences(planning.preferred_networks, "network")
    except ValueError as exc:
        raise refused(str(exc)) from None
    blocked = {}
    for kind in ("providers", "networks"):
        ids = getattr(planning, f"blocked_{kind}") or []
        if not isinstance(ids, list | tuple) or any(
            isinstance(i, bool) or not isinstance(i, int) for i in ids
        ):
            raise refused(f"Blocked {kind} are a list of ids.")
        blocked[kind] = sorted(set(ids))
    provider_ids = set(preferred_ids(preferred_providers)) | set(blocked["providers"])
    known = set(ProviderProfile.objects.filter(pk__in=provider_ids).values_list("pk", flat=True))
    if provider_ids - known:
        raise refused(f"There is no provider {min(provider_ids - known)}.")
    network_ids = set(preferred_ids(networks, "network")) | set(blocked["networks"])
    known = set(Network.objects.filter(pk__in=network_ids).values_list("pk", flat=True))
    if network_ids - known:
        raise refused(f"There is no network {min(network_ids - known)}.")
    both = set(preferred_ids(preferred_providers)) & set(blocked["providers"])
    if both:
        raise refused(f"Provider {min(both)} is both preferred and blocked.")
    both = set(preferred_ids(networks, "network")) & set(blocked["networks"])
    if both:
        raise refused(f"Network {min(both)} is both preferred and blocked.")
    rating = planning.min_provider_rating
    if rating is not None and not (isinstance(rating, int | float) and 0 <= rating <= 5):
        raise refused("The minimum provider rating is between 0 and 5.")
    weight = planning.cost_weight
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 <= weight <= 1:
        raise refused("The time-or-cost weight is between 0 (fastest) and 1 (cheapest).")
    if planning.billing_presentation not in BillingPresentation.values:
        raise refused(
            f"Billing presentation is one of {', '.join(BillingPresentation.values)}, "
            f"not {planning.billing_presentation!r}."
        )
    return {
        "preferred_networks": networks,
        "blocked_providers": blocked["providers"],
        "blocked_networks": blocked["networks"],
        "min_provider_rating": None if rating is None else float(rating),
        "prefer_highest_rated": bool(planning.prefer_highest_rated),
        "cost_weight": float(weight),
        "billing_presentation": planning.billing_presentation,
    }


def profile_planning(profile: SegmentationProfile) -> ProfilePlanning:
    return ProfilePlanning(
        preferred_networks=profile.preferred_networks,
        blocked_providers=profile.blocked_providers,
        blocked_networks=profile.blocked_networks,
        min_provider_rating=profile.min_provider_rating,
        prefer_highest_rated=profile.prefer_highest_rated,
        cost_weight=profile.cost_weight,
        billing_presentation=profile.billing_presentation,
    )


def profile_spec(profile: SegmentationProfile) -> JobSpec:
    return JobSpec(
        method=profile.method,
        param=profile.param,
        bpf_filter=profile.bpf_filter,
        pipeline=profile.pipeline,
        preferred_providers=profile.preferred_providers,
    )


def segmentation_profile_save(
    *,
    organization: Organization,
    name: str,
    spec: JobSpec,
    planning: ProfilePlanning | None = None,
    profile=None,
) -> SegmentationProfile:
    """Create (or update `profile`) a segmentation profile; JobRejected if the spec or the
    planning preferences are bad. Without `planning`, an update keeps the profile's."""
    spec = job_spec_validate(spec)
    profile = profile or SegmentationProfile(organization=organization)
    if planning is None:
        planning = profile_planning(profile)
    fields = profile_planning_validate(planning, list(spec.preferred_providers))
    profile.name = name
    profile.method = spec.method
    profile.param = spec.param
    profile.bpf_filter = spec.bpf_filter
    profile.pipeline = list(spec.pipeline)
    profile.preferred_providers = list(spec.preferred_providers)
    for field, value in fields.items():
        setattr(profile, field, value)
    profile.full_clean()
    profile.save()
    return profile


def job_submit(
    *,
    organization: Organization,
    user: User | None,
    lease_id: int | None,
    chunks: Iterable[bytes],
    size: int | None,
    input_name: str,
    spec: JobSpec | None = None,
    profile: SegmentationProfile | None = None,
    seat_id: int | str | None = None,
) -> Job:
    """Accept a capture for segmentation under a lease, or refuse it. On a lease shared by
    seats the job runs under a seat the caller holds (`seat_id`, else the user's own seat),
    and a seat holder of another organization may run jobs on it (auctions.seats).

    The job's split and pipeline come from `profile` when given, else from `spec`. A refused
    submission raises JobRejected with a stable code and a message, and is recorded as a
    failed job with that reason (without its upload); nothing else changes. An accepted one
    is stored and queued: the split and the rest happen in workers.
    """
    input_name = Path(input_name or "capture").name[:255] or "capture"
    base = {
        "organization": organization,
        "created_by": user if user and user.is_authenticated else None,
        "input_name": input_name,
        "input_bytes": size or 0,
    }
    if profile is not None:
        if profile.organization_id != organization.pk:
            raise _rejected(
                base, "profile_not_found", "This segmentation profile is not your organization's."
            )
        base["profile"] = profile
        spec = profile_spec(profile)
    if spec is None:
        raise _rejected(base, "invalid_split", "Choose a segmentation profile or a split method.")
    base.update(method=spec.method, param=spec.param or "", bpf_filter=spec.bpf_filter or "")
    try:
        spec = job_spec_validate(spec)
    except JobRejected as exc:
        raise _rejected(base, exc.code, exc.message) from None
    base.update(pipeline=list(spec.pipeline), preferred_providers=list(spec.preferred_providers))

    lease = _lease_usable(organization, lease_id, base, user=user, seat_id=seat_id)
    base["lease"] = lease
    limit = settings.JOB_UPLOAD_MAX_BYTES
    if size is not None and size > limit:
        raise _rejected(base, "upload_too_large", _too_large(size, limit))

    job = Job.objects.create(status=JobStatus.QUEUED, **base)
    return _job_input_store(job, chunks, input_name)


def job_submit_planned(
    *,
    service_request,
    plan,
    user: User | None,
    chunks: Iterable[bytes],
    size: int | None,
    input_name: str,
) -> Job:
    """The job of an accepted plan: the request's profile splits the capture, and its segments
    go to the plan's providers in the plan's proportions (see `_job_split`). JobRejected as
    for `job_submit` (a capture over the limit, not a capture); the caller holds the request's
    lock and records the acceptance in the same transaction."""
    profile = service_request.profile
    spec = job_spec_validate(profile_spec(profile))
    input_name = Path(input_name or "capture").name[:255] or "capture"
    limit = settings.JOB_UPLOAD_MAX_BYTES
    if size is not None and size > limit:
        raise JobRejected("upload_too_large", _too_large(size, limit))
    planned = planned_volume_limit(service_request.data_bytes)
    if size is not None and size > planned:
        raise JobRejected("volume_mismatch", _over_plan(size, service_request.data_bytes))
    job = Job.objects.create(
        status=JobStatus.QUEUED,
        organization=service_request.organization,
        created_by=user if user and user.is_authenticated else None,
        plan=plan,
        profile=profile,
        method=spec.method,
        param=spec.param,
        bpf_filter=spec.bpf_filter,
        pipeline=list(spec.pipeline),
        preferred_providers=list(spec.preferred_providers),
        input_name=input_name,
        input_bytes=size or 0,
    )
    return _job_input_store(job, chunks, input_name, planned=service_request.data_bytes)


# A capture may exceed the volume its plan was made for by this share (its file and record
# headers, a slightly larger export); beyond, the plan's times and prices would not hold.
PLANNED_VOLUME_SLACK = 0.02


def planned_volume_limit(data_bytes: int) -> int:
    return int(data_bytes * (1 + PLANNED_VOLUME_SLACK)) + 4096


def _over_plan(size: int | None, data_bytes: int) -> str:
    got = f" ({size:,} bytes)" if size is not None else ""
    return (
        f"The capture{got} is larger than the {data_bytes:,} bytes the plan was made for: "
        "request service for this volume, then accept its plan."
    )


def _job_input_store(
    job: Job, chunks: Iterable[bytes], input_name: str, *, planned: int | None = None
) -> Job:
    """Store the upload of an accepted job and queue it; JobRejected (the job marked failed)
    when it is over the limit (or the volume its plan was made for) or not a capture."""
    limit = settings.JOB_UPLOAD_MAX_BYTES
    if planned is not None:
        limit = min(limit, planned_volume_limit(planned))
    folder = job_dir(job.pk)
    path = folder / "input"
    try:
        stored, sha256 = chunks_store(chunks, path, limit=limit)
    except OSError as exc:
        job_dir_remove(job.pk)
        _job_mark_failed(job, "storage_failed", f"The capture could not be stored: {exc}")
        raise
    except ValueError:
        job_dir_remove(job.pk)
        if planned is not None and limit < settings.JOB_UPLOAD_MAX_BYTES:
            message = _over_plan(None, planned)
            _job_mark_failed(job, "volume_mismatch", message)
            raise JobRejected("volume_mismatch", message, job=job) from None
        _job_mark_failed(job, "upload_too_large", _too_large(None, limit))
        raise JobRejected("upload_too_large", _too_large(None, limit), job=job) from None
    try:
        with capture_open(path) as reader:
            input_format = reader.format
    except CaptureError as exc:
        job_dir_remove(job.pk)
        message = f"{input_name} is not a packet capture (pcap or pcapng): {exc}"
        _job_mark_failed(job, "not_a_capture", message)
        raise JobRejected("not_a_capture", message, job=job) from None
    os.replace(path, folder / f"input.{input_format}")
    Job.objects.filter(pk=job.pk).update(
        input_bytes=stored, input_sha256=sha256, input_format=input_format
    )
    job.refresh_from_db()
    transaction.on_commit(partial(_job_advance_enqueue, job.pk))
    return job


def _too_large(size: int | None, limit: int) -> str:
    got = f" ({size:,} bytes)" if size is not None else ""
    return f"The capture{got} is over the upload limit of {limit:,} bytes."


def _rejected(base: dict, code: str, message: str) -> JobRejected:
    job = Job(status=JobStatus.FAILED, failure_code=code, failure_reason=message, **base)
    job.method = job.method or "connection"
    job.finished_at = timezone.now()
    job.save()
    return JobRejected(code, message, job=job)


def _lease_usable(
    organization: Organization, lease_id, base: dict, *, user=None, seat_id=None
) -> Lease:
    try:
        lease_pk = int(lease_id)
    except (TypeError, ValueError):
        lease_pk = None
    lease = (
        Lease.objects.select_related("block__provider").filter(pk=lease_pk).first()
        if lease_pk is not None
        else None
    )
    if (
        lease is not None
        and lease.winner_id != organization.pk
        and not seat_holder_exists(lease=lease, user=user, organization=organization)
    ):
        lease = None  # another organization's, and no seat on it: as if it did not exist
    if lease is None:
        raise _rejected(
            base,
            "lease_not_found",
            f"Lease {lease_id} does not exist or does not belong to your organization.",
        )
    now = timezone.now()
    base["lease"] = lease
    if lease.ends_at <= now:
        raise _rejected(
            base, "lease_ended", f"Lease {lease.pk} ended at {lease.ends_at:%Y-%m-%d %H:%M} UTC."
        )
    if lease.starts_at > now:
        raise _rejected(
            base,
            "lease_not_started",
            f"Lease {lease.pk} starts at {lease.starts_at:%Y-%m-%d %H:%M} UTC.",
        )
    if lease.block.provider.status == ProviderStatus.SUSPENDED:
        raise _rejected(base, "provider_suspended", f"{lease.block.provider} is suspended.")
    try:
        base["seat"] = seat_for_job(
            lease=lease,
            user=user if user is not None and user.is_authenticated else None,
            organization=organization,
            seat_id=seat_id,
        )
    except SeatRefused as exc:
        raise _rejected(base, exc.code, exc.message) from None
    return lease


def _job_advance_enqueue(job_id: int) -> None:
    from segmentation.tasks import job_advance

    job_advance.using(queue_name=settings.JOBS_QUEUE).enqueue(job_id)


def _work_item_run_enqueue(item_id: int) -> None:
    from segmentation.tasks import work_item_run

    work_item_run.using(queue_name=settings.JOBS_QUEUE).enqueue(item_id)


# --- failure -----------------------------------------------------------------------------------


def _job_mark_failed(job: Job, code: str, reason: str) -> None:
    job.status = JobStatus.FAILED
    job.failure_code = code
    job.failure_reason = reason
    job.finished_at = timezone.now()
    job.seq = F("seq") + 1
    job.save(
        update_fields=[
            "status",
            "failure_code",
            "failure_reason",
            "finished_at",
            "seq",
            "updated_at",
        ]
    )
    job.refresh_from_db(fields=["seq"])
    transaction.on_commit(partial(job_event_publish, job.pk))


@transaction.atomic
def job_fail(*, job_id: int, code: str, reason: str) -> bool:
    """Mark a job failed with its reason (once); its working files are removed."""
    job = Job.objects.select_for_update(of=("self",)).get(pk=job_id)
    if job.ended:
        return False
    _job_mark_failed(job, code, reason)
    transaction.on_commit(partial(job_dir_remove, job.pk))
    transaction.on_commit(
        partial(
            organization_notify,
            job.organization_id,
            text=f"Job {job.pk} ({job.input_name}) failed: {reason}",
            url=f"/jobs/{job.pk}/",
        ),
        robust=True,
    )
    return True


# --- keys ----------------------------------------------------------------------------------


def job_anonymize_key(job: Job) -> bytes:
    """The Crypto-PAn key of a job's anonymize-ip steps: the recipient's own (the same
    pseudonyms in all its jobs), or, when a partner runs the step at its site and so must be
    given the key, a key of this job alone derived from it: the recipient's key never leaves
    the exchange, and a partner can map back no address of any other job."""
    key = recipient_key(job.organization_id)
    if not job.key_per_job:
        return key
    return hmac.new(key, f"job:{job.pk}".encode(), hashlib.sha256).digest()


# --- the split -----------------------------------------------------------------------------


def job_advance(*, job_id: int) -> str:
    """Take a job one phase further: split it, or assemble it once every item is done."""
    job = Job.objects.select_related("lease__block__provider").get(pk=job_id)
    if job.status in (JobStatus.QUEUED, JobStatus.SPLITTING):
        return _job_split(job)
    if job.status in (JobStatus.PROCESSING, JobStatus.ASSEMBLING):
        return _job_assemble(job)
    return job.status


def offered_services(provider: ProviderProfile) -> set[str]:
    return set(
        Offer.objects.filter(provider=provider, is_active=True).values_list("service", flat=True)
    )


def subcontractor_choose(
    *,
    services: set[str],
    exclude: ProviderProfile | None,
    preferred: list[int],
    blocked: Iterable[int] = (),
) -> ProviderProfile | None:
    """The verified provider to subcontract to, never one of `blocked` (the profile's): the
    first of `preferred` offering every service in `services`, else the cheapest (sum of
    their per-GB prices; ties: oldest)."""
    candidates = ProviderProfile.objects.filter(status=ProviderStatus.VERIFIED).exclude(
        pk__in=list(blocked)
    )
    if exclude is not None:
        candidates = candidates.exclude(pk=exclude.pk)
    for service in services:
        candidates = candidates.filter(offers__service=service, offers__is_active=True)
    candidates = list(candidates.distinct())
    by_id = {provider.pk: provider for provider in candidates}
    for provider_id in preferred:
        if provider_id in by_id:
            return by_id[provider_id]
    if not candidates:
        return None
    prices: dict[int, int] = {}
    for offer in Offer.objects.filter(
        provider__in=candidates, service__in=services, is_active=True
    ):
        prices[offer.provider_id] = prices.get(offer.provider_id, 0) + offer.price_per_gb_minor
    return min(candidates, key=lambda p: (prices.get(p.pk, 0), p.applied_at, p.pk))


@dataclass
class _Owner:
    """A provider that segments of a job go to: the lease's, or one line of the plan."""

    provider: ProviderProfile
    lacking: set[str]
    needs: Callable[[bytes, int], bool] | None
    plan_line: PlanLine | None = None
    share: float = 1.0
    assigned: int = 0  # bytes of the segments given to it so far


PLANNED_SEGMENTS_PER_LINE = 8


def _packets_counted(path: Path) -> int:
    """How many packets a capture holds (a pass over its record headers)."""
    with capture_open(path) as reader:
        if reader.format == "pcap":
            return sum(len(bounds) - 1 for _chunk, bounds in reader.pcap_spans())
        return sum(1 for _packet in reader)


class _Dispersal:
    """Which provider each segment of a split goes to, and which packets are subcontracted.

    A lease's job has one owner, the lease's provider. A planned job has one owner per line of
    its plan, and its segments are shared among them in the plan's proportions (`assign`).
    Either way, a packet that needs a service its segment's provider does not offer is routed
    into the subcontracted segment."""

    def __init__(self, owners: list[_Owner], planned: bool):
        self.owners = owners
        self.planned = planned
        self.segment_owner: dict[int, _Owner] = {}

    @classmethod
    def of(cls, job: Job, needed: set[str]) -> _Dispersal:
        if job.plan_id is None:
            providers = [(job.lease.block.provider, None, 1.0)]
        else:
            lines = list(job.plan.lines.select_related("provider").order_by("position"))
            providers = [(line.provider, line, line.fraction) for line in lines]
        owners = []
        offered: dict[int, set[str]] = {}
        for provider, line, share in providers:
            if provider.pk not in offered:
                offered[provider.pk] = offered_services(provider)
            lacking = needed - offered[provider.pk]
            needs = pipeline_needs(job.pipeline, lacking) if lacking else None
            owners.append(_Owner(provider, lacking, needs, line, max(share, 1e-12)))
        return cls(owners, planned=job.plan_id is not None)

    def param(self, job: Job) -> str | None:
        """The split's parameter: the profile's for a lease's job. A planned job needs enough
        segments to share them in the plan's proportions (PLANNED_SEGMENTS_PER_LINE per line
        of the plan): the per-value methods are capped at that many files (not fewer than the
        profile's cap), round-robin deals over at least that many, and file-size and
        packet-count take at most the size that gives that many. bpf-filter makes its two
        segments whatever the plan."""
        if not self.planned:
            return job.param or None
        wanted = PLANNED_SEGMENTS_PER_LINE * len(self.owners)
        given = int(job.param) if job.param and job.method != "bpf-filter" else None
        if job.method in MAX_FILES_METHODS:
            return str(max(given or 0, wanted))
        if job.method == "round-robin":
            return str(max(given, wanted))
        if job.method == "file-size":
            return str(max(MIN_FILE_SIZE, min(given, job.input_bytes // wanted)))
        if job.method == "packet-count":
            packets = _packets_counted(job_dir(job.pk) / f"input.{job.input_format}")
            return str(max(1, min(given, -(-packets // wanted))))
        return job.param or None

    def owner_of(self, number: int) -> _Owner:
        return self.segment_owner.get(number, self.owners[0])

    def route(self) -> Callable[[bytes, int, int], int | None] | None:
        """The first split's route: a lease's job routes the packets its provider cannot
        process to the subcontracted segment; a planned job's first split has none."""
        needs = self.owners[0].needs
        if self.planned or needs is None:
            return None  # no route: the split numbers a chunk at a time
        return lambda data, linktype, _number: SUBCONTRACT_NUMBER if needs(data, linktype) else None

    def assign(self, segments: list) -> None:
        """Give each segment of a planned job's split to a line of the plan: largest segment
        first, each to the line furthest below its planned share of the bytes (ties: the
        earlier line), so the providers carry the data in the plan's proportions as nearly
        as whole segments allow."""
        total = sum(segment.bytes for segment in segments)
        for segment in sorted(segments, key=lambda s: (-s.bytes, s.number)):
            owner = max(self.owners, key=lambda o: o.share * total - o.assigned)
            owner.assigned += segment.bytes
            self.segment_owner[segment.number] = owner

    def routes_planned(self) -> bool:
        return any(owner.needs is not None for owner in self.owners)

    def route_planned(self, data: bytes, linktype: int, number: int) -> int | None:
        """The second split of a planned job: a packet that needs a service its segment's
        provider does not offer goes to the subcontracted segment."""
        needs = self.owner_of(number).needs
        if needs is not None and needs(data, linktype):
            return SUBCONTRACT_NUMBER
        return None


def _job_split(job: Job) -> str:
    with transaction.atomic():
        job = Job.objects.select_for_update(of=("self",)).get(pk=job.pk)
        if job.status not in (JobStatus.QUEUED, JobStatus.SPLITTING):
            return job.status
        job.status = JobStatus.SPLITTING
        job.started_at = job.started_at or timezone.now()
        job.seq = F("seq") + 1
        job.save(update_fields=["status", "started_at", "seq", "updated_at"])
        transaction.on_commit(partial(job_event_publish, job.pk))
    job = Job.objects.select_related("lease__block__provider", "plan").get(pk=job.pk)
    needed = services_required(job.pipeline)
    dispersal = _Dispersal.of(job, needed)
    lacking = set().union(*(owner.lacking for owner in dispersal.owners))
    subcontractor = None
    if lacking:
        lease_provider = job.lease.block.provider if job.lease_id else None
        subcontractor = subcontractor_choose(
            services=needed,
            exclude=lease_provider,
            preferred=preferred_ids(job.preferred_providers),
            blocked=job.profile.blocked_providers if job.profile_id else (),
        )
        if subcontractor is None:
            short = next(owner for owner in dispersal.owners if owner.lacking)
            job_fail(
                job_id=job.pk,
                code="no_subcontractor",
                reason=(
                    f"{short.provider} does not offer {', '.join(sorted(short.lacking))}, and "
                    f"no other verified provider offers all of {', '.join(sorted(needed))}."
                ),
            )
            return JobStatus.FAILED

    folder = job_dir(job.pk)
    final = folder / "split"
    # a folder of this run's own: a second run of the task (its worker's lease ran out while
    # it still worked) never writes into the files of the first
    temporary = folder / f"split.tmp-{uuid.uuid4().hex[:12]}"
    temporary.mkdir(parents=True)

    def split(route):
        return split_capture(
            folder / f"input.{job.input_format}",
            temporary,
            method=job.method,
            param=dispersal.param(job),
            bpf=job.bpf_filter or None,
            index_path=temporary / "index",
            route=route,
        )

    try:
        segments = split(dispersal.route())
        if dispersal.planned:
            # the segments' sizes known, each goes to a line of the plan; then, if a planned
            # provider lacks a service, the split again routes the packets that need it (the
            # method numbers the packets the same way with or without a route)
            dispersal.assign(segments)
            if dispersal.routes_planned():
                for leftover in temporary.iterdir():
                    leftover.unlink()
                segments = split(dispersal.route_planned)
    except CaptureError as exc:
        job_fail(job_id=job.pk, code="bad_capture", reason=f"{job.input_name}: {exc}")
        return JobStatus.FAILED
    except SplitError as exc:
        job_fail(job_id=job.pk, code="split_failed", reason=str(exc))
        return JobStatus.FAILED
    if not segments.packets_read:
        job_fail(job_id=job.pk, code="no_packets", reason=f"{job.input_name} holds no packets.")
        return JobStatus.FAILED
    if not segments:
        job_fail(
            job_id=job.pk,
            code="no_packets",
            reason=f"No packet of {job.input_name} matches the BPF filter '{job.bpf_filter}'.",
        )
        return JobStatus.FAILED
    # each segment's original indices in a file of its own, read by its work item alone
    index = SegmentIndex(temporary / "index")
    for segment in segments:
        indices_write(segment.path.with_suffix(".idx"), index.indices(segment.number))
        record_sizes_write(segment.path, index.sizes(segment.number))
    (temporary / "index").unlink()

    items = []
    for segment in segments:
        subcontracted = segment.number == SUBCONTRACT_NUMBER
        owner = None if subcontracted else dispersal.owner_of(segment.number)
        provider = subcontractor if subcontracted else owner.provider
        items.append(
            WorkItem(
                job=job,
                number=segment.number,
                kind=WorkItemKind.SUBCONTRACT if subcontracted else WorkItemKind.SEGMENT,
                provider=provider,
                plan_line=None if subcontracted else owner.plan_line,
                location=provider.work_location,
                # a segment's provider runs the steps it offers (the packets that need the
                # others were routed to the subcontractor); the subcontractor runs them all
                steps=list(job.pipeline)
                if subcontracted
                else [step for step in job.pipeline if step["service"] not in owner.lacking],
                segment_path=f"{final.name}/{segment.path.name}",
                packets_in=segment.packets,
                bytes_in=segment.bytes,
                sha256_in=file_sha256(segment.path),
            )
        )
    with transaction.atomic():
        locked = Job.objects.select_for_update(of=("self",)).get(pk=job.pk)
        if locked.status != JobStatus.SPLITTING:
            shutil.rmtree(temporary, ignore_errors=True)
            return locked.status
        # under the lock, with the status checked: only the run that records the items
        # puts its split in place
        shutil.rmtree(final, ignore_errors=True)
        os.replace(temporary, final)
        WorkItem.objects.filter(job=locked).delete()
        WorkItem.objects.bulk_create(items)
        locked.key_per_job = any(
            item.location == WorkLocation.PARTNER
            and any(step["service"] == "anonymize-ip" for step in item.steps)
            for item in items
        )
        locked.status = JobStatus.PROCESSING
        locked.packets_total = segments.packets_read
        locked.bytes_total = sum(item.bytes_in for item in items)
        locked.items_total = len(items)
        locked.seq = F("seq") + 1
        locked.save(
            update_fields=[
                "status",
                "packets_total",
                "bytes_total",
                "items_total",
                "key_per_job",
                "seq",
                "updated_at",
            ]
        )
        transaction.on_commit(partial(job_event_publish, job.pk))
        for item in WorkItem.objects.filter(job=locked, location=WorkLocation.EXCHANGE):
            transaction.on_commit(partial(_work_item_run_enqueue, item.pk))
    return JobStatus.PROCESSING


# --- work items ------------------------------------------------------------------------------


def job_rate_mbps(job: Job) -> float:
    """The rate a job is paced to: its lease's block's max rate, or the bandwidth its plan
    reserved (the sum over the plan's lines)."""
    if job.lease_id is not None:
        return job.lease.block.max_rate_mbps
    if job.plan_id is not None:
        return sum(line.bandwidth_mbps for line in job.plan.lines.all())
    return 0.0


def _pace_reserve(job: Job, nbytes: int) -> timezone.datetime:
    """Reserve the time `nbytes` take at the block's max rate after what is reserved already
    (the job row is locked by the caller); return when the reservation ends."""
    now = timezone.now()
    start = max(now, job.pace_until or now)
    rate = job_rate_mbps(job)
    seconds = nbytes * 8 / (rate * 1_000_000) if rate else 0.0
    job.pace_until = start + timedelta(seconds=seconds)
    job.save(update_fields=["pace_until", "updated_at"])
    return job.pace_until


def _sleep_until(moment) -> None:
    remaining = (moment - timezone.now()).total_seconds()
    if remaining > 0:
        time.sleep(remaining)


def _attempts_exhausted(item: WorkItem) -> bool:
    if item.attempts < settings.WORK_MAX_ATTEMPTS:
        return False
    transaction.on_commit(
        partial(
            job_fail,
            job_id=item.job_id,
            code="work_item_failed",
            reason=(
                f"{item.get_kind_display()} {item.number} failed {item.attempts} times"
                + (f"; last: {item.last_error}" if item.last_error else "")
            ),
        )
    )
    return True


def work_item_run(*, item_id: int) -> str:
    """Process one work item in this worker: the pipeline over its segment, paced."""
    with transaction.atomic():
        item = WorkItem.objects.select_for_update(of=("self",)).get(pk=item_id)
        job = (
            Job.objects.select_for_update(of=("self",))
            .select_related("lease__block")
            .get(pk=item.job_id)
        )
        if item.status == WorkItemStatus.DONE or job.status != JobStatus.PROCESSING:
            return item.status
        if _attempts_exhausted(item):
            return "exhausted"
        item.status = WorkItemStatus.RUNNING
        item.attempts += 1
        item.started_at = timezone.now()
        item.worker = task_worker_name()
        item.save(update_fields=["status", "attempts", "started_at", "worker"])
        paced_until = _pace_reserve(job, item.bytes_in)
    folder = job_dir(item.job_id)
    segment = folder / item.segment_path
    try:
        if item.steps:
            # a result file per attempt: a run that lost its lease but still works never
            # writes over the result another run recorded
            result = _result_path(folder, item, segment.suffix)
            packets_out, kept = segment_process(
                segment, result, item.steps, key=job_anonymize_key(job)
            )
            indices_write(
                result.with_suffix(".idx"),
                indices_kept(indices_read(segment.with_suffix(".idx")), kept),
            )
        else:  # nothing to do: the segment is its own result
            result, packets_out = segment, item.packets_in
    except (CaptureError, ProcessingError, OSError) as exc:
        # the same input would fail the same way again: the job fails with the reason
        job_fail(
            job_id=item.job_id,
            code="processing_failed",
            reason=f"{item.get_kind_display()} {item.number}: {exc}",
        )
        return "failed"
    _sleep_until(paced_until)
    _work_item_complete(item.pk, result, packets_out)
    return WorkItemStatus.DONE


def _result_path(folder: Path, item: WorkItem, suffix: str) -> Path:
    results = folder / "results"
    results.mkdir(exist_ok=True)
    return results / f"{item.number:04d}-a{item.attempts}{suffix}"


def _work_item_complete(item_id: int, result: Path, packets_out: int) -> bool:
    """Record a finished item (once): its result, metering, and the job's progress; the last
    one sends the job to assemblage."""
    folder_relative = f"{result.parent.name}/{result.name}"
    size = result.stat().st_size
    sha256 = file_sha256(result)
    with transaction.atomic():
        item = WorkItem.objects.select_for_update(of=("self",)).get(pk=item_id)
        job = Job.objects.select_for_update(of=("self",)).get(pk=item.job_id)
        if item.status == WorkItemStatus.DONE or job.ended:
            return False
        item.status = WorkItemStatus.DONE
        item.result_path = folder_relative
        item.packets_out = packets_out
        item.bytes_out = size
        item.sha256_out = sha256
        item.finished_at = timezone.now()
        item.claim_token_hash = ""
        item.claim_deadline = None
        item.save()
        UsageRecord.objects.create(
            job=job,
            lease_id=job.lease_id,
            provider_id=item.provider_id,
            work_item=item,
            kind=item.kind,
            packets=item.packets_in,
            bytes=item.bytes_in,
        )
        job.items_done = F("items_done") + 1
        job.packets_done = F("packets_done") + item.packets_in
        job.bytes_done = F("bytes_done") + item.bytes_in
        job.seq = F("seq") + 1
        job.save(update_fields=["items_done", "packets_done", "bytes_done", "seq", "updated_at"])
        job.refresh_from_db(fields=["items_done", "items_total"])
        transaction.on_commit(partial(job_event_publish, job.pk))
        if job.items_done == job.items_total:
            transaction.on_commit(partial(_job_advance_enqueue, job.pk))
    return True


# --- partners' claims ----------------------------------------------------------------------


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _partner_provider(api_key: ApiKey) -> ProviderProfile:
    provider = ProviderProfile.objects.filter(organization_id=api_key.organization_id).first()
    if provider is None or provider.status != ProviderStatus.VERIFIED:
        raise WorkRefused("not_a_provider", "Only a verified provider's API key can claim work.")
    return provider


def work_claim(*, api_key: ApiKey) -> tuple[WorkItem, str] | None:
    """Give the provider's partner agent its next work item with a claim token, or None.

    Items waiting, and items whose claim ran out, are claimable (oldest job first). The
    claim lasts WORK_CLAIM_SECONDS; the same item can be claimed again once it expires.
    """
    provider = _partner_provider(api_key)
    now = timezone.now()
    while True:
        with transaction.atomic():
            item = (
                WorkItem.objects.select_for_update(of=("self",), skip_locked=True)
                .filter(
                    provider=provider,
                    location=WorkLocation.PARTNER,
                    job__status=JobStatus.PROCESSING,
                )
                .filter(
                    Q(status=WorkItemStatus.PENDING)
                    | Q(status=WorkItemStatus.CLAIMED, claim_deadline__lt=now)
                )
                .order_by("job__created_at", "job_id", "number")
                .first()
            )
            if item is None:
                return None
            job = (
                Job.objects.select_for_update(of=("self",))
                .select_related("lease__block")
                .get(pk=item.job_id)
            )
            if job.status != JobStatus.PROCESSING:
                continue
            if _attempts_exhausted(item):
                item.status = WorkItemStatus.RUNNING  # out of the queue until the job fails
                item.claim_deadline = None
                item.save(update_fields=["status", "claim_deadline"])
                continue
            token = secrets.token_urlsafe(32)
            item.status = WorkItemStatus.CLAIMED
            item.attempts += 1
            item.claim_token_hash = _token_hash(token)
            item.claimed_by = api_key
            # the base time, plus twice the time the segment takes to send at the block's
            # max rate, down and back up
            # (a planned segment: its path's bandwidth)
            rate = (item.plan_line.bandwidth_mbps if item.plan_line_id else job_rate_mbps(job)) or 1
            transfer = 2 * 2 * item.bytes_in * 8 / (rate * 1_000_000)
            item.claim_deadline = now + timedelta(seconds=settings.WORK_CLAIM_SECONDS + transfer)
            item.started_at = now
            item.save()
            _pace_reserve(job, item.bytes_in)
            return item, token


def work_item_claimed(api_key: ApiKey, item_id: int, token: str) -> WorkItem:
    provider = _partner_provider(api_key)
    item = (
        WorkItem.objects.select_for_update(of=("self",))
        .filter(pk=item_id, provider=provider, location=WorkLocation.PARTNER)
        .first()
    )
    if item is None:
        raise WorkRefused("work_item_not_found", f"Work item {item_id} is not yours.")
    if item.status == WorkItemStatus.DONE:
        raise WorkRefused("work_item_done", f"Work item {item_id} is already done.")
    if not Job.objects.filter(pk=item.job_id, status=JobStatus.PROCESSING).exists():
        raise WorkRefused(
            "claim_lost", f"Job {item.job_id} has ended; work item {item_id} is no longer wanted."
        )
    if (
        item.status != WorkItemStatus.CLAIMED
        or not token
        or not secrets.compare_digest(item.claim_token_hash, _token_hash(str(token)))
    ):
        raise WorkRefused(
            "claim_lost",
            f"This claim on work item {item_id} is not current (it expired and was claimed "
            "again, or was given back).",
        )
    return item


def work_result_accept(
    *,
    api_key: ApiKey,
    item_id: int,
    token: str,
    chunks: Iterable[bytes],
    kept: list[int] | None,
) -> WorkItem:
    """Store a partner's result for a claimed item: a capture in the segment's format (zstd
    compressed or not) and the positions, in the segment, of the packets it kept (all of
    them when `kept` is None). WorkRefused says what is wrong; the claim then stands."""
    with transaction.atomic():
        item = work_item_claimed(api_key, item_id, token)
    folder = job_dir(item.job_id)
    segment = folder / item.segment_path
    result = _result_path(folder, item, segment.suffix)
    upload = temporary_beside(result.with_suffix(".upload"))
    staged = temporary_beside(result)
    try:
        try:
            chunks_store(chunks, upload, limit=settings.JOB_UPLOAD_MAX_BYTES)
        except ValueError as exc:
            raise WorkRefused("upload_too_large", f"The result is too large: {exc}") from None
        if is_zstd(upload):
            try:
                # no service makes a segment larger: a result decompressing to more than its
                # segment (plus room for pcapng descriptions) is refused before it fills a disk
                decompress_file(upload, staged, max_bytes=item.bytes_in + (1 << 20))
            except ProcessingError as exc:
                raise WorkRefused("invalid_result", f"The compressed result: {exc}") from None
        else:
            os.replace(upload, staged)
        packets = _result_checked(staged, segment, item, kept)
        positions = range(item.packets_in) if kept is None else kept
        originals = indices_kept(indices_read(segment.with_suffix(".idx")), positions)
        indices_write(result.with_suffix(".idx"), originals)
        os.replace(staged, result)
    finally:
        upload.unlink(missing_ok=True)
        staged.unlink(missing_ok=True)
    with transaction.atomic():
        work_item_claimed(api_key, item_id, token)  # still ours (re-checked under the lock)
    _work_item_complete(item.pk, result, packets)
    item.refresh_from_db()
    return item


def _result_checked(path: Path, segment: Path, item: WorkItem, kept: list[int] | None) -> int:
    try:
        with capture_open(segment) as original, capture_open(path) as reader:
            if reader.format != original.format:
                raise WorkRefused(
                    "invalid_result",
                    f"The result is {reader.format}; the segment was {original.format}.",
                )
            packets = sum(1 for _ in reader)
    except CaptureError as exc:
        raise WorkRefused(
            "invalid_result", f"The result is not a readable capture: {exc}"
        ) from None
    if kept is None:
        if packets != item.packets_in:
            raise WorkRefused(
                "invalid_result",
                f"The result has {packets} packets, the segment {item.packets_in}: "
                "say which were kept.",
            )
        return packets
    if any(isinstance(p, bool) or not isinstance(p, int) for p in kept):
        raise WorkRefused("invalid_result", "kept is a list of packet positions (integers).")
    if len(kept) != packets:
        raise WorkRefused(
            "invalid_result",
            f"kept lists {len(kept)} positions but the result has {packets} packets.",
        )
    previous = -1
    for position in kept:
        if not previous < position < item.packets_in:
            raise WorkRefused(
                "invalid_result",
                f"kept must be increasing positions below {item.packets_in}; {position} is not.",
            )
        previous = position
    return packets


@transaction.atomic
def work_fail(*, api_key: ApiKey, item_id: int, token: str, reason: str) -> WorkItem:
    """A partner gives a claimed item back; it waits for the next claim (or fails the job
    after WORK_MAX_ATTEMPTS tries)."""
    item = work_item_claimed(api_key, item_id, token)
    item.status = WorkItemStatus.PENDING
    item.claim_token_hash = ""
    item.claim_deadline = None
    item.last_error = (reason or "given back by the partner")[:2000]
    item.save()
    _attempts_exhausted(item)
    return item


def work_claims_expire() -> int:
    """Put items whose claim ran out back in the queue; return how many."""
    now = timezone.now()
    expired = 0
    for item_id in WorkItem.objects.filter(
        status=WorkItemStatus.CLAIMED, claim_deadline__lt=now
    ).values_list("pk", flat=True):
        with transaction.atomic():
            item = (
                WorkItem.objects.select_for_update(of=("self",))
                .filter(pk=item_id, status=WorkItemStatus.CLAIMED, claim_deadline__lt=now)
                .first()
            )
            if item is None:
                continue
            item.status = WorkItemStatus.PENDING
            item.claim_token_hash = ""
            item.claim_deadline = None
            item.last_error = "the partner's claim expired"
            item.save()
            _attempts_exhausted(item)
            expired += 1
    return expired


# --- the reconciler --------------------------------------------------------------------------


def jobs_reconcile(*, idle_seconds: float | None = None) -> int:
    """Queue again the next step of jobs idle for `idle_seconds` (default JOB_STALL_SECONDS):
    a worker killed between a commit and the task it queues after it leaves a job with
    nothing queued. Every step is safe to run twice, so a nudge too many costs nothing.
    Returns how many jobs were nudged."""
    idle = settings.JOB_STALL_SECONDS if idle_seconds is None else idle_seconds
    before = timezone.now() - timedelta(seconds=idle)
    nudged = 0
    stalled = Job.objects.filter(updated_at__lt=before).exclude(status__in=JOB_ENDED)
    for job in stalled.only("pk", "status", "items_done", "items_total"):
        if job.status == JobStatus.PROCESSING and job.items_done < job.items_total:
            waiting = WorkItem.objects.filter(
                job=job, location=WorkLocation.EXCHANGE, status=WorkItemStatus.PENDING
            ).values_list("pk", flat=True)
            for item_id in waiting:
                _work_item_run_enqueue(item_id)
        else:
            _job_advance_enqueue(job.pk)
        Job.objects.filter(pk=job.pk).update(updated_at=timezone.now())
        nudged += 1
    return nudged


# --- assemblage ------------------------------------------------------------------------------


def _job_assemble(job: Job) -> str:
    with transaction.atomic():
        job = Job.objects.select_for_update(of=("self",)).get(pk=job.pk)
        if job.status not in (JobStatus.PROCESSING, JobStatus.ASSEMBLING):
            return job.status
        if job.items_done < job.items_total:
            return job.status
        if job.status != JobStatus.ASSEMBLING:
            job.status = JobStatus.ASSEMBLING
            job.seq = F("seq") + 1
            job.save(update_fields=["status", "seq", "updated_at"])
            transaction.on_commit(partial(job_event_publish, job.pk))
    job = Job.objects.select_related("lease__block__provider").get(pk=job.pk)
    if job.pace_until:
        _sleep_until(job.pace_until)
    folder = job_dir(job.pk)
    items = list(job.items.select_related("provider", "plan_line__path").order_by("number"))
    output = folder / f"output.{job.input_format}"
    staged = temporary_beside(output)
    try:
        with capture_open(folder / f"input.{job.input_format}") as like:
            assembled = assemble(
                [
                    (
                        folder / item.result_path,
                        indices_read((folder / item.result_path).with_suffix(".idx")),
                        record_sizes_read(folder / item.result_path),
                    )
                    for item in items
                ],
                staged,
                like=like,
            )
        os.replace(staged, output)
    except (AssembleError, CaptureError, OSError) as exc:
        staged.unlink(missing_ok=True)
        job_fail(job_id=job.pk, code="assembly_failed", reason=f"Assemblage failed: {exc}")
        return JobStatus.FAILED
    finished = timezone.now()
    sha256 = file_sha256(output)
    manifest = _manifest(job, items, assembled, sha256, finished)
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    with transaction.atomic():
        locked = Job.objects.select_for_update(of=("self",)).get(pk=job.pk)
        if locked.status != JobStatus.ASSEMBLING:
            return locked.status
        locked.status = JobStatus.SUCCEEDED
        locked.output_packets = assembled.packets
        locked.output_bytes = assembled.bytes
        locked.output_sha256 = sha256
        locked.manifest = manifest
        locked.finished_at = finished
        locked.seq = F("seq") + 1
        locked.save()
        if job.lease_id is not None:
            _sla_check(locked, job.lease)
        transaction.on_commit(partial(job_event_publish, job.pk))
        transaction.on_commit(
            partial(
                organization_notify,
                job.organization_id,
                text=f"Job {job.pk} ({job.input_name}) is done: {assembled.packets} packets.",
                url=f"/jobs/{job.pk}/",
            ),
            robust=True,
        )
    for leftover in ("split", "results"):
        shutil.rmtree(folder / leftover, ignore_errors=True)
    return JobStatus.SUCCEEDED


def _iso(moment) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


def _manifest(job: Job, items: list[WorkItem], assembled, sha256: str, finished) -> dict:
    return {
        "job": job.pk,
        "input": {
            "name": job.input_name,
            "format": job.input_format,
            "bytes": job.input_bytes,
            "sha256": job.input_sha256,
        },
        "method": job.method,
        "param": job.param,
        "bpf_filter": job.bpf_filter,
        "pipeline": job.pipeline,
        "lease": job.lease_id,
        "plan": job.plan_id,
        "service_request": job.plan.service_request_id if job.plan_id else None,
        "output": {
            "format": job.input_format,
            "packets": assembled.packets,
            "bytes": assembled.bytes,
            "sha256": sha256,
        },
        "started_at": _iso(job.started_at),
        "finished_at": _iso(finished),
        "dispersal": _dispersal_manifest(job, items),
        "segments": [
            {
                "number": item.number,
                "kind": item.kind,
                "provider": {"id": item.provider_id, "name": item.provider.legal_name},
                "path": (
                    {"id": item.plan_line.path_id, "name": item.plan_line.path.name}
                    if item.plan_line_id
                    else None
                ),
                "location": item.location,
                "packets_in": item.packets_in,
                "bytes_in": item.bytes_in,
                "sha256_in": item.sha256_in,
                "packets": item.packets_out,
                "bytes": item.bytes_out,
                "sha256": item.sha256_out,
                "attempts": item.attempts,
                "started_at": _iso(item.started_at),
                "finished_at": _iso(item.finished_at),
                "seconds": round((item.finished_at - item.started_at).total_seconds(), 3)
                if item.started_at and item.finished_at
                else None,
            }
            for item in items
        ],
    }


def _dispersal_manifest(job: Job, items: list[WorkItem]) -> list[dict] | None:
    """A planned job: each line of its plan, the share planned and the share its segments
    carried (whole segments: near the plan, rarely on it)."""
    if job.plan_id is None:
        return None
    carried: dict[int, int] = {}
    for item in items:
        if item.plan_line_id is not None:
            carried[item.plan_line_id] = carried.get(item.plan_line_id, 0) + item.bytes_in
    total = sum(carried.values()) or 1
    return [
        {
            "provider": {"id": line.provider_id, "name": line.provider.legal_name},
            "path": {"id": line.path_id, "name": line.path.name},
            "planned_fraction": line.fraction,
            "carried_bytes": carried.get(line.pk, 0),
            "carried_fraction": round(carried.get(line.pk, 0) / total, 6),
        }
        for line in job.plan.lines.select_related("provider", "path")
    ]


def _sla_check(job: Job, lease: Lease) -> SlaBreach | None:
    """Record a breach when the job took longer than its bytes need at the block's min rate
    (plus SLA_GRACE_SECONDS for the fixed cost of a job)."""
    block = lease.block
    if not block.min_rate_mbps:
        return None  # nothing guaranteed, nothing to breach
    seconds = (job.finished_at - job.started_at).total_seconds()
    allowed = job.bytes_total * 8 / (block.min_rate_mbps * 1_000_000) + settings.SLA_GRACE_SECONDS
    if seconds <= allowed:
        return None
    measured = job.bytes_total * 8 / 1_000_000 / seconds if seconds > 0 else 0.0
    return SlaBreach.objects.get_or_create(
        job=job,
        defaults={
            "lease": lease,
            "guaranteed_mbps": block.min_rate_mbps,
            "measured_mbps": measured,
            "bytes": job.bytes_total,
            "seconds": seconds,
            "allowed_seconds": allowed,
        },
    )[0]
