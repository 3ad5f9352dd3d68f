"""Job pages: the organization's jobs, a new job with its capture upload, one job's live page
(static/js/job.js follows it over /ws/jobs/<id>/), the segmentation profiles, and downloads
of a finished job's output and manifest. Everything is scoped to the organization the
signed-in user acts for: another organization's job is a 404."""

from pathlib import Path

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import FileResponse, Http404
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt, csrf_protect

from providers.selectors import providers_public
from segmentation.forms import JobForm, ProfileForm
from segmentation.jobfiles import CAPTURE_CONTENT_TYPES, job_dir
from segmentation.models import JobStatus, SlaBreach
from segmentation.selectors import (
    job_items,
    job_of,
    job_progress,
    jobs_of,
    leases_usable,
    profiles_of,
    usage_by_provider,
)
from segmentation.services import JobRejected, job_submit, segmentation_profile_save
from segmentation.uploads import upload_announced_too_large, uploaded_chunks

JOBS_PER_PAGE = 50

# Which field of the new-job form a refusal of `job_submit` is about (else the whole form).
_REJECTION_FIELDS = {
    "lease_not_found": "lease",
    "lease_ended": "lease",
    "lease_not_started": "lease",
    "provider_suspended": "lease",
    "upload_too_large": "capture",
    "not_a_capture": "capture",
    "profile_not_found": "profile",
    "invalid_split": "param",
    "bad_bpf": "bpf_filter",
    "invalid_pipeline": "pipeline",
}
_SPEC_CODES = {"invalid_split", "bad_bpf", "invalid_pipeline"}


def progress_figures(progress: dict) -> str:
    """The progress as words: "2 of 5 segments, 1,200 of 3,000 packets, … bytes" (job.js
    writes the same sentence as the figures change)."""
    return (
        f"{progress['items_done']:,} of {progress['items_total']:,} segments, "
        f"{progress['packets_done']:,} of {progress['packets_total']:,} packets, "
        f"{progress['bytes_done']:,} of {progress['bytes_total']:,} bytes"
    )


def _no_organization(request, title: str):
    return render(request, "segmentation/no_organization.html", {"title": title})


@login_required
def job_list(request):
    if request.organization is None:
        return _no_organization(request, "Jobs")
    page = Paginator(jobs_of(request.organization), JOBS_PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "segmentation/list.html", {"page": page})


def _job_form(request, data=None, files=None) -> JobForm:
    organization = request.organization
    return JobForm(
        data,
        files,
        leases=leases_usable(organization, now=timezone.now()),
        profiles=profiles_of(organization),
        providers=providers_public(),
        max_upload_bytes=settings.JOB_UPLOAD_MAX_BYTES,
    )


def _job_new_render(request, form, *, status=200, refused_upload="", failed_job=None):
    return render(
        request,
        "segmentation/new.html",
        {"form": form, "refused_upload": refused_upload, "failed_job": failed_job},
        status=status,
    )


# The size check comes before anything reads the body, CSRF's check of the posted token
# included: so this view is exempt from the middleware and protects its own form below.
@csrf_exempt
@login_required
def job_new(request):
    if request.organization is None:
        return _no_organization(request, "New job")
    if request.method == "POST":
        announced = upload_announced_too_large(request)
        if announced is not None:
            limit = settings.JOB_UPLOAD_MAX_BYTES
            return _job_new_render(
                request,
                _job_form(request),
                status=413,
                refused_upload=(
                    f"The upload ({announced:,} bytes) is over the limit of {limit:,} bytes for "
                    "a capture, so it was not accepted. Choose a smaller capture, or split it "
                    "into parts before uploading them."
                ),
            )
    return _job_new_checked(request)


@csrf_protect
def _job_new_checked(request):
    if request.method != "POST":
        return _job_new_render(request, _job_form(request))
    form = _job_form(request, request.POST, request.FILES)
    if not form.is_valid():
        return _job_new_render(request, form, status=400)
    upload = form.cleaned_data["capture"]
    profile = None
    if form.cleaned_data["profile"] is not None:
        profile = profiles_of(request.organization).filter(pk=form.cleaned_data["profile"]).first()
        if profile is None:  # deleted since the form was shown
            form.add_error("profile", "This profile no longer exists; choose another.")
            return _job_new_render(request, form, status=400)
    try:
        job = job_submit(
            organization=request.organization,
            user=request.user,
            lease_id=form.cleaned_data["lease"],
            chunks=uploaded_chunks(upload),
            size=upload.size,
            input_name=upload.name,
            spec=None if profile else form.spec(),
            profile=profile,
        )
    except JobRejected as rejection:
        field = _REJECTION_FIELDS.get(rejection.code)
        if profile is not None and rejection.code in _SPEC_CODES:
            field = "profile"
        form.add_error(field, rejection.message)
        return _job_new_render(request, form, status=400, failed_job=rejection.job)
    return redirect("job_detail", pk=job.pk)


def _sla_breach(job) -> SlaBreach | None:
    return SlaBreach.objects.filter(job=job).first()


@login_required
def job_detail(request, pk):
    job = job_of(request.organization, pk) if request.organization else None
    if job is None:
        raise Http404("No job of yours has this number.")
    progress = job_progress(job)
    return render(
        request,
        "segmentation/detail.html",
        {
            "job": job,
            "progress": progress,
            "figures": progress_figures(progress),
            "items": job_items(job),
            "usage": usage_by_provider(job=job),
            "sla_breach": _sla_breach(job),
            "live_config": {
                "job_id": job.pk,
                "ws_path": f"/ws/jobs/{job.pk}/",
                "progress": progress,
            },
        },
    )


@login_required
def profile_list(request):
    organization = request.organization
    if organization is None:
        return _no_organization(request, "Segmentation profiles")
    providers = list(providers_public())
    names = {provider.pk: provider.legal_name for provider in providers}
    form = ProfileForm(request.POST or None, providers=providers)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                profile = segmentation_profile_save(
                    organization=organization, name=form.cleaned_data["name"], spec=form.spec()
                )
            except JobRejected as rejection:
                field = _REJECTION_FIELDS.get(rejection.code)
                form.add_error(field if field in form.fields else None, rejection.message)
            except ValidationError as error:
                for message in error.messages:
                    form.add_error(None, message)
            else:
                messages.success(request, f"Profile “{profile.name}” saved.")
                return redirect("profile_list")
        status = 400
    return render(
        request,
        "segmentation/profiles.html",
        {
            "form": form,
            "profiles": [
                (profile, [names.get(pk, f"provider {pk}") for pk in profile.preferred_providers])
                for profile in profiles_of(organization)
            ],
        },
        status=status,
    )


def _finished_job(request, pk):
    job = job_of(request.organization, pk) if request.organization else None
    if job is None or job.status != JobStatus.SUCCEEDED:
        raise Http404("No finished job of yours has this number.")
    return job


def _job_file(path: Path, *, filename: str, content_type: str) -> FileResponse:
    try:
        handle = open(path, "rb")  # noqa: SIM115 - FileResponse closes it
    except FileNotFoundError:
        raise Http404("This job's files are no longer kept.") from None
    return FileResponse(handle, as_attachment=True, filename=filename, content_type=content_type)


@login_required
def job_output(request, pk):
    job = _finished_job(request, pk)
    stem = job.input_name.rsplit(".", 1)[0] if "." in job.input_name else job.input_name
    return _job_file(
        job_dir(job.pk) / f"output.{job.input_format}",
        filename=f"{stem}-segmented.{job.input_format}",
        content_type=CAPTURE_CONTENT_TYPES[job.input_format],
    )


@login_required
def job_manifest(request, pk):
    job = _finished_job(request, pk)
    return _job_file(
        job_dir(job.pk) / "manifest.json",
        filename=f"job-{job.pk}-manifest.json",
        content_type="application/json",
    )
