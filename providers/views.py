"""Provider pages: the public directory and the application to sell."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.shortcuts import get_object_or_404, redirect, render

from marketplace.models import MANAGING_ROLES
from marketplace.selectors import memberships_of
from providers.forms import NetworkFormSet, OffersForm, ProviderApplicationForm, RoutingPathFormSet
from providers.models import ProviderProfile
from providers.selectors import provider_of, providers_public
from providers.services import NetworkInput, OfferInput, RoutingPathInput, provider_register


def provider_list(request):
    return render(request, "providers/list.html", {"providers": providers_public()})


def provider_detail(request, slug):
    provider = get_object_or_404(providers_public(), organization__slug=slug)
    return render(request, "providers/detail.html", {"provider": provider})


def _apply_candidates(user):
    """Organizations the user may register: managed by the user and not yet providers."""
    return [
        m.organization
        for m in memberships_of(user=user).filter(role__in=MANAGING_ROLES)
        if not ProviderProfile.objects.filter(organization=m.organization).exists()
    ]


@login_required
def provider_apply(request):
    current = provider_of(organization=request.organization)
    if current is not None and request.method == "GET" and not _apply_candidates(request.user):
        return redirect("dashboard")
    candidates = _apply_candidates(request.user)
    data = request.POST if request.method == "POST" else None
    form = ProviderApplicationForm(data, organizations=candidates)
    networks = NetworkFormSet(data, prefix="networks")
    paths = RoutingPathFormSet(data, prefix="paths")
    currency = request.POST.get("currency", "USD") if data else "USD"
    offers = OffersForm(data, prefix="offers", currency=currency)
    if data is not None and all(f.is_valid() for f in (form, networks, paths, offers)):
        chosen = form.cleaned_data["organization"]
        organization = None
        if chosen != form.NEW:
            organization = next((o for o in candidates if str(o.pk) == chosen), None)
        try:
            with transaction.atomic():
                provider = provider_register(
                    user=request.user,
                    organization=organization,
                    organization_name=form.cleaned_data["organization_name"],
                    legal_name=form.cleaned_data["legal_name"],
                    contact_name=form.cleaned_data["contact_name"],
                    contact_email=form.cleaned_data["contact_email"],
                    contact_phone=form.cleaned_data["contact_phone"],
                    website=form.cleaned_data["website"],
                    description=form.cleaned_data["description"],
                    work_location=form.cleaned_data["work_location"],
                    networks=[NetworkInput(**row) for row in networks.filled()],
                    routing_paths=[RoutingPathInput(**row) for row in paths.filled()],
                    offers=[
                        OfferInput(currency=currency, **row)
                        for row in offers.cleaned_data["offers"]
                    ],
                )
        except PermissionDenied as error:
            form.add_error(None, str(error))
        except ValidationError as error:
            for message in error.messages:
                form.add_error(None, message)
        else:
            request.session["organization_id"] = provider.organization_id
            messages.success(
                request,
                "Application received. Your provider account is awaiting verification by "
                "exchange staff; you can prepare offers in the console meanwhile.",
            )
            return redirect("dashboard")
    return render(
        request,
        "providers/apply.html",
        {"form": form, "networks": networks, "paths": paths, "offers": offers},
    )
