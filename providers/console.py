"""The provider console at /console/: a Django admin site scoped to the provider organization the
signed-in user acts for. Every queryset is filtered to that provider, every save stamps it, and an
object of another provider is a 404, never a redirect that would confirm it exists."""

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import ValidationError
from django.http import Http404
from django.shortcuts import redirect
from django.urls import reverse

from marketplace.models import MANAGING_ROLES
from marketplace.selectors import membership_get
from providers.models import Network, Offer, ProviderProfile, RoutingPath, RoutingPathHop


def console_provider(request) -> ProviderProfile | None:
    """The provider profile the request acts for, cached on the request."""
    if not hasattr(request, "_console_provider"):
        organization = getattr(request, "organization", None)
        provider = None
        if organization is not None and request.user.is_authenticated:
            provider = ProviderProfile.objects.filter(organization=organization).first()
        request._console_provider = provider
    return request._console_provider


def console_can_manage(request) -> bool:
    provider = console_provider(request)
    if provider is None:
        return False
    membership = membership_get(user=request.user, organization=provider.organization)
    return membership is not None and membership.role in MANAGING_ROLES


class ProviderConsoleSite(admin.AdminSite):
    site_header = "Segment Exchange — provider console"
    site_title = "Provider console"
    index_title = "Your networks, routing paths and offers"
    site_url = "/dashboard/"

    def has_permission(self, request):
        return request.user.is_active and console_provider(request) is not None

    def login(self, request, extra_context=None):
        """People sign in on the portal's own page (the admin's asks for a staff account); a
        signed-in user without a provider organization is sent to register one."""
        if request.user.is_authenticated:
            messages.info(
                request,
                "The provider console is for provider organizations: switch to one, or "
                "register yours as a provider.",
            )
            return redirect("provider_apply")
        return redirect_to_login(
            request.GET.get(REDIRECT_FIELD_NAME) or reverse("console:index"),
            login_url=reverse("login"),
        )

    def get_app_list(self, request, app_label=None):
        app_list = super().get_app_list(request, app_label)
        for app in app_list:
            for model in app["models"]:
                if model["object_name"] == "ProviderProfile":
                    model["name"] = "Your provider profile"
        return app_list

    def each_context(self, request):
        context = super().each_context(request)
        provider = console_provider(request)
        context["console_provider"] = provider
        return context


console_site = ProviderConsoleSite(name="console")


class ProviderScopedAdmin(admin.ModelAdmin):
    """Base of every console admin: objects of the acting provider only."""

    provider_field = "provider"

    def get_queryset(self, request):
        provider = console_provider(request)
        queryset = super().get_queryset(request)
        if provider is None:
            return queryset.none()
        return queryset.filter(**{self.provider_field: provider})

    def get_object(self, request, object_id, from_field=None):
        obj = super().get_object(request, object_id, from_field)
        if obj is None:
            raise Http404("No such object in your console.")
        return obj

    def has_module_permission(self, request):
        return console_provider(request) is not None

    def has_view_permission(self, request, obj=None):
        return console_provider(request) is not None

    def has_add_permission(self, request):
        return console_can_manage(request)

    def has_change_permission(self, request, obj=None):
        return console_can_manage(request)

    def has_delete_permission(self, request, obj=None):
        return console_can_manage(request)

    def save_model(self, request, obj, form, change):
        setattr(obj, self.provider_field, console_provider(request))
        super().save_model(request, obj, form, change)

    def get_form(self, request, obj=None, change=False, **kwargs):
        form_class = super().get_form(request, obj, change, **kwargs)
        provider = console_provider(request)

        field = self.provider_field

        class ScopedForm(form_class):
            # Stamp the provider before model validation and validate it too, so a duplicate
            # name is a form error rather than a database error.
            def _post_clean(self):
                setattr(self.instance, field, provider)
                super()._post_clean()

            def _get_validation_exclusions(self):
                exclude = super()._get_validation_exclusions()
                exclude.discard(field)
                return exclude

        ScopedForm.__name__ = form_class.__name__
        return ScopedForm


class RoutingPathHopInlineFormSet(forms.BaseInlineFormSet):
    def clean(self):
        super().clean()
        positions = []
        for form in self.forms:
            if not form.cleaned_data or form.cleaned_data.get("DELETE"):
                continue
            positions.append(form.cleaned_data["position"])
        if not positions:
            raise ValidationError("A routing path needs at least one hop.")
        if len(set(positions)) != len(positions):
            raise ValidationError("Two hops share a position; give each hop its own place.")


class RoutingPathHopInline(admin.TabularInline):
    model = RoutingPathHop
    formset = RoutingPathHopInlineFormSet
    extra = 1
    ordering = ["position"]

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "network":
            provider = console_provider(request)
            kwargs["queryset"] = Network.objects.filter(provider=provider)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_view_permission(self, request, obj=None):
        return console_provider(request) is not None

    def has_add_permission(self, request, obj=None):
        return console_can_manage(request)

    def has_change_permission(self, request, obj=None):
        return console_can_manage(request)

    def has_delete_permission(self, request, obj=None):
        return console_can_manage(request)


@admin.register(Network, site=console_site)
class NetworkConsoleAdmin(ProviderScopedAdmin):
    list_display = ["name", "technology", "region"]
    list_filter = ["technology"]
    search_fields = ["name", "region"]
    fields = ["name", "technology", "region"]


@admin.register(RoutingPath, site=console_site)
class RoutingPathConsoleAdmin(ProviderScopedAdmin):
    list_display = ["name", "capacity_mbps", "hop_list"]
    search_fields = ["name"]
    fields = ["name", "capacity_mbps"]
    inlines = [RoutingPathHopInline]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("hops__network")

    @admin.display(description="hops (ingress → egress)")
    def hop_list(self, obj):
        return " → ".join(hop.network.name for hop in obj.hops.all())


@admin.register(Offer, site=console_site)
class OfferConsoleAdmin(ProviderScopedAdmin):
    list_display = [
        "service",
        "price_per_gb_minor",
        "price_per_minute_minor",
        "currency",
        "is_active",
    ]
    list_filter = ["service", "is_active"]
    fields = ["service", "price_per_gb_minor", "price_per_minute_minor", "currency", "is_active"]


@admin.register(ProviderProfile, site=console_site)
class ProviderProfileConsoleAdmin(admin.ModelAdmin):
    """The acting provider's own profile. What buyers see is checked by staff and only shown
    here; where the provider's processing runs (SPEC §5.2 dispersion) can be changed."""

    fields = ["legal_name", "status", "contact_name", "contact_email", "work_location"]
    readonly_fields = ["legal_name", "status", "contact_name", "contact_email"]

    def get_queryset(self, request):
        provider = console_provider(request)
        queryset = super().get_queryset(request)
        return queryset.none() if provider is None else queryset.filter(pk=provider.pk)

    def get_object(self, request, object_id, from_field=None):
        obj = super().get_object(request, object_id, from_field)
        if obj is None:
            raise Http404("No such object in your console.")
        return obj

    def changelist_view(self, request, extra_context=None):
        # There is one profile: its page is the list.
        provider = console_provider(request)
        if provider is None:
            raise Http404("No provider profile in your console.")
        return redirect("console:providers_providerprofile_change", provider.pk)

    def get_form(self, request, obj=None, change=False, **kwargs):
        kwargs["help_texts"] = {
            "work_location": "Where the built-in processing services you offer run on buyers' "
            "segments: in the exchange's workers, or at your premises, where your partner "
            "agent claims work items with an API key of yours and sends back the results. "
            "A change applies to jobs split from then on.",
        }
        return super().get_form(request, obj, change, **kwargs)

    def has_module_permission(self, request):
        return console_provider(request) is not None

    def has_view_permission(self, request, obj=None):
        return console_provider(request) is not None

    def has_change_permission(self, request, obj=None):
        return console_can_manage(request)

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
