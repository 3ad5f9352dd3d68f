"""Forms of the billing pages: giving a rating and replying to one."""

from django import forms

from billing.ratings import COMMENT_MAX_LENGTH, REPLY_MAX_LENGTH

YES_NO = [("yes", "Yes"), ("no", "No")]
STARS = [(n, str(n)) for n in range(1, 6)]


def _yes_no(label: str) -> forms.TypedChoiceField:
    return forms.TypedChoiceField(
        label=label, choices=YES_NO, coerce=lambda value: value == "yes", widget=forms.RadioSelect
    )


def _stars(label: str) -> forms.TypedChoiceField:
    return forms.TypedChoiceField(
        label=label,
        choices=STARS,
        coerce=int,
        widget=forms.RadioSelect(attrs={"class": "stars"}),
        help_text="1 (poor) to 5 (excellent)",
    )


def _comment() -> forms.CharField:
    return forms.CharField(
        label="Comment",
        required=False,
        max_length=COMMENT_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 4}),
    )


class ProviderRatingForm(forms.Form):
    """The recipient rates the provider."""

    satisfied = _yes_no("Were you satisfied with the service?")
    quality = _stars("Quality")
    communication = _stars("Communication")
    delivery = _stars("Delivery")
    comment = _comment()


class RecipientRatingForm(forms.Form):
    """The provider rates the recipient."""

    paid_satisfactorily = _yes_no("Did the recipient pay satisfactorily?")
    comment = _comment()


class ReplyForm(forms.Form):
    text = forms.CharField(
        label="Your public reply",
        max_length=REPLY_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Shown with the rating. You can reply once, and not change it afterwards.",
    )
