"""Pages of the shared kernel: home, sign-up, dashboard, organizations, invitations, API keys."""

import hashlib
import unicodedata

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import LoginView
from django.core.exceptions import PermissionDenied, ValidationError
from django.forms.utils import ErrorDict
from django.http import Http404, HttpResponseNotAllowed, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from marketplace.forms import ApiKeyForm, InvitationForm, OrganizationForm, SignUpForm
from marketplace.health import readiness_checks
from marketplace.models import ApiKey, Invitation, Organization
from marketplace.ratelimit import client_address, rate_count
from marketplace.selectors import (
    api_keys_of,
    invitations_pending,
    membership_get,
    memberships_of,
)
from marketplace.services import (
    api_key_create,
    api_key_revoke,
    invitation_accept,
    invitation_create,
    invitation_find,
    invitation_problem,
    invitation_revoke,
    organization_create,
    user_sign_up,
)
from providers.selectors import provider_of, providers_public


def _form_errors_from(error: ValidationError, form) -> None:
    if hasattr(error, "error_dict"):
        for field, messages_ in error.message_dict.items():
            form.add_error(field if field in form.fields else None, messages_)
    else:
        form.add_error(None, error.messages)


def home(request):
    return render(request, "home.html", {"providers": providers_public()[:12]})


def sign_up(request):
    if request.user.is_authenticated:
        return redirect("dashboard")
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = user_sign_up(
            email=form.cleaned_data["email"],
            password=form.cleaned_data["password1"],
            full_name=form.cleaned_data["full_name"],
        )
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(
            request, "Welcome to Segment Exchange. Create or join an organization next."
        )
        next_url = request.POST.get("next") or request.GET.get("next")
        if next_url and next_url.startswith("/") and not next_url.startswith("//"):
            return redirect(next_url)
        return redirect("dashboard")
    return render(
        request, "registration/signup.html", {"form": form, "next": request.GET.get("next", "")}
    )


@login_required
def dashboard(request):
    organization = request.organization
    return render(
        request,
        "dashboard.html",
        {
            "memberships": memberships_of(user=request.user),
            "provider": provider_of(organization=organization),
        },
    )


@login_required
def organization_new(request):
    form = OrganizationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            organization = organization_create(
                user=request.user, name=form.cleaned_data["name"], kind=form.cleaned_data["kind"]
            )
        except ValidationError as error:
            _form_errors_from(error, form)
        else:
            request.session["organization_id"] = organization.pk
            messages.success(request, f"{organization} created; you are its owner.")
            if organization.is_provider:
                return redirect("provider_apply")
            return redirect("organization_detail", slug=organization.slug)
    return render(request, "organizations/new.html", {"form": form})


@login_required
@require_POST
def organization_switch(request):
    membership = (
        memberships_of(user=request.user)
        .filter(organization_id=request.POST.get("organization_id"))
        .first()
    )
    if membership is None:
        raise Http404("You are not a member of that organization.")
    request.session["organization_id"] = membership.organization_id
    messages.info(request, f"You now act for {membership.organization}.")
    return redirect(request.POST.get("next") or "dashboard")


def _organization_for_member(request, slug) -> tuple[Organization, object]:
    organization = get_object_or_404(Organization, slug=slug, is_active=True)
    membership = membership_get(user=request.user, organization=organization)
    if membership is None:
        # Not a member: the organization's page does not exist for this user.
        raise Http404("No such organization.")
    return organization, membership


@login_required
def organization_detail(request, slug):
    organization, membership = _organization_for_member(request, slug)
    invite_form = InvitationForm(prefix="invite")
    key_form = ApiKeyForm(prefix="key")
    new_key = None
    if request.method == "POST":
        if not membership.can_manage:
            raise PermissionDenied("Only an owner or admin can change the organization.")
        action = request.POST.get("action")
        if action == "invite":
            invite_form = InvitationForm(request.POST, prefix="invite")
            if invite_form.is_valid():
                try:
                    invitation, _token = invitation_create(
                        organization=organization,
                        email=invite_form.cleaned_data["email"],
                        role=invite_form.cleaned_data["role"],
                        invited_by=request.user,
                    )
                except (ValidationError, PermissionDenied) as error:
                    if isinstance(error, PermissionDenied):
                        invite_form.add_error(None, str(error))
                    else:
                        _form_errors_from(error, invite_form)
                else:
                    messages.success(request, f"Invitation sent to {invitation.email}.")
                    return redirect("organization_detail", slug=slug)
        elif action == "api_key":
            key_form = ApiKeyForm(request.POST, prefix="key")
            if key_form.is_valid():
                _api_key, new_key = api_key_create(
                    organization=organization,
                    name=key_form.cleaned_data["name"],
                    scope=key_form.cleaned_data["scope"],
                    created_by=request.user,
                )
                key_form = ApiKeyForm(prefix="key")
        else:
            return HttpResponseNotAllowed(["GET"])
    return render(
        request,
        "organizations/detail.html",
        {
            "organization": organization,
            "membership": membership,
            "members": organization.memberships.select_related("user").order_by("user__email"),
            "invitations": invitations_pending(organization=organization),
            "api_keys": api_keys_of(organization=organization),
            "invite_form": invite_form,
            "key_form": key_form,
            "new_key": new_key,
            "provider": provider_of(organization=organization),
        },
    )


@login_required
@require_POST
def invitation_revoke_view(request, slug, pk):
    organization, _membership = _organization_for_member(request, slug)
    invitation = get_object_or_404(Invitation, pk=pk, organization=organization)
    invitation_revoke(invitation=invitation, user=request.user)
    messages.info(request, f"Invitation to {invitation.email} withdrawn.")
    return redirect("organization_detail", slug=slug)


@login_required
@require_POST
def api_key_revoke_view(request, slug, pk):
    organization, _membership = _organization_for_member(request, slug)
    api_key = get_object_or_404(ApiKey, pk=pk, organization=organization)
    api_key_revoke(api_key=api_key, user=request.user)
    messages.info(request, f"API key {api_key.prefix}… revoked; it no longer works.")
    return redirect("organization_detail", slug=slug)


def invitation_accept_view(request, token):
    invitation = invitation_find(token=token)
    problem = invitation_problem(invitation)
    if problem or not request.user.is_authenticated or request.method != "POST":
        return render(
            request,
            "organizations/invitation.html",
            {"invitation": invitation, "problem": problem, "token": token},
            status=404 if invitation is None else 200,
        )
    try:
        membership = invitation_accept(token=token, user=request.user)
    except (ValidationError, PermissionDenied) as error:
        message = error.messages[0] if isinstance(error, ValidationError) else str(error)
        return render(
            request,
            "organizations/invitation.html",
            {"invitation": invitation, "problem": message, "token": token},
            status=403 if isinstance(error, PermissionDenied) else 200,
        )
    request.session["organization_id"] = membership.organization_id
    messages.success(
        request, f"You joined {membership.organization} as {membership.get_role_display().lower()}."
    )
    return redirect("organization_detail", slug=membership.organization.slug)


def healthz(request):
    """Liveness: the process answers (no dependency is touched)."""
    return JsonResponse({"status": "ok"})


def readyz(request):
    """Readiness: 200 while the database answers ("degraded" when the cache does not), else
    503; each check's result."""
    checks = readiness_checks()
    ready = all(check.ok for check in checks if check.name == "database")
    degraded = not all(check.ok for check in checks)
    return JsonResponse(
        {
            "status": "unavailable" if not ready else "degraded" if degraded else "ok",
            "checks": {
                check.name: {
                    "ok": check.ok,
                    "milliseconds": round(check.milliseconds, 1),
                    **({"detail": check.detail} if check.detail else {}),
                }
                for check in checks
            },
        },
        status=200 if ready else 503,
    )


class SignInRateLimited:
    """For login views: sign-in attempts counted atomically (marketplace.ratelimit) per client
    address (LOGIN_RATE_PER_ADDRESS) and per account typed, as the form reads it (Unicode
    NFKC, case folded: look-alike spellings count as the same account;
    LOGIN_RATE_PER_ACCOUNT). Past either, the form says how long to wait, with 429 and
    Retry-After, and no password is checked."""

    def post(self, request, *args, **kwargs):
        typed = unicodedata.normalize("NFKC", request.POST.get("username") or "")
        account = typed.strip().lower()[:254]
        decisions = [
            rate_count(
                scope="login-address",
                ident=client_address(request),
                rate=settings.LOGIN_RATE_PER_ADDRESS,
            ),
            rate_count(
                scope="login-account",
                ident=hashlib.sha256(account.encode()).hexdigest(),
                rate=settings.LOGIN_RATE_PER_ACCOUNT,
            ),
        ]
        refused = [decision for decision in decisions if not decision.allowed]
        if not refused:
            return super().post(request, *args, **kwargs)
        wait = max(decision.retry_after for decision in refused)
        # an unbound form (a bound one would check the password when its errors are read)
        form = self.get_form_class()(request, initial={"username": typed[:254]})
        form._errors = ErrorDict()
        form.cleaned_data = {}
        form.add_error(None, f"Too many sign-in attempts: wait {wait} seconds, then try again.")
        response = self.render_to_response(self.get_context_data(form=form), status=429)
        response["Retry-After"] = str(wait)
        return response


class RateLimitedLoginView(SignInRateLimited, LoginView):
    """The site's sign-in page."""


class RateLimitedAdminLoginView(SignInRateLimited, LoginView):
    """The staff admin's sign-in page (/admin/login/), limited like the site's: staff accounts
    verify providers and cancel auctions."""

    template_name = "admin/login.html"
    authentication_form = AdminAuthenticationForm

    def get_context_data(self, **kwargs):
        return {
            **super().get_context_data(**kwargs),
            **admin.site.each_context(self.request),
            "app_path": self.request.get_full_path(),
            "title": "Log in",
            "site_header": admin.site.site_header,
        }

    def get_default_redirect_url(self):
        return reverse("admin:index")
