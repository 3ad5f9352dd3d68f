"""Shapes of jobs, segmentation profiles and work items in the partner API.

A job's representation carries the same progress figures as its page and its websocket
(`job_progress`), with links to the API's own downloads instead of the pages'.
"""

import json

from django.core.exceptions import ObjectDoesNotExist
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from marketplace.api.problems import RULE
from marketplace.api.strict import StrictJsonTypes
from providers.models import WorkLocation
from segmentation.models import (
    METHOD_CHOICES,
    BillingPresentation,
    Job,
    JobStatus,
    SegmentationProfile,
    SlaBreach,
    WorkItem,
    WorkItemKind,
    WorkItemStatus,
)
from segmentation.processing import (
    ProcessingError,
    compression_level,
    services_required,
)
from segmentation.selectors import job_items, job_progress, usage_by_provider
from segmentation.services import job_anonymize_key

# Largest id a BigAutoField holds on every supported database.
ID_MAX = 2**63 - 1


def absolute_url(request, name: str, *args) -> str:
    """The URL of a named route, absolute when there is a request to build it from."""
    path = reverse(name, args=args)
    return request.build_absolute_uri(path) if request is not None else path


_JSON_SPACE = "[ \\t\\n\\r]*"
_JSON_NATURAL = "(?:0|[1-9][0-9]*)"
# a JSON list of whole numbers from 0 (`[0, 1, 4]`), as text
JSON_POSITIONS_PATTERN = (
    f"^{_JSON_SPACE}\\[{_JSON_SPACE}(?:{_JSON_NATURAL}{_JSON_SPACE}"
    f"(?:,{_JSON_SPACE}{_JSON_NATURAL}{_JSON_SPACE})*)?\\]{_JSON_SPACE}$"
)


_JSON_STRING = '"(?:[^"\\\\\\x00-\\x1f]|\\\\["\\\\/bfnrt]|\\\\u[0-9a-fA-F]{4})*"'
_JSON_SCALAR = (
    f"(?:{_JSON_STRING}|-?(?:0|[1-9][0-9]*)(?:\\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|true|false|null)"
)
_JSON_MEMBER = f"{_JSON_STRING}{_JSON_SPACE}:{_JSON_SPACE}{_JSON_SCALAR}"
_JSON_OBJECT = (
    f"\\{{{_JSON_SPACE}(?:{_JSON_MEMBER}{_JSON_SPACE}"
    f"(?:,{_JSON_SPACE}{_JSON_MEMBER}{_JSON_SPACE})*)?\\}}"
)
_JSON_ITEM = f"(?:{_JSON_SCALAR}|{_JSON_OBJECT})"
# a JSON list of values and flat objects (`[{"service": "compress"}, 7]`), as text
JSON_FLAT_LIST_PATTERN = (
    f"^{_JSON_SPACE}\\[{_JSON_SPACE}(?:{_JSON_ITEM}{_JSON_SPACE}"
    f"(?:,{_JSON_SPACE}{_JSON_ITEM}{_JSON_SPACE})*)?\\]{_JSON_SPACE}$"
)


@extend_schema_field(OpenApiTypes.STR)
class JsonListField(serializers.Field):
    """A JSON list sent as text: a form field of a multipart upload (which has no JSON
    types), or a small JSON file in the same field when the list is long."""

    default_error_messages = {
        "invalid": "Send JSON text: {error}.",
        "not_a_list": "Send a JSON list, e.g. {example}.",
    }

    def __init__(self, *, example: str, json_text_pattern: str | None = None, **kwargs):
        self.example = example
        # documents which text is accepted (marketplace.api.schema.ApiAutoSchema)
        self.json_text_pattern = json_text_pattern
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if isinstance(data, list):
            return data
        if hasattr(data, "read"):  # sent as a file part
            data = data.read()
        try:
            value = json.loads(data)
        except (TypeError, ValueError) as error:
            self.fail("invalid", error=error)
        if not isinstance(value, list):
            self.fail("not_a_list", example=self.example)
        return value

    def to_representation(self, value):
        return json.dumps(value)


# --- Jobs ---------------------------------------------------------------------------------------

SPEC_FIELDS = ("method", "param", "bpf_filter", "pipeline", "preferred_providers")


class JobCreateSerializer(serializers.Serializer):
    """A capture to segment under a lease, with a saved profile or a split method and pipeline."""

    file = serializers.FileField(
        allow_empty_file=True, help_text="The capture: pcap (micro- or nanosecond) or pcapng."
    )
    lease = serializers.IntegerField(
        min_value=1, max_value=ID_MAX, help_text="Your lease to run the job under, running now."
    )
    seat = serializers.IntegerField(
        min_value=1,
        max_value=ID_MAX,
        required=False,
        help_text="On a lease shared by seats: the id of the seat you hold to run the job under "
        "(see `/leases/{id}/seats/`); without it, your own user seat. A seat holder of another "
        "organization runs jobs on the lease this way.",
    )
    profile = serializers.IntegerField(
        min_value=1,
        max_value=ID_MAX,
        required=False,
        help_text="One of your segmentation profiles; instead of `method` and the rest.",
    )
    method = serializers.ChoiceField(
        choices=METHOD_CHOICES,
        required=False,
        help_text="The split method (PcapSplitter's); required without `profile`.",
    )
    param = serializers.CharField(
        max_length=200,
        required=False,
        allow_blank=True,
        help_text="The split method's parameter, e.g. the packet count of `packet-count`.",
    )
    bpf_filter = serializers.CharField(
        max_length=1000,
        required=False,
        allow_blank=True,
        help_text="Only packets this BPF expression matches are split.",
    )
    pipeline = JsonListField(
        example='[{"service": "anonymize-ip", "where": "udp"}, {"service": "strip-payload"}]',
        json_text_pattern=JSON_FLAT_LIST_PATTERN,
        required=False,
        help_text='Processing steps as JSON text, e.g. `[{"service": "strip-payload"}]`; a '
        'step with `"where": "<BPF>"` applies only to the packets it matches.',
    )
    preferred_providers = JsonListField(
        example="[12, 7]",
        json_text_pattern=JSON_FLAT_LIST_PATTERN,
        required=False,
        help_text="Provider ids (or `{provider, weight}` objects), in order of preference for "
        "subcontracted work, as JSON text.",
    )

    def validate(self, attrs):
        given = [field for field in SPEC_FIELDS if attrs.get(field) not in (None, "", [])]
        if attrs.get("profile") is not None and given:
            raise serializers.ValidationError(
                {
                    "profile": f"Give a profile or a split method, not both (also given: "
                    f"{', '.join(given)})."
                },
                code=RULE,  # fields that exclude each other: a 422
            )
        if attrs.get("profile") is None and not attrs.get("method"):
            raise serializers.ValidationError(
                {"method": "Choose a segmentation profile or a split method."}, code=RULE
            )
        return attrs


class JobFilterSerializer(serializers.Serializer):
    """The filters of the job list, read from the query string."""

    status = serializers.ChoiceField(
        choices=JobStatus.choices, required=False, help_text="Only jobs in this status."
    )


class JobInputSerializer(serializers.Serializer):
    """The uploaded capture."""

    name = serializers.CharField(source="input_name")
    format = serializers.CharField(
        source="input_format", help_text="pcap or pcapng; empty when the upload was refused."
    )
    bytes = serializers.IntegerField(source="input_bytes")
    sha256 = serializers.CharField(source="input_sha256", help_text="Empty when refused.")


class JobProgressSerializer(serializers.Serializer):
    """The figures the job page, its websocket and the API share (`seq` orders updates)."""

    id = serializers.IntegerField()
    seq = serializers.IntegerField(help_text="Number of the job's last change.")
    status = serializers.CharField()
    status_display = serializers.CharField()
    percent = serializers.IntegerField(help_text="Share of the segments' bytes processed.")
    items_total = serializers.IntegerField()
    items_done = serializers.IntegerField()
    packets_total = serializers.IntegerField()
    packets_done = serializers.IntegerField()
    bytes_total = serializers.IntegerField()
    bytes_done = serializers.IntegerField()
    output_packets = serializers.IntegerField()
    output_bytes = serializers.IntegerField()
    output_sha256 = serializers.CharField()
    failure_code = serializers.CharField()
    failure_reason = serializers.CharField()
    output_url = serializers.URLField(allow_null=True)
    manifest_url = serializers.URLField(allow_null=True)


class ProviderRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class WorkItemSerializer(serializers.ModelSerializer):
    """One segment of a job and who processes it, where; with its input and result."""

    job = serializers.IntegerField(source="job_id")
    kind = serializers.ChoiceField(choices=WorkItemKind.choices)
    provider = serializers.SerializerMethodField()
    location = serializers.ChoiceField(choices=WorkLocation.choices)
    status = serializers.ChoiceField(choices=WorkItemStatus.choices)

    class Meta:
        model = WorkItem
        fields = [
            "id",
            "job",
            "number",
            "kind",
            "provider",
            "location",
            "status",
            "attempts",
            "packets_in",
            "bytes_in",
            "sha256_in",
            "packets_out",
            "bytes_out",
            "sha256_out",
            "claim_deadline",
            "last_error",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields

    @extend_schema_field(ProviderRefSerializer)
    def get_provider(self, item: WorkItem) -> dict:
        return {"id": item.provider_id, "name": item.provider.legal_name}


class JobUsageSerializer(serializers.Serializer):
    """Metered packets and bytes of one provider (and kind of work) in the job."""

    provider = serializers.SerializerMethodField()
    lease = serializers.IntegerField(source="lease_id")
    kind = serializers.ChoiceField(choices=WorkItemKind.choices)
    packets = serializers.IntegerField()
    bytes = serializers.IntegerField()
    items = serializers.IntegerField(help_text="Work items metered.")

    @extend_schema_field(ProviderRefSerializer)
    def get_provider(self, usage: dict) -> dict:
        return {"id": usage["provider_id"], "name": usage["provider__legal_name"]}


class SlaBreachSerializer(serializers.ModelSerializer):
    """The job ran slower than the block's guaranteed minimum rate (billing credits it)."""

    class Meta:
        model = SlaBreach
        fields = [
            "guaranteed_mbps",
            "measured_mbps",
            "bytes",
            "seconds",
            "allowed_seconds",
            "recorded_at",
        ]
        read_only_fields = fields


class _LinksMixin:
    """Absolute links to a named route of an object, from the request in the context."""

    def _url(self, name: str, obj) -> str:
        return absolute_url(self.context.get("request"), name, obj.pk)


class JobSerializer(_LinksMixin, serializers.ModelSerializer):
    """A job as its organization sees it in lists."""

    url = serializers.SerializerMethodField()
    lease = serializers.IntegerField(source="lease_id", allow_null=True)
    seat = serializers.IntegerField(
        source="seat_id",
        allow_null=True,
        help_text="The lease's seat the job runs under; null on a lease without seats.",
    )
    profile = serializers.IntegerField(source="profile_id", allow_null=True)
    method = serializers.ChoiceField(choices=METHOD_CHOICES)
    status = serializers.ChoiceField(choices=JobStatus.choices)
    input = JobInputSerializer(source="*")
    progress = serializers.SerializerMethodField()
    output_url = serializers.SerializerMethodField(
        help_text="The assembled capture, once the job has succeeded; else null."
    )
    manifest_url = serializers.SerializerMethodField(
        help_text="The manifest (per segment: provider, packets, bytes, SHA-256, timings), "
        "once the job has succeeded; else null."
    )

    class Meta:
        model = Job
        fields = [
            "id",
            "url",
            "lease",
            "seat",
            "profile",
            "method",
            "param",
            "bpf_filter",
            "pipeline",
            "preferred_providers",
            "status",
            "failure_code",
            "failure_reason",
            "input",
            "progress",
            "output_url",
            "manifest_url",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields

    def _download_url(self, name: str, job: Job) -> str | None:
        return self._url(name, job) if job.status == JobStatus.SUCCEEDED else None

    @extend_schema_field(OpenApiTypes.URI)
    def get_url(self, job: Job) -> str:
        return self._url("job-detail", job)

    @extend_schema_field(JobProgressSerializer)
    def get_progress(self, job: Job) -> dict:
        # the page's figures, with the API's downloads instead of the page's
        return {
            **job_progress(job),
            "output_url": self.get_output_url(job),
            "manifest_url": self.get_manifest_url(job),
        }

    @extend_schema_field(serializers.URLField(allow_null=True))
    def get_output_url(self, job: Job) -> str | None:
        return self._download_url("job-output", job)

    @extend_schema_field(serializers.URLField(allow_null=True))
    def get_manifest_url(self, job: Job) -> str | None:
        return self._download_url("job-manifest", job)


class JobDetailSerializer(JobSerializer):
    """A job with its work items, its metering per provider and any SLA breach."""

    items = serializers.SerializerMethodField()
    usage = serializers.SerializerMethodField()
    sla_breach = serializers.SerializerMethodField()

    class Meta(JobSerializer.Meta):
        fields = [*JobSerializer.Meta.fields, "items", "usage", "sla_breach"]
        read_only_fields = fields

    @extend_schema_field(WorkItemSerializer(many=True))
    def get_items(self, job: Job) -> list:
        return WorkItemSerializer(job_items(job), many=True).data

    @extend_schema_field(JobUsageSerializer(many=True))
    def get_usage(self, job: Job) -> list:
        return JobUsageSerializer(usage_by_provider(job=job), many=True).data

    @extend_schema_field(SlaBreachSerializer(allow_null=True))
    def get_sla_breach(self, job: Job) -> dict | None:
        try:
            breach = job.sla_breach
        except ObjectDoesNotExist:
            return None
        return SlaBreachSerializer(breach).data


# --- Segmentation profiles ----------------------------------------------------------------------


class SegmentationProfileSerializer(StrictJsonTypes, serializers.ModelSerializer):
    """A saved split method and processing pipeline, with the providers preferred for
    subcontracted work."""

    url = serializers.SerializerMethodField()
    method = serializers.ChoiceField(choices=METHOD_CHOICES)
    param = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    bpf_filter = serializers.CharField(
        max_length=1000, required=False, allow_blank=True, default=""
    )
    pipeline = serializers.JSONField(
        required=False,
        default=list,
        help_text='Processing steps, e.g. `[{"service": "anonymize-ip", "where": "udp"}]`.',
    )
    preferred_providers = serializers.JSONField(
        required=False,
        default=list,
        help_text='In order of preference: `[{"provider": 12, "weight": 0.5}, 7]` (a bare id '
        "weighs 1). The planner favours them by their weight, in (0, 1]; subcontracted work "
        "goes to the first that offers every service. Answered as objects.",
    )
    preferred_networks = serializers.JSONField(
        required=False,
        default=list,
        help_text='In order: `[{"network": 3, "weight": 0.3}]`; planned paths through them are '
        "favoured.",
    )
    blocked_providers = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=ID_MAX),
        required=False,
        default=list,
        help_text="Provider ids never asked nor planned.",
    )
    blocked_networks = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=ID_MAX),
        required=False,
        default=list,
        help_text="Network ids no planned path may cross.",
    )
    min_provider_rating = serializers.FloatField(
        min_value=0,
        max_value=5,
        required=False,
        allow_null=True,
        default=None,
        help_text="Providers rated below it, or not rated yet, are not planned.",
    )
    prefer_highest_rated = serializers.BooleanField(required=False, default=False)
    cost_weight = serializers.FloatField(
        min_value=0,
        max_value=1,
        required=False,
        default=0.0,
        help_text="0: fastest first, then cheapest (the default); 1: cheapest first, then "
        "fastest; between: the weight of cost against time.",
    )
    billing_presentation = serializers.ChoiceField(
        choices=BillingPresentation.choices, required=False, default="consolidated"
    )

    class Meta:
        model = SegmentationProfile
        fields = [
            "id",
            "url",
            "name",
            "method",
            "param",
            "bpf_filter",
            "pipeline",
            "preferred_providers",
            "preferred_networks",
            "blocked_providers",
            "blocked_networks",
            "min_provider_rating",
            "prefer_highest_rated",
            "cost_weight",
            "billing_presentation",
            "created_at",
        ]
        read_only_fields = ["created_at"]

    @extend_schema_field(OpenApiTypes.URI)
    def get_url(self, profile: SegmentationProfile) -> str:
        return absolute_url(self.context.get("request"), "segmentation-profile-detail", profile.pk)


# --- Work items (partner agents) ----------------------------------------------------------------


def _pipeline_uses(steps: list, service: str) -> bool:
    try:
        return service in services_required(steps)
    except ProcessingError:
        return False


def _compression_level(steps: list) -> int | None:
    try:
        return compression_level(steps)
    except ProcessingError:
        return None


class WorkClaimSerializer(_LinksMixin, serializers.ModelSerializer):
    """A claimed work item: what to download, what to run on it, and the claim to present
    with the result before `claim_deadline` (after it the item may go to another claim)."""

    job = serializers.IntegerField(source="job_id")
    kind = serializers.ChoiceField(choices=WorkItemKind.choices)
    format = serializers.SerializerMethodField(help_text="pcap or pcapng; the result's too.")
    steps = serializers.JSONField(help_text="The processing steps to run, in order.")
    packets = serializers.IntegerField(source="packets_in")
    bytes = serializers.IntegerField(source="bytes_in", help_text="Of the uncompressed segment.")
    sha256 = serializers.CharField(source="sha256_in", help_text="Of the uncompressed segment.")
    download_url = serializers.SerializerMethodField(
        help_text="GET it with the claim token (header `X-Claim-Token` or `?claim=`)."
    )
    result_url = serializers.SerializerMethodField()
    fail_url = serializers.SerializerMethodField()
    claim_token = serializers.SerializerMethodField()
    compressed = serializers.SerializerMethodField(
        help_text="The pipeline has a compress step: the download is zstd-compressed at "
        "`compression_level`, and the result may be uploaded zstd-compressed."
    )
    compression_level = serializers.SerializerMethodField()
    anonymize_key = serializers.SerializerMethodField(
        help_text="The recipient's 32-byte Crypto-PAn key in hex, when a step is anonymize-ip; "
        "else null."
    )

    class Meta:
        model = WorkItem
        fields = [
            "id",
            "job",
            "number",
            "kind",
            "format",
            "steps",
            "packets",
            "bytes",
            "sha256",
            "attempts",
            "download_url",
            "result_url",
            "fail_url",
            "claim_token",
            "claim_deadline",
            "compressed",
            "compression_level",
            "anonymize_key",
        ]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.STR)
    def get_format(self, item: WorkItem) -> str:
        return item.segment_path.rsplit(".", 1)[-1]

    @extend_schema_field(OpenApiTypes.URI)
    def get_download_url(self, item: WorkItem) -> str:
        return self._url("work-input", item)

    @extend_schema_field(OpenApiTypes.URI)
    def get_result_url(self, item: WorkItem) -> str:
        return self._url("work-result", item)

    @extend_schema_field(OpenApiTypes.URI)
    def get_fail_url(self, item: WorkItem) -> str:
        return self._url("work-fail", item)

    @extend_schema_field(OpenApiTypes.STR)
    def get_claim_token(self, item: WorkItem) -> str:
        return self.context["claim_token"]

    @extend_schema_field(OpenApiTypes.BOOL)
    def get_compressed(self, item: WorkItem) -> bool:
        return _compression_level(item.steps) is not None

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_compression_level(self, item: WorkItem) -> int | None:
        return _compression_level(item.steps)

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_anonymize_key(self, item: WorkItem) -> str | None:
        if not _pipeline_uses(item.steps, "anonymize-ip"):
            return None
        return job_anonymize_key(item.job).hex()


class WorkResultSerializer(serializers.Serializer):
    """A partner's result for a claimed item."""

    file = serializers.FileField(
        allow_empty_file=True,
        help_text="The processed segment, in its format; zstd-compressed or not.",
    )
    claim_token = serializers.CharField(max_length=200)
    kept = JsonListField(
        example="[0, 1, 4]",
        json_text_pattern=JSON_POSITIONS_PATTERN,
        required=False,
        allow_null=True,
        default=None,
        help_text="JSON list of the 0-based positions, in the segment, of the packets the "
        "result holds, increasing; absent when it holds them all. A form field, or a JSON "
        "file part when the list is long.",
    )


class WorkFailSerializer(StrictJsonTypes, serializers.Serializer):
    """A partner gives a claimed item back."""

    claim_token = serializers.CharField(max_length=200)
    reason = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")
