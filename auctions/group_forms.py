"""Forms of the buying group pages: a new group, a pledge (when accepting an invitation or
changing it later), invitations of users, devices and telephone numbers, a provider's offer to
a group, and a seat on a lease. They only parse what was typed (percent to basis points, major
to minor units); the services in auctions.groups and auctions.seats decide and say why not."""

from datetime import UTC
from decimal import Decimal, InvalidOperation

from django import forms
from django.core.exceptions import ValidationError
from django.utils import timezone

from auctions.models import MemberKind, MemberRole
from marketplace.money import CURRENCY_CHOICES, CURRENCY_EXPONENTS, money_parse

ROLE_HELP = "A payer pledges a share of a price and/or a cap; a sponsored member pays nothing."


def share_bps_parse(text: str) -> int | None:
    """ "12.5" (percent) -> 1250 basis points; None when empty. The range is the service's."""
    text = (text or "").strip().rstrip("%").strip()
    if not text:
        return None
    try:
        percent = Decimal(text.replace(",", "."))
    except InvalidOperation:
        raise ValidationError(
            "“%(text)s” is not a percentage.", code="invalid_share", params={"text": text}
        ) from None
    if not percent.is_finite():
        raise ValidationError(
            "“%(text)s” is not a percentage.", code="invalid_share", params={"text": text}
        )
    bps = percent.scaleb(2)
    if bps != bps.to_integral_value():
        raise ValidationError(
            "A share has at most two decimal places (e.g. 12.25 %).", code="too_precise"
        )
    return int(bps)


class PledgeFields(forms.Form):
    """Payer or sponsored; for a payer, which of the user's organizations pays, the share of
    a price in percent and the cap in major units of the group's currency."""

    role = forms.ChoiceField(
        label="Role",
        choices=MemberRole.choices,
        initial=MemberRole.PAYER,
        widget=forms.RadioSelect,
        help_text=ROLE_HELP,
    )
    paying_organization = forms.TypedChoiceField(
        label="Paid by", coerce=int, empty_value=None, required=False
    )
    share_percent = forms.CharField(
        label="Share of a price (%)",
        max_length=12,
        required=False,
        widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off"}),
        help_text="e.g. 25 for a quarter of the price; empty for none.",
    )
    cap = forms.CharField(
        label="Cap",
        max_length=32,
        required=False,
        widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off"}),
        help_text="The most you pay for one lease; empty for none.",
    )

    def __init__(self, *args, paying_organizations=(), currency: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.currency = currency
        self.paying_organizations = {org.pk: org for org in paying_organizations}
        self.fields["paying_organization"].choices = [("", "Choose an organization…")] + [
            (org.pk, org.name) for org in paying_organizations
        ]
        if not paying_organizations:
            self.fields["paying_organization"].help_text = (
                "You own or administer no buyer organization: create one to pay, or join as "
                "sponsored."
            )
        if currency:
            self.fields["cap"].label = f"Cap ({currency})"

    def pledge_currency(self) -> str | None:
        return self.currency

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("role") != MemberRole.PAYER:
            cleaned.update(paying_organization=None, share_bps=None, cap_minor=None)
            return cleaned
        try:
            cleaned["share_bps"] = share_bps_parse(cleaned.get("share_percent", ""))
        except ValidationError as error:
            self.add_error("share_percent", error)
        currency = self.pledge_currency()
        cap_text = (cleaned.get("cap") or "").strip()
        cleaned["cap_minor"] = None
        if cap_text and currency in CURRENCY_EXPONENTS:
            try:
                cleaned["cap_minor"] = money_parse(cap_text, currency)
            except ValidationError as error:
                self.add_error("cap", error)
        organization_id = cleaned.get("paying_organization")
        cleaned["paying_organization"] = self.paying_organizations.get(organization_id)
        return cleaned

    def pledge(self) -> dict:
        """The keyword arguments of the services' pledge."""
        return {
            "role": self.cleaned_data["role"],
            "paying_organization": self.cleaned_data["paying_organization"],
            "share_bps": self.cleaned_data["share_bps"],
            "cap_minor": self.cleaned_data["cap_minor"],
        }


class GroupForm(PledgeFields):
    """A new buying group, and the creator's own place in it."""

    name = forms.CharField(label="Name", max_length=200)
    currency = forms.ChoiceField(
        label="Currency",
        choices=CURRENCY_CHOICES,
        initial="USD",
        help_text="Pledges are in it; the group bids only on auctions in it.",
    )
    description = forms.CharField(label="Description", max_length=300, required=False)

    field_order = ["name", "currency", "description", "role"]

    def pledge_currency(self) -> str | None:
        return self.cleaned_data.get("currency")


class InviteUserForm(forms.Form):
    email = forms.EmailField(label="E-mail address", max_length=254)


class InviteDeviceForm(forms.Form):
    device = forms.TypedChoiceField(label="Client device", coerce=int)

    def __init__(self, *args, devices=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["device"].choices = [("", "Choose a device…")] + [
            (device.pk, f"{device.name} ({device.identifier}) of {device.organization.name}")
            for device in devices
        ]


class AddPhoneForm(forms.Form):
    phone_number = forms.CharField(
        label="Telephone number",
        max_length=32,
        help_text="E.164, e.g. +14155550123: a sponsored member at once.",
    )


class GroupOfferForm(forms.Form):
    """A provider's offer of one of its free future blocks to a group (named by its handle)."""

    block = forms.TypedChoiceField(label="Block", coerce=int)
    group = forms.SlugField(
        label="Group handle",
        max_length=80,
        help_text="The handle shown on the group's page.",
    )
    price = forms.CharField(
        label="Price",
        max_length=32,
        help_text="In the group's currency, e.g. 120.00.",
        widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off"}),
    )
    deadline = forms.DateTimeField(
        label="Deadline (UTC)",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        help_text="Payers accept until then; no later than the block's start.",
    )
    message = forms.CharField(label="Message to the group", max_length=300, required=False)

    def __init__(self, *args, blocks=(), groups=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.groups = groups
        self.fields["block"].choices = [("", "Choose a block…")] + [
            (
                block.pk,
                f"{block.starts_at:%Y-%m-%d %H:%M} to {block.ends_at:%H:%M} UTC, "
                f"{block.max_rate_mbps} Mbit/s, {block.seats} seat(s)",
            )
            for block in blocks
        ]

    def clean_group(self):
        handle = self.cleaned_data["group"]
        group = self.groups.filter(organization__slug=handle).first()
        if group is None:
            raise ValidationError(f"No buying group has the handle “{handle}”.")
        return group

    def clean_deadline(self):
        deadline = self.cleaned_data["deadline"]
        if timezone.is_naive(deadline):
            deadline = timezone.make_aware(deadline, UTC)
        return deadline

    def clean(self):
        cleaned = super().clean()
        group = cleaned.get("group")
        if group is not None and cleaned.get("price"):
            try:
                cleaned["price_minor"] = money_parse(cleaned["price"], group.currency)
            except ValidationError as error:
                self.add_error("price", error)
        return cleaned


class SeatForm(forms.Form):
    """A seat for a user (by e-mail), a client device or a telephone number."""

    kind = forms.ChoiceField(
        label="For", choices=MemberKind.choices, initial=MemberKind.USER, widget=forms.RadioSelect
    )
    email = forms.CharField(label="User's e-mail address", max_length=254, required=False)
    device = forms.TypedChoiceField(
        label="Client device", coerce=int, empty_value=None, required=False
    )
    phone_number = forms.CharField(label="Telephone number", max_length=32, required=False)

    def __init__(self, *args, devices=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.devices = {device.pk: device for device in devices}
        self.fields["device"].choices = [("", "—")] + [
            (device.pk, f"{device.name} ({device.identifier})") for device in devices
        ]

    def clean(self):
        cleaned = super().clean()
        cleaned["device"] = self.devices.get(cleaned.get("device"))
        return cleaned
