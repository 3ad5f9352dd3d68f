"""Job pages: the organization's jobs, a new job with its capture upload, one job's live page
(static/js/job.js follows it over /ws/jobs/<id>/), the segmentation profiles, and downloads
of a finished job's output and manifest. Service request pages: a recipient's requests, a new
one, a request with its availability messages, plan (drawn in SVG), negotiation and the
accept form; a provider's view of a request sent to it, with its answer and quote forms; the
client devices. Everything is scoped to the organization the signed-in user acts for:
another organization's job or request is a 404."""

from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db import transaction
from django.forms import TypedChoiceField
from django.http import FileResponse, Http404
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt, csrf_protect

from auctions.seats import seats_held
from marketplace.selectors import client_devices_of
from marketplace.services import client_device_register, client_device_remove
from providers.models import RoutingPath
from providers.selectors import provider_of, providers_public
from segmentation.forms import (
    AcceptForm,
    AvailabilityForm,
    ClientDeviceForm,
    JobForm,
    NegotiationForm,
    ProfileForm,
    QuoteForm,
    ServiceRequestForm,
)
from segmentation.jobfiles import CAPTURE_CONTENT_TYPES, job_dir
from segmentation.models import Job, JobStatus, SlaBreach
from segmentation.selectors import (
    availability_of,
    job_items,
    job_of,
    job_progress,
    jobs_of,
    leases_usable,
    negotiation_standing,
    networks_public,
    plan_drawing,
    profile_summary,
    profiles_of,
    service_request_visible,
    service_requests_of,
    service_requests_received,
    usage_by_provider,
)
from segmentation.service_requests import (
    PathOffer,
    RequestRefused,
    RequestSpec,
    availability_submit,
    negotiation_open,
    plan_accept,
    plan_current,
    quote_submit,
    service_request_cancel,
    service_request_create,
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
    "seat_required": "seat",
    "seat_not_found": "seat",
    "not_your_seat": "seat",
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
    now = timezone.now()
    seats = list(seats_held(user=request.user, organization=organization, now=now))
    # its own leases, and those it holds a seat on (e.g. a buying group's)
    leases = list(leases_usable(organization, now=now, user=request.user))
    form = JobForm(
        data,
        files,
        leases=leases,
        profiles=profiles_of(organization),
        providers=providers_public(),
        max_upload_bytes=settings.JOB_UPLOAD_MAX_BYTES,
    )
    if seats:
        form.fields["seat"] = TypedChoiceField(
            label="Seat",
            coerce=int,
            empty_value=None,
            required=False,
            choices=[("", "None: my own user seat, if the lease is shared by seats")]
            + [(seat.pk, f"Lease {seat.lease_id}: seat of {seat.label}") for seat in seats],
            help_text="Only for a lease shared by seats: the seat the job runs under.",
        )
    return form


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
            seat_id=form.cleaned_data.get("seat"),
        )
    except JobRejected as rejection:
        field = _REJECTION_FIELDS.get(rejection.code)
        if profile is not None and rejection.code in _SPEC_CODES:
            field = "profile"
        form.add_error(field if field in form.fields else None, rejection.message)
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
    networks = list(networks_public())
    network_names = {network.pk: network.name for network in networks}
    form = ProfileForm(request.POST or None, providers=providers, networks=networks)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                profile = segmentation_profile_save(
                    organization=organization,
                    name=form.cleaned_data["name"],
                    spec=form.spec(),
                    planning=form.planning(),
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
                profile_summary(profile, names, network_names)
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


# --- service requests ----------------------------------------------------------------------------


@login_required
def service_request_list(request):
    organization = request.organization
    if organization is None:
        return _no_organization(request, "Service requests")
    provider = provider_of(organization=organization)
    return render(
        request,
        "segmentation/requests/list.html",
        {
            "mine": service_requests_of(organization)[:100] if organization.is_recipient else [],
            "received": service_requests_received(organization)[:100] if provider else [],
            "provider": provider,
        },
    )


@login_required
def service_request_new(request):
    organization = request.organization
    if organization is None:
        return _no_organization(request, "New service request")
    profiles = list(profiles_of(organization))
    form = ServiceRequestForm(
        request.POST or None,
        profiles=profiles,
        devices=client_devices_of(organization=organization),
    )
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            values = form.cleaned_data
            device = None
            if values["device"] is not None:
                device = client_devices_of(organization=organization).filter(pk=values["device"])
                device = device.first()
            spec = RequestSpec(
                profile=next(p for p in profiles if p.pk == values["profile"]),
                data_bytes=values["data_bytes"],
                deadline=values["deadline"],
                services=values["services"] or None,
                device=device,
                price_limit_minor=values["price_limit_minor"],
                currency=values["currency"],
                sla_min_rate_mbps=values["sla_min_rate_mbps"],
                negotiate=values["negotiate"],
            )
            try:
                with transaction.atomic():
                    service_request = service_request_create(
                        organization=organization, user=request.user, spec=spec
                    )
            except RequestRefused as refusal:
                form.add_error(_REQUEST_FIELDS.get(refusal.code), refusal.message)
            else:
                messages.success(
                    request,
                    f"Request {service_request.pk} sent to "
                    f"{service_request.broadcast_to.count()} eligible providers.",
                )
                return redirect("service_request_detail", pk=service_request.pk)
    return render(
        request,
        "segmentation/requests/new.html",
        {"form": form, "has_profiles": bool(profiles)},
        status=status,
    )


_REQUEST_FIELDS = {
    "deadline_past": "deadline",
    "invalid_services": "services",
    "invalid_price_limit": "price_limit",
    "invalid_sla": "sla_min_rate_mbps",
    "invalid_volume": "volume",
}


@login_required
@csrf_protect
def service_request_detail(request, pk):
    organization = request.organization
    service_request = service_request_visible(organization, pk)
    if service_request is None:
        raise Http404("No service request of yours, nor sent to you, has this id.")
    if service_request.organization_id == organization.pk:
        return _request_for_maker(request, service_request)
    return _request_for_provider(request, service_request)


def _request_for_maker(request, service_request):
    forms = {
        "negotiation": NegotiationForm(),
        "accept": AcceptForm(),
    }
    status = 200
    if request.method == "POST":
        status = 400
        action = request.POST.get("action")
        try:
            if action == "negotiate":
                forms["negotiation"] = form = NegotiationForm(request.POST)
                if form.is_valid():
                    with transaction.atomic():
                        negotiation_open(
                            service_request=service_request,
                            closes_at=timezone.now()
                            + timedelta(minutes=form.cleaned_data["minutes"]),
                        )
                    messages.success(request, "The providers were asked for better quotes.")
                    return redirect("service_request_detail", pk=service_request.pk)
            elif action == "accept":
                length = upload_announced_too_large(request)
                if length is not None:
                    raise RequestRefused(
                        "upload_too_large", f"The capture ({length:,} bytes) is over the limit."
                    )
                forms["accept"] = form = AcceptForm(request.POST, request.FILES)
                if form.is_valid():
                    upload = form.cleaned_data["capture"]
                    job = plan_accept(
                        service_request=service_request,
                        user=request.user,
                        chunks=uploaded_chunks(upload),
                        size=upload.size,
                        input_name=upload.name,
                        plan_id=form.cleaned_data["plan"],
                    )
                    messages.success(request, f"Plan accepted: job {job.pk} started.")
                    return redirect("job_detail", pk=job.pk)
            elif action == "cancel":
                service_request_cancel(service_request=service_request)
                messages.success(request, f"Request {service_request.pk} cancelled.")
                return redirect("service_request_detail", pk=service_request.pk)
        except RequestRefused as refusal:
            messages.error(request, refusal.message)
    service_request.refresh_from_db()
    plan = None
    plan_error = ""
    try:
        plan = plan_current(service_request=service_request)
    except RequestRefused as refusal:
        plan_error = refusal.message
    negotiation = service_request.negotiations.order_by("-opened_at", "-pk").first()
    job = Job.objects.filter(plan__service_request=service_request).first()
    return render(
        request,
        "segmentation/requests/detail.html",
        {
            "service_request": service_request,
            "is_maker": True,
            "now": timezone.now(),
            "messages_received": availability_of(service_request, request.organization),
            "plan": plan,
            "plan_error": plan_error,
            "drawing": plan_drawing(plan) if plan is not None and plan.feasible else None,
            "negotiation": negotiation,
            "standing": negotiation_standing(negotiation) if negotiation else None,
            "job": job,
            "forms": forms,
            "open": service_request.status == "open" and service_request.deadline > timezone.now(),
        },
        status=status,
    )


def _request_for_provider(request, service_request):
    provider = provider_of(organization=request.organization)
    currency = service_request.currency
    paths = RoutingPath.objects.filter(provider=provider).order_by("name")
    answer = AvailabilityForm(paths=paths, currency=currency)
    quote = QuoteForm(currency=currency)
    status = 200
    if request.method == "POST":
        status = 400
        try:
            if request.POST.get("action") == "answer":
                answer = AvailabilityForm(request.POST, paths=paths, currency=currency)
                if answer.is_valid():
                    values = answer.cleaned_data
                    with transaction.atomic():
                        availability_submit(
                            provider=provider,
                            service_request=service_request,
                            paths=[PathOffer(pk, bandwidth) for pk, bandwidth in values["offers"]],
                            price_per_gb_minor=values["price_per_gb_minor"],
                            currency=currency,
                            valid_until=timezone.now() + timedelta(minutes=values["valid_minutes"]),
                        )
                    messages.success(request, "Your availability was sent.")
                    return redirect("service_request_detail", pk=service_request.pk)
            elif request.POST.get("action") == "quote":
                quote = QuoteForm(request.POST, currency=currency)
                if quote.is_valid():
                    with transaction.atomic():
                        quote_submit(
                            provider=provider,
                            service_request=service_request,
                            price_per_gb_minor=quote.cleaned_data["price"],
                        )
                    messages.success(request, "Your quote was recorded.")
                    return redirect("service_request_detail", pk=service_request.pk)
        except RequestRefused as refusal:
            messages.error(request, refusal.message)
    negotiation = service_request.negotiations.order_by("-opened_at", "-pk").first()
    standing = negotiation_standing(negotiation) if negotiation else None
    return render(
        request,
        "segmentation/requests/detail.html",
        {
            "service_request": service_request,
            "is_maker": False,
            "messages_received": availability_of(service_request, request.organization),
            "negotiation": negotiation,
            "lowest_quote": standing["lowest"] if standing else None,
            "invited": negotiation is not None
            and negotiation.status == "open"
            and negotiation.invited.filter(pk=provider.pk).exists(),
            "answer_form": answer,
            "quote_form": quote,
            "open": service_request.status == "open" and service_request.deadline > timezone.now(),
        },
        status=status,
    )


@login_required
def client_device_list(request):
    organization = request.organization
    if organization is None:
        return _no_organization(request, "Client devices")
    form = ClientDeviceForm(request.POST or None)
    status = 200
    if request.method == "POST":
        status = 400
        if request.POST.get("remove"):
            try:
                pk = int(request.POST["remove"])
            except ValueError:
                raise Http404("No such device.") from None
            device = client_devices_of(organization=organization).filter(pk=pk).first()
            if device is None:
                raise Http404("No such device.")
            try:
                client_device_remove(device=device)
            except ValidationError as error:
                messages.error(request, " ".join(error.messages))
            else:
                messages.success(request, f"{device.name} removed.")
            return redirect("client_device_list")
        if form.is_valid():
            try:
                device = client_device_register(organization=organization, **form.cleaned_data)
            except ValidationError as error:
                if hasattr(error, "error_dict"):
                    for field, errors in error.message_dict.items():
                        form.add_error(field if field in form.fields else None, errors)
                else:
                    form.add_error(None, error.messages)
            else:
                messages.success(request, f"{device.name} registered.")
                return redirect("client_device_list")
    return render(
        request,
        "segmentation/requests/devices.html",
        {"form": form, "devices": client_devices_of(organization=organization)},
        status=status,
    )
