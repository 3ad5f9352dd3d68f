"""Forms of the job pages: a new job (a lease, the split and pipeline or a saved profile, the
capture) and a segmentation profile. They only parse what was typed; the services decide
whether the job can run (`job_submit`) and say why not."""

import json

from django import forms
from django.core.exceptions import ValidationError

from segmentation.services import JobSpec
from segmentation.split import METHODS

PIPELINE_EXAMPLE = (
    '[{"service": "anonymize-ip", "where": "udp"}, {"service": "strip-payload", "keep_bytes": 0}]'
)
PIPELINE_HELP = (
    "A JSON list of processing steps, run in order over every segment; empty for none. "
    "Services: anonymize-ip, strip-payload (keep_bytes), dedupe, filter (expression, mode "
    '"keep" or "drop"), compress. A step with "where" (a BPF expression) applies only to the '
    f"packets it matches. Example: {PIPELINE_EXAMPLE}"
)
PREFERRED_CHOICES = 3  # how many subcontractors a form can rank
PREFERRED_HELP = (
    "For packets whose processing the lease's provider does not offer: the first of these "
    "that offers it gets them, else the cheapest provider that does."
)


def _lease_label(lease) -> str:
    block = lease.block
    return (
        f"Lease {lease.pk}: {block.provider.legal_name}, up to {block.max_rate_mbps} Mbit/s, "
        f"until {lease.ends_at:%Y-%m-%d %H:%M} UTC"
    )


class JobSpecFields(forms.Form):
    """The split and the processing pipeline, as a profile or a job states them."""

    method = forms.ChoiceField(
        label="Split method",
        choices=[(method, method) for method in METHODS],
        initial="connection",
        help_text="As PcapSplitter's -m: one segment per connection, per N packets, per server…",
    )
    param = forms.CharField(
        label="Parameter",
        max_length=200,
        required=False,
        help_text="As PcapSplitter's -p: packets per segment, bytes per segment, number of "
        "segments, or the BPF expression of bpf-filter. Optional for the per-IP, per-port "
        "and per-connection methods (no limit on segments).",
    )
    bpf_filter = forms.CharField(
        label="BPF filter",
        max_length=1000,
        required=False,
        help_text="As PcapSplitter's -i: only the packets it matches are segmented, "
        "e.g. “tcp port 443”. Empty for every packet.",
    )
    pipeline = forms.CharField(
        label="Processing pipeline",
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false", "class": "code"}),
        help_text=PIPELINE_HELP,
    )

    def __init__(self, *args, providers=(), **kwargs):
        super().__init__(*args, **kwargs)
        provider_choices = [("", "—")] + [
            (str(provider.pk), provider.legal_name) for provider in providers
        ]
        for rank in range(1, PREFERRED_CHOICES + 1):
            self.fields[f"preferred_{rank}"] = forms.TypedChoiceField(
                label=f"Preferred subcontractor, choice {rank}",
                choices=provider_choices,
                coerce=int,
                empty_value=None,
                required=False,
            )

    def clean_pipeline(self) -> list:
        text = self.cleaned_data["pipeline"].strip()
        if not text:
            return []
        try:
            pipeline = json.loads(text)
        except ValueError as exc:
            raise ValidationError(
                f"The pipeline is not valid JSON: {exc}. Example: {PIPELINE_EXAMPLE}",
                code="invalid_json",
            ) from None
        if not isinstance(pipeline, list):
            raise ValidationError(
                f"The pipeline is a JSON list of steps, like {PIPELINE_EXAMPLE}",
                code="not_a_list",
            )
        return pipeline

    def preferred_providers(self) -> list[int]:
        """The ranked provider ids, each once, in the order chosen."""
        ranked = []
        for rank in range(1, PREFERRED_CHOICES + 1):
            provider_id = self.cleaned_data.get(f"preferred_{rank}")
            if provider_id is not None and provider_id not in ranked:
                ranked.append(provider_id)
        return ranked

    def spec(self) -> JobSpec:
        return JobSpec(
            method=self.cleaned_data["method"],
            param=self.cleaned_data["param"].strip(),
            bpf_filter=self.cleaned_data["bpf_filter"].strip(),
            pipeline=self.cleaned_data["pipeline"],
            preferred_providers=self.preferred_providers(),
        )

    preferred_help = PREFERRED_HELP

    def preferred_fields(self):
        return [self[f"preferred_{rank}"] for rank in range(1, PREFERRED_CHOICES + 1)]

    def spec_fields(self):
        return [self["method"], self["param"], self["bpf_filter"], self["pipeline"]]


class JobForm(JobSpecFields):
    """A new job. The lease is any number (the service explains why one cannot be used); the
    split comes from a saved profile when one is chosen, else from the fields below it."""

    lease = forms.IntegerField(label="Lease", widget=forms.Select)
    profile = forms.TypedChoiceField(
        label="Segmentation profile",
        coerce=int,
        empty_value=None,
        required=False,
        help_text="A saved profile replaces the split method, parameter, BPF filter, pipeline "
        "and preferred subcontractors below.",
    )
    capture = forms.FileField(
        label="Capture file",
        help_text="pcap (micro- or nanosecond, either byte order) or pcapng.",
    )

    field_order = ["lease", "capture", "profile"]

    def __init__(self, *args, leases=(), profiles=(), max_upload_bytes: int, **kwargs):
        super().__init__(*args, **kwargs)
        leases = list(leases)
        self.has_leases = bool(leases)
        self.fields["lease"].widget.choices = [("", "Choose a lease…")] + [
            (lease.pk, _lease_label(lease)) for lease in leases
        ]
        self.fields["profile"].choices = [("", "None: use the settings below")] + [
            (str(profile.pk), profile.name) for profile in profiles
        ]
        self.fields["capture"].widget.attrs.update(
            {"data-max-bytes": str(max_upload_bytes), "accept": ".pcap,.pcapng,.cap"}
        )
        self.fields["capture"].help_text += f" At most {max_upload_bytes:,} bytes."
        # with a profile chosen the method is not needed (the profile's is used)
        self.fields["method"].required = False

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("profile") is None and not cleaned.get("method"):
            self.add_error("method", "Choose a split method, or a saved profile.")
        return cleaned


class ProfileForm(JobSpecFields):
    """A segmentation profile: a name for a split and pipeline to reuse."""

    name = forms.CharField(label="Name", max_length=100)

    field_order = ["name"]
