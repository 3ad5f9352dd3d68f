from django import forms
from django.core.exceptions import ValidationError

from marketplace.money import money_parse

# The largest amount the database stores (a signed 64-bit integer).
AMOUNT_MAX_MINOR = 2**63 - 1


class AuctionFilterForm(forms.Form):
    """The auction list's filters, read from the query string."""

    STATUS_CHOICES = [
        ("live", "All live"),
        ("open", "Open now"),
        ("closing_soon", "Closing soon"),
        ("ended", "Ended"),
    ]

    status = forms.ChoiceField(choices=STATUS_CHOICES, required=False, label="Show")
    provider = forms.ChoiceField(required=False)
    min_rate = forms.IntegerField(required=False, min_value=0, label="Min rate (Mbit/s)")
    max_rate = forms.IntegerField(required=False, min_value=0, label="Max rate (Mbit/s)")

    def __init__(self, *args, providers=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["provider"].choices = [("", "Any provider")] + [
            (provider.organization.slug, provider.legal_name) for provider in providers
        ]


class BidForm(forms.Form):
    """A bid typed in major units of the auction's currency (e.g. 12.50); amounts come out in
    minor units. The hidden client_bid_id makes a resubmitted form place the bid only once."""

    amount = forms.CharField(
        label="Your bid",
        max_length=32,
        widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off"}),
    )
    max_amount = forms.CharField(
        label="Your maximum",
        max_length=32,
        required=False,
        help_text="The exchange bids for you, one increment at a time, up to this amount.",
        widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off"}),
    )
    client_bid_id = forms.CharField(max_length=64, required=False, widget=forms.HiddenInput)

    def __init__(self, *args, currency: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.currency = currency
        self.fields["amount"].label = f"Your bid ({currency})"
        self.fields["max_amount"].label = f"Your maximum ({currency}, optional)"

    def _minor(self, name: str) -> int | None:
        text = self.cleaned_data.get(name, "").strip()
        if not text:
            return None
        amount = money_parse(text, self.currency)
        if not 1 <= amount <= AMOUNT_MAX_MINOR:
            raise ValidationError("Enter a positive amount.", code="invalid_amount")
        return amount

    def clean_amount(self) -> int:
        return self._minor("amount")

    def clean_max_amount(self) -> int | None:
        return self._minor("max_amount")
