from django import forms
from django.core.exceptions import ValidationError

from marketplace.money import CURRENCY_CHOICES, money_parse
from providers.models import NetworkTechnology, Service, WorkLocation


class ProviderApplicationForm(forms.Form):
    organization = forms.ChoiceField(
        label="Organization",
        help_text="Apply for an organization you own or administer, or create a new one.",
    )
    organization_name = forms.CharField(
        max_length=200, required=False, label="New organization's name"
    )
    legal_name = forms.CharField(max_length=200, label="Legal name")
    contact_name = forms.CharField(max_length=150, label="Contact person")
    contact_email = forms.EmailField(label="Contact e-mail")
    contact_phone = forms.CharField(max_length=32, required=False, label="Contact phone")
    website = forms.URLField(required=False)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)
    currency = forms.ChoiceField(choices=CURRENCY_CHOICES, initial="USD")
    work_location = forms.ChoiceField(
        choices=WorkLocation.choices,
        initial=WorkLocation.EXCHANGE,
        label="Where your processing services run",
        help_text="Partner: your agent claims jobs' work items through the API "
        "(examples/partner_agent.py) and runs them on your systems.",
    )

    NEW = "new"

    def __init__(self, *args, organizations=(), **kwargs):
        super().__init__(*args, **kwargs)
        choices = [(str(org.pk), org.name) for org in organizations]
        choices.append((self.NEW, "A new organization"))
        self.fields["organization"].choices = choices
        self.fields["organization"].initial = choices[0][0]

    def clean(self):
        cleaned = super().clean()
        if (
            cleaned.get("organization") == self.NEW
            and not cleaned.get("organization_name", "").strip()
        ):
            self.add_error("organization_name", "Name the new organization.")
        return cleaned


class NetworkRowForm(forms.Form):
    name = forms.CharField(max_length=100)
    # A blank first choice keeps unused rows unchanged, so they are skipped, not validated.
    technology = forms.ChoiceField(choices=[("", "Choose…"), *NetworkTechnology.choices])
    region = forms.CharField(max_length=100)


class RoutingPathRowForm(forms.Form):
    name = forms.CharField(max_length=100)
    capacity_mbps = forms.IntegerField(min_value=1, label="Capacity (Mbit/s)")
    hops = forms.CharField(
        max_length=500,
        label="Hops, ingress first",
        help_text="Network names in order, separated by “>”, e.g. “Metro fiber > Core”.",
    )

    def clean_hops(self):
        hops = [hop.strip() for hop in self.cleaned_data["hops"].split(">") if hop.strip()]
        if not hops:
            raise ValidationError("Give at least one hop.")
        return hops


class _RowFormSet(forms.BaseFormSet):
    """Blank rows are ignored; filled rows are validated."""

    def filled(self):
        return [
            form.cleaned_data for form in self.forms if form.has_changed() and form.cleaned_data
        ]


NetworkFormSet = forms.formset_factory(NetworkRowForm, formset=_RowFormSet, extra=3, max_num=50)
RoutingPathFormSet = forms.formset_factory(
    RoutingPathRowForm, formset=_RowFormSet, extra=2, max_num=50
)


class OffersForm(forms.Form):
    """One row per service: offered or not, with prices typed in major units."""

    def __init__(self, *args, currency="USD", **kwargs):
        super().__init__(*args, **kwargs)
        self.currency = currency
        for value, label in Service.choices:
            self.fields[f"{value}__offered"] = forms.BooleanField(required=False, label=label)
            self.fields[f"{value}__per_gb"] = forms.CharField(
                required=False, label="per GB", initial="0"
            )
            self.fields[f"{value}__per_minute"] = forms.CharField(
                required=False, label="per minute", initial="0"
            )

    def rows(self):
        for value, label in Service.choices:
            yield {
                "label": label,
                "offered": self[f"{value}__offered"],
                "per_gb": self[f"{value}__per_gb"],
                "per_minute": self[f"{value}__per_minute"],
            }

    def clean(self):
        cleaned = super().clean()
        offers = []
        for value, _label in Service.choices:
            if not cleaned.get(f"{value}__offered"):
                continue
            prices = {}
            for suffix, key in (
                ("per_gb", "price_per_gb_minor"),
                ("per_minute", "price_per_minute_minor"),
            ):
                field = f"{value}__{suffix}"
                try:
                    amount = money_parse(cleaned.get(field) or "0", self.currency)
                except ValidationError as error:
                    self.add_error(field, error)
                    continue
                if amount < 0:
                    self.add_error(field, "Prices cannot be negative.")
                    continue
                prices[key] = amount
            if len(prices) == 2:
                offers.append({"service": value, **prices})
        if not offers and not self.errors:
            raise ValidationError("Offer at least one service.")
        cleaned["offers"] = offers
        return cleaned
