"""Partner API for jobs: lease holders submit captures and follow their jobs; providers whose
processing runs at their own site (work location "partner") claim work items, download the
segments, and upload the results. Views parse input, call one service and render the result.

A submission is recorded as a job whether it is accepted or refused (a refused one as a failed
job with the reason), so with an Idempotency-Key the stored answer is the submission's outcome
either way: a retry gets the same job back, accepted or refused, and creates nothing.
"""

import base64
import os
from pathlib import Path

from django.db import IntegrityError, transaction
from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.permissions import BasePermission
from rest_framework.response import Response

from marketplace.api.authentication import ApiKeyPrincipal
from marketplace.api.idempotency import REPLAYED_HEADER, IdempotentCreateMixin, idempotent_create
from marketplace.api.organization import api_organization
from marketplace.api.permissions import ScopedAccess
from marketplace.api.problems import PROBLEM_CONTENT_TYPE, Problem, problem_response
from marketplace.api.schema import (
    IDEMPOTENCY_PARAMETERS,
    ApiAutoSchema,
    problem_example,
    problem_responses,
)
from segmentation import services
from segmentation.api.serializers import (
    JobCreateSerializer,
    JobDetailSerializer,
    JobFilterSerializer,
    JobSerializer,
    SegmentationProfileSerializer,
    WorkClaimSerializer,
    WorkFailSerializer,
    WorkItemSerializer,
    WorkResultSerializer,
    absolute_url,
)
from segmentation.jobfiles import CAPTURE_CONTENT_TYPES, job_dir, temporary_beside
from segmentation.models import Job, JobStatus, SegmentationProfile, WorkItem
from segmentation.processing import compress_file, compression_level
from segmentation.selectors import job_of, jobs_of, profiles_of
from segmentation.services import (
    JobRejected,
    JobSpec,
    ProfilePlanning,
    WorkRefused,
    job_submit,
    segmentation_profile_save,
    work_claim,
    work_fail,
    work_result_accept,
)
from segmentation.uploads import upload_announced_too_large, uploaded_chunks

# HTTP status of each stable code of a refused submission; the others are 422.
REJECTION_STATUS = {
    "lease_not_found": status.HTTP_404_NOT_FOUND,
    "profile_not_found": status.HTTP_404_NOT_FOUND,
    # a lease shared by seats (auctions.seats)
    "seat_not_found": status.HTTP_404_NOT_FOUND,
    "not_your_seat": status.HTTP_403_FORBIDDEN,
    "seat_required": status.HTTP_422_UNPROCESSABLE_ENTITY,
    "lease_ended": status.HTTP_409_CONFLICT,
    "lease_not_started": status.HTTP_409_CONFLICT,
    "provider_suspended": status.HTTP_409_CONFLICT,
    "upload_too_large": status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
}

# HTTP status of each stable code of a refused claim, result or give-back.
REFUSAL_STATUS = {
    "not_a_provider": status.HTTP_403_FORBIDDEN,
    "work_item_not_found": status.HTTP_404_NOT_FOUND,
    "claim_lost": status.HTTP_409_CONFLICT,
    "work_item_done": status.HTTP_409_CONFLICT,
    "upload_too_large": status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
    "invalid_result": status.HTTP_422_UNPROCESSABLE_ENTITY,
}

CLAIM_TOKEN_HEADER = "X-Claim-Token"
CLAIM_TOKEN_QUERY = "claim"


def too_large_problem(length: int) -> Problem:
    return Problem(
        f"The upload ({length:,} bytes) is over the limit; nothing was read.",
        code="upload_too_large",
        status_code=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
    )


def refusal_problem(refusal: WorkRefused) -> Problem:
    return Problem(
        refusal.message,
        code=refusal.code,
        status_code=REFUSAL_STATUS.get(refusal.code, status.HTTP_409_CONFLICT),
    )


class OrganizationRequired(exceptions.PermissionDenied):
    default_code = "organization_required"
    default_detail = "You act for no organization; create or join one first."


class ActsForOrganization(BasePermission):
    """The caller acts for an organization: jobs and profiles are its own."""

    def has_permission(self, request, view):
        if api_organization(request) is None:
            raise OrganizationRequired()
        return True


class ApiKeyRequired(exceptions.PermissionDenied):
    default_code = "api_key_required"
    default_detail = "The work API is for partner agents: send a provider's API key."


class PartnerAgentKey(BasePermission):
    """The caller is a partner agent: it authenticated with an API key (claims are held by
    a key, not by a person)."""

    def has_permission(self, request, view):
        if not isinstance(request.user, ApiKeyPrincipal):
            raise ApiKeyRequired()
        return True


class DownloadNegotiationMixin:
    """Downloads answer in their own media type whatever the client accepts (an agent may
    ask for the capture type); their problems are JSON."""

    download_actions: tuple[str, ...] = ()

    def perform_content_negotiation(self, request, force=False):
        return super().perform_content_negotiation(
            request, force=force or self.action in self.download_actions
        )


# --- Jobs ---------------------------------------------------------------------------------------

PRIVATE = (401, 403)
ORGANIZATION_403 = "`organization_required` (you act for no organization) or `insufficient_scope`."
JOB_ID_PARAMETER = OpenApiParameter("id", int, OpenApiParameter.PATH, description="The job's id.")
JOB_404 = "`job_not_found`: no job of your organization has this id."
CAPTURE_RESPONSE = {
    (200, content_type): OpenApiResponse(OpenApiTypes.BINARY, description="The capture.")
    for content_type in CAPTURE_CONTENT_TYPES.values()
}


JOB_CREATED_EXAMPLE = OpenApiExample(
    "A queued job",
    response_only=True,
    status_codes=["201"],
    value={
        "id": 77,
        "url": "https://segment.exchange/api/v1/jobs/77/",
        "lease": 15,
        "seat": None,
        "profile": 4,
        "method": "connection",
        "param": "",
        "bpf_filter": "tcp port 443",
        "pipeline": [{"service": "anonymize-ip", "where": "udp"}],
        "preferred_providers": [],
        "status": "queued",
        "failure_code": "",
        "failure_reason": "",
        "input": {
            "name": "harbour-2026-11-24.pcap",
            "format": "pcap",
            "bytes": 73400320,
            "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        },
        "progress": None,
        "output_url": None,
        "manifest_url": None,
        "created_at": "2026-11-24T09:12:03Z",
        "started_at": None,
        "finished_at": None,
        "items": [],
        "usage": [],
        "sla_breach": None,
    },
)
JOB_REFUSED_EXAMPLE = problem_example(
    422,
    "not_a_capture",
    "The upload is neither pcap nor pcapng.",
    name="Not a capture",
    instance="/api/v1/jobs/",
    job=78,
    job_url="https://segment.exchange/api/v1/jobs/78/",
)


@extend_schema_view(
    list=extend_schema(
        summary="Your jobs",
        description="Your organization's jobs, newest first.",
        parameters=[JobFilterSerializer],
        responses={200: JobSerializer(many=True)}
        | problem_responses(400, *PRIVATE, s403=ORGANIZATION_403),
    ),
    retrieve=extend_schema(
        summary="One of your jobs",
        description="The job with its progress (the figures of its page and websocket), its "
        "work items, the metering per provider, any SLA breach, and once it has succeeded "
        "the links to its output and manifest.",
        parameters=[JOB_ID_PARAMETER],
        responses={200: JobDetailSerializer}
        | problem_responses(*PRIVATE, 404, s403=ORGANIZATION_403, s404=JOB_404),
    ),
    create=extend_schema(
        summary="Submit a capture",
        description=(
            "Upload a pcap or pcapng capture (multipart) to segment under one of your leases "
            "running now, with one of your segmentation profiles or a split method and a "
            "processing pipeline. The job is queued and runs in the exchange's workers and at "
            "partners; follow it here or on `/ws/jobs/{id}/`.\n\n"
            "Once a lease is shared by seats (`/leases/{id}/seats/`), a job runs under a seat "
            "the caller holds: name it in `seat`, or run it under your own user seat. A seat "
            "holder of another organization submits jobs on the lease the same way; without "
            "a seat it is a 404 `lease_not_found`, as for any lease not yours.\n\n"
            "A refused submission is recorded as a failed job with the reason: the problem "
            "names it in `job` and `job_url`. An upload announcing a size over the limit is "
            "refused before it is read (413 `upload_too_large`, no job). With an "
            "Idempotency-Key, a retry answers with the first outcome, accepted or refused."
        ),
        request={"multipart/form-data": JobCreateSerializer},
        parameters=IDEMPOTENCY_PARAMETERS,
        responses={201: JobDetailSerializer}
        | problem_responses(
            400,
            *PRIVATE,
            404,
            409,
            413,
            422,
            s400="`validation_failed`: a field is missing or malformed (see `errors`).",
            s403="`organization_required` (you act for no organization), "
            "`insufficient_scope`, or `not_your_seat` (the `seat` is someone else's).",
            s404="`lease_not_found` (no lease of yours, nor one you hold a seat on, has this "
            "id), `profile_not_found`, or `seat_not_found` (not an active seat of the lease).",
            s409="`lease_ended`, `lease_not_started`, `provider_suspended` (the lease's "
            "provider), or `idempotency_in_progress`.",
            s413="`upload_too_large`: the capture is over the upload limit.",
            s422="`seat_required` (the lease is shared by seats: name one you hold), "
            "`not_a_capture` (not pcap or pcapng, or empty), `bad_bpf`, `invalid_split` "
            "(the method's parameter), `invalid_pipeline` (a step or the preferred "
            "providers), or `idempotency_key_reused`.",
        ),
        examples=[JOB_CREATED_EXAMPLE, JOB_REFUSED_EXAMPLE],
    ),
    output=extend_schema(
        summary="The output of a job",
        description="The assembled capture, in the input's format and original packet order, "
        "once the job has succeeded. Its SHA-256 is in the header `Repr-Digest`.",
        parameters=[JOB_ID_PARAMETER],
        responses=CAPTURE_RESPONSE
        | problem_responses(
            *PRIVATE,
            404,
            s403=ORGANIZATION_403,
            s404=f"{JOB_404} Or `output_not_ready`: the job has not succeeded (yet).",
        ),
    ),
    manifest=extend_schema(
        summary="The manifest of a job",
        description="Per segment: the provider, where it ran, packets, bytes, SHA-256 and "
        "timings; the input and the output. Once the job has succeeded.",
        parameters=[JOB_ID_PARAMETER],
        responses={200: OpenApiResponse(OpenApiTypes.OBJECT, description="The manifest.")}
        | problem_responses(
            *PRIVATE,
            404,
            s403=ORGANIZATION_403,
            s404=f"{JOB_404} Or `output_not_ready`: the job has not succeeded (yet).",
        ),
    ),
)
class JobViewSet(DownloadNegotiationMixin, mixins.ListModelMixin, viewsets.GenericViewSet):
    """The acting organization's jobs; another organization's job is a 404."""

    schema = ApiAutoSchema()

    permission_classes = [ScopedAccess, ActsForOrganization]
    parser_classes = [MultiPartParser, FormParser]
    serializer_class = JobSerializer
    download_actions = ("output",)

    @property
    def organization(self):
        return api_organization(self.request)

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Job.objects.none()
        return jobs_of(self.organization)

    def filter_queryset(self, queryset):
        if self.action != "list":
            return queryset
        filters = JobFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        if filters.validated_data.get("status"):
            queryset = queryset.filter(status=filters.validated_data["status"])
        return queryset

    def get_object(self) -> Job:
        job = job_of(self.organization, self.kwargs["pk"])
        if job is None:
            raise Problem(
                "No job of your organization has this id.",
                code="job_not_found",
                status_code=status.HTTP_404_NOT_FOUND,
            )
        return job

    def succeeded_job(self) -> Job:
        job = self.get_object()
        if job.status != JobStatus.SUCCEEDED:
            raise Problem(
                f"Job {job.pk} is {job.get_status_display().lower()}: its output and manifest "
                "are there once it has succeeded.",
                code="output_not_ready",
                status_code=status.HTTP_404_NOT_FOUND,
            )
        return job

    def detail_response(self, job: Job, **kwargs) -> Response:
        context = self.get_serializer_context()
        return Response(JobDetailSerializer(job, context=context).data, **kwargs)

    def retrieve(self, request, *args, **kwargs):
        return self.detail_response(self.get_object())

    def create(self, request, *args, **kwargs):
        length = upload_announced_too_large(request)
        if length is not None:
            raise too_large_problem(length)
        # Parse the upload now (to a temporary file for a large one), before the
        # Idempotency-Key's fingerprint, which then hashes the parsed fields.
        request.data  # noqa: B018
        response = idempotent_create(request, create=lambda: self.submit(request))
        if response.get(REPLAYED_HEADER) and response.status_code >= 400:
            response.content_type = PROBLEM_CONTENT_TYPE  # a stored refusal, replayed
        return response

    def submit(self, request) -> Response:
        form = JobCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        values = form.validated_data
        organization = self.organization
        profile = None
        if values.get("profile") is not None:
            profile = profiles_of(organization).filter(pk=values["profile"]).first()
            if profile is None:
                raise Problem(
                    f"Your organization has no segmentation profile {values['profile']}.",
                    code="profile_not_found",
                    status_code=status.HTTP_404_NOT_FOUND,
                )
        upload = values["file"]
        spec = None
        if profile is None:
            spec = JobSpec(
                method=values["method"],
                param=values.get("param", ""),
                bpf_filter=values.get("bpf_filter", ""),
                pipeline=values.get("pipeline", []),
                preferred_providers=values.get("preferred_providers", []),
            )
        try:
            job = job_submit(
                organization=organization,
                user=self.acting_user(),
                lease_id=values["lease"],
                chunks=uploaded_chunks(upload),
                size=upload.size,
                input_name=upload.name,
                spec=spec,
                profile=profile,
                seat_id=values.get("seat"),
            )
        except JobRejected as rejection:
            return self.rejection_response(rejection)
        job = job_of(organization, job.pk)
        return self.detail_response(
            job,
            status=status.HTTP_201_CREATED,
            headers={"Location": absolute_url(request, "job-detail", job.pk)},
        )

    def acting_user(self):
        """Who submits: the signed-in person, or the member who created the API key."""
        principal = self.request.user
        if isinstance(principal, ApiKeyPrincipal):
            return principal.api_key.created_by
        return principal

    def rejection_response(self, rejection: JobRejected) -> Response:
        extra = {}
        if rejection.job is not None and rejection.job.pk is not None:
            extra = {
                "job": rejection.job.pk,
                "job_url": absolute_url(self.request, "job-detail", rejection.job.pk),
            }
        return problem_response(
            status_code=REJECTION_STATUS.get(rejection.code, status.HTTP_422_UNPROCESSABLE_ENTITY),
            code=rejection.code,
            detail=rejection.message,
            instance=self.request.get_full_path(),
            **extra,
        )

    @action(detail=True, methods=["get"], url_path="output")
    def output(self, request, *args, **kwargs):
        job = self.succeeded_job()
        path = job_dir(job.pk) / f"output.{job.input_format}"
        if not path.exists():
            raise Problem(
                f"The output of job {job.pk} is no longer stored.",
                code="output_not_ready",
                status_code=status.HTTP_404_NOT_FOUND,
            )
        stem = Path(job.input_name).stem or "capture"
        response = FileResponse(
            open(path, "rb"),  # noqa: SIM115 - FileResponse closes it
            as_attachment=True,
            filename=f"{stem}-segmented.{job.input_format}",
            content_type=CAPTURE_CONTENT_TYPES.get(job.input_format, "application/octet-stream"),
        )
        if job.output_sha256:
            response["Repr-Digest"] = sha256_digest_header(job.output_sha256)
        return response

    @action(detail=True, methods=["get"], url_path="manifest")
    def manifest(self, request, *args, **kwargs):
        job = self.succeeded_job()
        if job.manifest is None:
            raise Problem(
                f"Job {job.pk} has no manifest stored.",
                code="manifest_not_stored",
                status_code=status.HTTP_404_NOT_FOUND,
            )
        return Response(job.manifest)


def sha256_digest_header(hex_digest: str) -> str:
    """An RFC 9530 `Repr-Digest` value for a SHA-256 given in hex."""
    return f"sha-256=:{base64.b64encode(bytes.fromhex(hex_digest)).decode()}:"


# --- Segmentation profiles ----------------------------------------------------------------------

PROFILE_ID_PARAMETER = OpenApiParameter(
    "id", int, OpenApiParameter.PATH, description="The profile's id."
)


@extend_schema_view(
    list=extend_schema(
        summary="Your segmentation profiles",
        responses={200: SegmentationProfileSerializer(many=True)}
        | problem_responses(*PRIVATE, s403=ORGANIZATION_403),
    ),
    retrieve=extend_schema(
        summary="One of your segmentation profiles",
        parameters=[PROFILE_ID_PARAMETER],
        responses={200: SegmentationProfileSerializer}
        | problem_responses(
            *PRIVATE,
            404,
            s403=ORGANIZATION_403,
            s404="`profile_not_found`: no profile of your organization has this id.",
        ),
    ),
    create=extend_schema(
        summary="Save a segmentation profile",
        description="A split method with its parameter, a BPF filter, a processing pipeline "
        "and the providers preferred for subcontracted work, to submit jobs with by name. "
        "Names are unique within your organization.",
        parameters=IDEMPOTENCY_PARAMETERS,
        responses={201: SegmentationProfileSerializer}
        | problem_responses(
            400,
            *PRIVATE,
            409,
            422,
            s400="`validation_failed` (see `errors`), e.g. a name your organization already has.",
            s403=ORGANIZATION_403,
            s409="`idempotency_in_progress`.",
            s422="`invalid_split`, `bad_bpf`, `invalid_pipeline`, `invalid_preferences` (an "
            "unknown provider or network, one both preferred and blocked, a weight out of "
            "range), or `idempotency_key_reused`.",
        ),
    ),
)
class SegmentationProfileViewSet(
    IdempotentCreateMixin,
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """The acting organization's segmentation profiles; another's is a 404."""

    schema = ApiAutoSchema()

    permission_classes = [ScopedAccess, ActsForOrganization]
    serializer_class = SegmentationProfileSerializer

    @property
    def organization(self):
        return api_organization(self.request)

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return SegmentationProfile.objects.none()
        return profiles_of(self.organization)

    def get_object(self) -> SegmentationProfile:
        try:
            profile = self.get_queryset().filter(pk=int(self.kwargs["pk"])).first()
        except ValueError:
            profile = None
        if profile is None:
            raise Problem(
                "No segmentation profile of your organization has this id.",
                code="profile_not_found",
                status_code=status.HTTP_404_NOT_FOUND,
            )
        return profile

    def perform_create(self, serializer):
        values = serializer.validated_data
        spec = JobSpec(
            method=values["method"],
            param=values["param"],
            bpf_filter=values["bpf_filter"],
            pipeline=values["pipeline"],
            preferred_providers=values["preferred_providers"],
        )
        try:
            with transaction.atomic():
                serializer.instance = segmentation_profile_save(
                    organization=self.organization,
                    name=values["name"],
                    spec=spec,
                    planning=ProfilePlanning(
                        preferred_networks=values["preferred_networks"],
                        blocked_providers=values["blocked_providers"],
                        blocked_networks=values["blocked_networks"],
                        min_provider_rating=values["min_provider_rating"],
                        prefer_highest_rated=values["prefer_highest_rated"],
                        cost_weight=values["cost_weight"],
                        billing_presentation=values["billing_presentation"],
                    ),
                )
        except JobRejected as rejection:
            raise Problem(
                rejection.message,
                code=rejection.code,
                status_code=status.HTTP_422_UNPROCESSABLE_ENTITY,
            ) from None
        except IntegrityError:
            # a concurrent request saved the same name between the check and the insert
            raise serializers.ValidationError(
                {"name": ["Your organization already has a profile of this name."]}
            ) from None


# --- Work (partner agents) ----------------------------------------------------------------------

WORK_ID_PARAMETER = OpenApiParameter(
    "id", int, OpenApiParameter.PATH, description="The work item's id."
)
WORK_403 = (
    "`not_a_provider` (the key's organization is no verified provider), `api_key_required` "
    "(a browser session) or `insufficient_scope` (a read-only key)."
)
WORK_404 = "`work_item_not_found`: no work item of your organization has this id."
WORK_409 = (
    "`claim_lost`: the claim is not current (it expired and the item was claimed again, or it "
    "was given back, or the job ended); `work_item_done`: the item is done (a retried result "
    "that was accepted the first time)."
)
CLAIM_TOKEN_PARAMETERS = [
    OpenApiParameter(
        CLAIM_TOKEN_HEADER,
        str,
        OpenApiParameter.HEADER,
        required=False,
        description="The claim token (or `?claim=`).",
    ),
    OpenApiParameter(
        CLAIM_TOKEN_QUERY,
        str,
        OpenApiParameter.QUERY,
        required=False,
        description="The claim token (or the header `X-Claim-Token`).",
    ),
]
SEGMENT_RESPONSE = {
    (200, content_type): OpenApiResponse(OpenApiTypes.BINARY, description="The segment.")
    for content_type in (*CAPTURE_CONTENT_TYPES.values(), "application/zstd")
}


class WorkViewSet(DownloadNegotiationMixin, viewsets.GenericViewSet):
    """Work items of the calling provider that run at its site, through its partner agent."""

    schema = ApiAutoSchema()

    permission_classes = [ScopedAccess, PartnerAgentKey]
    parser_classes = [JSONParser, MultiPartParser, FormParser]
    serializer_class = WorkItemSerializer
    download_actions = ("input",)

    def get_queryset(self):
        return WorkItem.objects.none()  # items are reached through the services only

    def item_id(self) -> int:
        try:
            return int(self.kwargs["pk"])
        except ValueError:
            raise refusal_problem(
                WorkRefused("work_item_not_found", f"Work item {self.kwargs['pk']} is not yours.")
            ) from None

    @extend_schema(
        summary="Claim the next work item",
        description=(
            "For providers whose processing runs at their own site. Gives the oldest waiting "
            "item with a claim token, valid until `claim_deadline`; after it the item may be "
            "claimed again and the token stops working. 204 when nothing is waiting: poll "
            "again later. Download the segment from `download_url`, run `steps` on it, and "
            "upload the result to `result_url`, or give the item back at `fail_url`."
        ),
        request=None,
        responses={
            200: WorkClaimSerializer,
            204: OpenApiResponse(description="Nothing is waiting."),
        }
        | problem_responses(401, 403, s403=WORK_403),
    )
    @action(detail=False, methods=["post"], url_path="claim")
    def claim(self, request, *args, **kwargs):
        try:
            claimed = work_claim(api_key=request.auth)
        except WorkRefused as refusal:
            raise refusal_problem(refusal) from None
        if claimed is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        item, token = claimed
        context = {**self.get_serializer_context(), "claim_token": token}
        return Response(WorkClaimSerializer(item, context=context).data)

    @extend_schema(
        summary="Download a claimed segment",
        description="The segment in its format, zstd-compressed when the claim says "
        "`compressed`. Needs the current claim token.",
        parameters=[WORK_ID_PARAMETER, *CLAIM_TOKEN_PARAMETERS],
        responses=SEGMENT_RESPONSE
        | problem_responses(401, 403, 404, 409, s403=WORK_403, s404=WORK_404, s409=WORK_409),
    )
    @action(detail=True, methods=["get"], url_path="input")
    def input(self, request, *args, **kwargs):
        token = request.headers.get(CLAIM_TOKEN_HEADER) or request.query_params.get(
            CLAIM_TOKEN_QUERY, ""
        )
        try:
            with transaction.atomic():
                # the same check as a result's: this key's provider holds the current claim
                item = services.work_item_claimed(request.auth, self.item_id(), token)
        except WorkRefused as refusal:
            raise refusal_problem(refusal) from None
        segment = job_dir(item.job_id) / item.segment_path
        if not segment.exists():
            raise refusal_problem(job_ended_refusal(item))
        level = compression_level(item.steps)
        if level is None:
            path, content_type = segment, CAPTURE_CONTENT_TYPES.get(segment.suffix[1:])
        else:
            path, content_type = segment_compressed(segment, level), "application/zstd"
        return FileResponse(
            open(path, "rb"),
            as_attachment=True,
            filename=f"job-{item.job_id}-{path.name}",
            content_type=content_type or "application/octet-stream",
        )

    @extend_schema(
        summary="Upload the result of a claimed item",
        description=(
            "The processed segment in the segment's format (zstd-compressed or not) and, when "
            "packets were dropped, `kept`: the positions in the segment of the packets the "
            "result holds. Safe to retry: once accepted, a repeat is a 409 `work_item_done`. "
            "A refused result leaves the claim as it was, to upload a corrected one."
        ),
        parameters=[WORK_ID_PARAMETER],
        request={"multipart/form-data": WorkResultSerializer},
        responses={200: WorkItemSerializer}
        | problem_responses(
            400,
            401,
            403,
            404,
            409,
            413,
            422,
            s403=WORK_403,
            s404=WORK_404,
            s409=WORK_409,
            s413="`upload_too_large`.",
            s422="`invalid_result`: not a capture, another format than the segment's, a "
            "packet count `kept` does not match, or `kept` not increasing positions.",
        ),
    )
    @action(detail=True, methods=["post"], url_path="result")
    def result(self, request, *args, **kwargs):
        length = upload_announced_too_large(request)
        if length is not None:
            raise too_large_problem(length)
        form = WorkResultSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        values = form.validated_data
        try:
            item = work_result_accept(
                api_key=request.auth,
                item_id=self.item_id(),
                token=values["claim_token"],
                chunks=uploaded_chunks(values["file"]),
                kept=values["kept"],
            )
        except WorkRefused as refusal:
            raise refusal_problem(refusal) from None
        return Response(WorkItemSerializer(item).data)

    @extend_schema(
        summary="Give a claimed item back",
        description="The item waits for the next claim (the job fails once an item has been "
        "tried too often). Safe to retry: a repeat is a 409 `claim_lost`.",
        parameters=[WORK_ID_PARAMETER],
        request=WorkFailSerializer,
        responses={200: WorkItemSerializer}
        | problem_responses(400, 401, 403, 404, 409, s403=WORK_403, s404=WORK_404, s409=WORK_409),
    )
    @action(detail=True, methods=["post"], url_path="fail")
    def fail(self, request, *args, **kwargs):
        form = WorkFailSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            item = work_fail(
                api_key=request.auth,
                item_id=self.item_id(),
                token=form.validated_data["claim_token"],
                reason=form.validated_data["reason"],
            )
        except WorkRefused as refusal:
            raise refusal_problem(refusal) from None
        return Response(WorkItemSerializer(item).data)


def job_ended_refusal(item: WorkItem) -> WorkRefused:
    return WorkRefused(
        "claim_lost",
        f"Job {item.job_id} of work item {item.pk} has ended; the item is no longer wanted.",
    )


def segment_compressed(segment: Path, level: int) -> Path:
    """The segment as zstd at `level`, made once beside it (and removed with the split)."""
    compressed = segment.with_name(f"{segment.name}.{level}.zst")
    if not compressed.exists():
        staged = temporary_beside(compressed)
        try:
            compress_file(segment, staged, level)
            os.replace(staged, compressed)
        finally:
            staged.unlink(missing_ok=True)
    return compressed
