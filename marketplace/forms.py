from django import forms
from django.contrib.auth import password_validation

from marketplace.models import ApiKeyScope, OrganizationKind, Role, User


class SignUpForm(forms.Form):
    full_name = forms.CharField(max_length=150, required=False, label="Full name")
    email = forms.EmailField(label="E-mail address")
    password1 = forms.CharField(label="Password", widget=forms.PasswordInput, strip=False)
    password2 = forms.CharField(label="Password again", widget=forms.PasswordInput, strip=False)

    def clean_email(self):
        email = self.cleaned_data["email"].strip().lower()
        if User.objects.filter(email__iexact=email).exists():
            raise forms.ValidationError("A user with this e-mail address already exists.")
        return email

    def clean(self):
        cleaned = super().clean()
        p1, p2 = cleaned.get("password1"), cleaned.get("password2")
        if p1 and p2 and p1 != p2:
            self.add_error("password2", "The two passwords differ.")
        elif p1:
            candidate = User(email=cleaned.get("email", ""), full_name=cleaned.get("full_name", ""))
            try:
                password_validation.validate_password(p1, candidate)
            except forms.ValidationError as error:
                self.add_error("password1", error)
        return cleaned


class OrganizationForm(forms.Form):
    name = forms.CharField(max_length=200)
    kind = forms.ChoiceField(
        # a buying group's organization is made with its group (/groups/new/)
        choices=[c for c in OrganizationKind.choices if c[0] != OrganizationKind.GROUP],
        widget=forms.RadioSelect,
        help_text="Providers sell segmentation-service time; recipients buy it.",
    )


class InvitationForm(forms.Form):
    email = forms.EmailField(label="E-mail address")
    role = forms.ChoiceField(choices=Role.choices, initial=Role.MEMBER)


class ApiKeyForm(forms.Form):
    name = forms.CharField(max_length=100, initial="Partner integration")
    scope = forms.ChoiceField(choices=ApiKeyScope.choices, initial=ApiKeyScope.READ)
