"""Forms of the job and service request pages: a new job (a lease, the split and pipeline or a
saved profile, the capture), a segmentation profile, a service request, a provider's answer
and quote, a client device. They only parse what was typed; the services decide and say why
not."""

import json
from datetime import UTC
from decimal import Decimal

from django import forms
from django.core.exceptions import ValidationError
from django.utils import timezone

from marketplace.money import CURRENCY_CHOICES, money_parse
from segmentation.models import BillingPresentation
from segmentation.processing import SERVICES as PROCESSING_SERVICES
from segmentation.services import JobSpec, ProfilePlanning
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
    """A segmentation profile: a name for a split and pipeline to reuse, and what the planner
    honours when the profile goes with a service request."""

    name = forms.CharField(label="Name", max_length=100)
    blocked_providers = forms.TypedMultipleChoiceField(
        label="Blocked providers",
        coerce=int,
        required=False,
        widget=forms.SelectMultiple(attrs={"size": 4}),
        help_text="Never asked, never planned.",
    )
    blocked_networks = forms.TypedMultipleChoiceField(
        label="Blocked networks",
        coerce=int,
        required=False,
        widget=forms.SelectMultiple(attrs={"size": 4}),
        help_text="No planned path may cross them.",
    )
    min_provider_rating = forms.FloatField(
        label="Minimum provider rating",
        min_value=0,
        max_value=5,
        required=False,
        help_text="0 to 5 stars; providers below it, or not rated yet, are not planned.",
    )
    prefer_highest_rated = forms.BooleanField(label="Prefer the highest rated", required=False)
    cost_weight = forms.FloatField(
        label="Time or cost",
        min_value=0,
        max_value=1,
        initial=0,
        required=False,
        widget=forms.NumberInput(attrs={"step": "0.05"}),
        help_text="0: fastest first, then cheapest; 1: cheapest first, then fastest; between: "
        "how much cost counts against time. Preferences and ratings count when cost has some "
        "weight (at 0 every path runs at full speed).",
    )
    billing_presentation = forms.ChoiceField(
        label="Statements",
        choices=BillingPresentation.choices,
        initial=BillingPresentation.CONSOLIDATED,
        required=False,
    )

    field_order = ["name"]

    def __init__(self, *args, providers=(), networks=(), **kwargs):
        super().__init__(*args, providers=providers, **kwargs)
        provider_choices = [(provider.pk, provider.legal_name) for provider in providers]
        network_choices = [
            (network.pk, f"{network.name} ({network.provider.legal_name}, {network.region})")
            for network in networks
        ]
        self.fields["blocked_providers"].choices = provider_choices
        self.fields["blocked_networks"].choices = network_choices
        for rank in range(1, PREFERRED_CHOICES + 1):
            self.fields[f"preferred_{rank}"].label = f"Preferred provider, choice {rank}"
            self.fields[f"weight_{rank}"] = _weight_field()
            self.fields[f"network_{rank}"] = forms.TypedChoiceField(
                label=f"Preferred network, choice {rank}",
                choices=[("", "—"), *network_choices],
                coerce=int,
                empty_value=None,
                required=False,
            )
            self.fields[f"network_weight_{rank}"] = _weight_field()

    preferred_help = (
        "Preferred providers: the planner favours them by their weight (0 to 1: the share of "
        "cost or time you would give up for them); subcontracted packets go to the first that "
        "offers every service, else to the cheapest provider that does."
    )

    def _ranked(self, field: str, weight: str, key: str) -> list[dict]:
        ranked = []
        for rank in range(1, PREFERRED_CHOICES + 1):
            identifier = self.cleaned_data.get(f"{field}_{rank}")
            if identifier is not None and identifier not in [r[key] for r in ranked]:
                value = self.cleaned_data.get(f"{weight}_{rank}")
                ranked.append({key: identifier, "weight": 1.0 if value is None else value})
        return ranked

    def preferred_providers(self) -> list[dict]:
        return self._ranked("preferred", "weight", "provider")

    def planning(self) -> ProfilePlanning:
        return ProfilePlanning(
            preferred_networks=self._ranked("network", "network_weight", "network"),
            blocked_providers=self.cleaned_data["blocked_providers"],
            blocked_networks=self.cleaned_data["blocked_networks"],
            min_provider_rating=self.cleaned_data["min_provider_rating"],
            prefer_highest_rated=self.cleaned_data["prefer_highest_rated"],
            cost_weight=self.cleaned_data["cost_weight"] or 0.0,
            billing_presentation=self.cleaned_data["billing_presentation"]
            or BillingPresentation.CONSOLIDATED,
        )

    def preferred_rows(self):
        """(provider field, its weight) per rank, for the template."""
        return [
            (self[f"preferred_{rank}"], self[f"weight_{rank}"])
            for rank in range(1, PREFERRED_CHOICES + 1)
        ]

    def network_rows(self):
        return [
            (self[f"network_{rank}"], self[f"network_weight_{rank}"])
            for rank in range(1, PREFERRED_CHOICES + 1)
        ]

    def planning_fields(self):
        return [
            self["blocked_providers"],
            self["blocked_networks"],
            self["min_provider_rating"],
            self["prefer_highest_rated"],
            self["cost_weight"],
            self["billing_presentation"],
        ]


def _weight_field() -> forms.FloatField:
    return forms.FloatField(
        label="Weight",
        min_value=0.01,
        max_value=1,
        required=False,
        widget=forms.NumberInput(attrs={"step": "0.05", "placeholder": "1"}),
    )


# --- service requests --------------------------------------------------------------------------

VOLUME_UNITS = [("MB", "MB"), ("GB", "GB"), ("TB", "TB")]
VOLUME_FACTORS = {"MB": 10**6, "GB": 10**9, "TB": 10**12}


class ServiceRequestForm(forms.Form):
    """A new service request: the volume and deadline, the services, the profile, and the
    optional device, price limit, guaranteed rate and negotiation."""

    profile = forms.TypedChoiceField(label="Segmentation profile", coerce=int)
    volume = forms.DecimalField(
        label="Data volume", min_value=Decimal("0.000001"), max_digits=18, decimal_places=6
    )
    volume_unit = forms.ChoiceField(label="Unit", choices=VOLUME_UNITS, initial="GB")
    deadline = forms.DateTimeField(
        label="Deadline (UTC)",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        help_text="When all the data must have been carried.",
    )
    services = forms.MultipleChoiceField(
        label="Processing services the providers must offer",
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: those of the profile's pipeline.",
    )
    device = forms.TypedChoiceField(
        label="From client device", coerce=int, empty_value=None, required=False
    )
    currency = forms.ChoiceField(label="Currency", choices=CURRENCY_CHOICES, initial="USD")
    price_limit = forms.CharField(
        label="Price limit",
        required=False,
        max_length=30,
        help_text="The most you will pay for the whole volume; empty for no limit.",
    )
    sla_min_rate_mbps = forms.IntegerField(
        label="Guaranteed minimum rate (Mbit/s)",
        min_value=1,
        required=False,
        help_text="An SLA: the plan must carry the data at least this fast on average.",
    )
    negotiate = forms.BooleanField(
        label="Negotiate",
        required=False,
        help_text="Ask the answering providers for better quotes.",
    )

    def __init__(self, *args, profiles=(), devices=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["profile"].choices = [(p.pk, p.name) for p in profiles]
        self.fields["device"].choices = [("", "None")] + [
            (d.pk, f"{d.name} ({d.identifier})") for d in devices
        ]
        self.fields["services"].choices = [(name, name) for name in sorted(PROCESSING_SERVICES)]

    def clean(self):
        cleaned = super().clean()
        volume, unit = cleaned.get("volume"), cleaned.get("volume_unit")
        if volume is not None and unit:
            cleaned["data_bytes"] = int(volume * VOLUME_FACTORS[unit])
            if cleaned["data_bytes"] < 1:
                self.add_error("volume", "The volume must be at least one byte.")
        deadline = cleaned.get("deadline")
        if deadline is not None and timezone.is_naive(deadline):
            cleaned["deadline"] = timezone.make_aware(deadline, UTC)
        cleaned["price_limit_minor"] = None
        text = (cleaned.get("price_limit") or "").strip()
        if text and cleaned.get("currency"):
            try:
                cleaned["price_limit_minor"] = money_parse(text, cleaned["currency"])
            except ValidationError as error:
                self.add_error("price_limit", error)
        return cleaned


class AvailabilityForm(forms.Form):
    """A provider's answer: for each of its routing paths, the bandwidth available now (empty:
    not offered), a price per GB, and how long the answer holds."""

    price = forms.CharField(label="Price per GB", max_length=30)
    valid_minutes = forms.IntegerField(
        label="Holds for (minutes)", min_value=1, max_value=7 * 24 * 60, initial=30
    )

    def __init__(self, *args, paths=(), currency: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.currency = currency
        self.fields["price"].help_text = f"In {currency}, e.g. 0.80."
        self.paths = list(paths)
        for path in self.paths:
            self.fields[f"path_{path.pk}"] = forms.IntegerField(
                label=f"{path.name}: bandwidth available (Mbit/s)",
                min_value=1,
                required=False,
                help_text=f"Capacity {path.capacity_mbps} Mbit/s; empty: not offered.",
            )

    def path_fields(self):
        return [self[f"path_{path.pk}"] for path in self.paths]

    def clean(self):
        cleaned = super().clean()
        cleaned["offers"] = [
            (path.pk, cleaned[f"path_{path.pk}"])
            for path in self.paths
            if cleaned.get(f"path_{path.pk}")
        ]
        if not cleaned["offers"] and not self.errors:
            raise ValidationError("Give the bandwidth available on at least one path.")
        text = cleaned.get("price")
        if text:
            try:
                cleaned["price_per_gb_minor"] = money_parse(text, self.currency)
            except ValidationError as error:
                self.add_error("price", error)
        return cleaned


class QuoteForm(forms.Form):
    price = forms.CharField(label="Your new price per GB", max_length=30)

    def __init__(self, *args, currency: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.currency = currency

    def clean_price(self) -> int:
        return money_parse(self.cleaned_data["price"], self.currency)


class NegotiationForm(forms.Form):
    minutes = forms.IntegerField(
        label="Quotes until (minutes from now)", min_value=1, max_value=24 * 60, initial=10
    )


class AcceptForm(forms.Form):
    capture = forms.FileField(
        label="Capture to carry", help_text="pcap or pcapng: the plan's providers segment it."
    )
    # the plan shown on the page: refused if another replaced it meanwhile
    plan = forms.IntegerField(widget=forms.HiddenInput, required=False)


class ClientDeviceForm(forms.Form):
    name = forms.CharField(label="Name", max_length=100)
    identifier = forms.CharField(
        label="Identifier", max_length=100, help_text="A serial number, an IMEI, a host name."
    )
    phone_number = forms.CharField(
        label="Telephone number",
        max_length=20,
        required=False,
        help_text="E.164, e.g. +14155550123; optional.",
    )
