"""The provider console at /console/: a Django admin site scoped to the provider organization the
signed-in user acts for. Every queryset is filtered to that provider, every save stamps it, and an
object of another provider is a 404, never a redirect that would confirm it exists."""

from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Max, Q
from django.http import Http404
from django.shortcuts import redirect
from django.template.defaultfilters import filesizeformat
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.utils.html import format_html
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_POST

from billing.models import Rating, RatingKind, Settlement
from billing.ratings import provider_rating_summary, rateables_of
from billing.views import settlement_csv_response
from marketplace.models import MANAGING_ROLES
from marketplace.money import money_format
from marketplace.selectors import membership_get
from providers.models import (
    Network,
    Offer,
    ProviderProfile,
    RoutingPath,
    RoutingPathHop,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from providers.services import (
    webhook_endpoint_create,
    webhook_endpoint_deactivate,
    webhook_endpoint_secret_rotate,
)
from segmentation.models import ServiceRequest


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


class ProviderReadOnlyAdmin(ProviderScopedAdmin):
    """A console page the provider reads but never changes: records the exchange keeps (its
    deliveries, the requests sent to it, ratings, settlements)."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


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


# --- Webhooks ---------------------------------------------------------------------------------


@admin.register(WebhookEndpoint, site=console_site)
class WebhookEndpointConsoleAdmin(ProviderScopedAdmin):
    """The provider's webhook endpoints. Owners and admins add them, see and rotate their
    signing secrets and deactivate them; members see them without the secret. An endpoint is
    not edited or deleted: its delivery log stays, a new URL is a new endpoint."""

    change_form_template = "console/webhooks/endpoint_change_form.html"
    list_display = ["url", "description", "is_active", "created_at"]
    list_filter = ["is_active"]
    search_fields = ["url", "description"]

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["url", "description"]
        secret = "signing_secret" if console_can_manage(request) else "signing_secret_hidden"
        return ["url", "description", "is_active", "created_at", secret, "signature_help"]

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else self.get_fields(request, obj)

    @admin.display(description="signing secret")
    def signing_secret(self, obj):
        return format_html("<code>{}</code>", obj.secret)

    @admin.display(description="signing secret")
    def signing_secret_hidden(self, obj):
        return "Shown to your organization's owners and admins."

    @admin.display(description="how to verify")
    def signature_help(self, obj):
        return mark_safe(
            "Each POST carries <code>Segment-Exchange-Signature: t=&lt;unix seconds&gt;,"
            "v1=&lt;hex&gt;</code>: HMAC-SHA256 with this secret over <code>t</code>, a dot and "
            "the raw body. Refuse it if it does not match or <code>t</code> is more than five "
            "minutes away; answer 2xx once you have the event "
            "(<code>Segment-Exchange-Delivery</code> is its id, the same on every retry)."
        )

    def save_model(self, request, obj, form, change):
        # Only adding reaches here (the page of an endpoint is read-only).
        created = webhook_endpoint_create(
            provider=console_provider(request),
            url=obj.url,
            description=obj.description,
            actor=request.user,
        )
        obj.pk, obj.secret, obj.created_at = created.pk, created.secret, created.created_at

    def response_add(self, request, obj, post_url_continue=None):
        # To the endpoint's page, where its secret is.
        self.message_user(
            request,
            "Endpoint added. Verify each webhook with the signing secret below.",
            messages.SUCCESS,
        )
        return redirect("console:providers_webhookendpoint_change", obj.pk)

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        own = [
            path(
                "<path:object_id>/rotate-secret/",
                self.admin_site.admin_view(self.rotate_secret_view),
                name="{}_{}_rotate_secret".format(*info),
            ),
            path(
                "<path:object_id>/deactivate/",
                self.admin_site.admin_view(self.deactivate_view),
                name="{}_{}_deactivate".format(*info),
            ),
        ]
        return own + super().get_urls()

    def _managed_endpoint(self, request, object_id) -> WebhookEndpoint:
        endpoint = self.get_object(request, unquote(object_id))  # 404 if not the provider's
        if not console_can_manage(request):
            raise PermissionDenied
        return endpoint

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "can_manage": console_can_manage(request)}
        return super().change_view(request, object_id, form_url, extra_context)

    @method_decorator(require_POST)
    def rotate_secret_view(self, request, object_id):
        endpoint = self._managed_endpoint(request, object_id)
        webhook_endpoint_secret_rotate(endpoint=endpoint, actor=request.user)
        self.message_user(
            request,
            "New signing secret. Webhooks are signed with it from now on, the old one no longer.",
            messages.SUCCESS,
        )
        return redirect("console:providers_webhookendpoint_change", endpoint.pk)

    @method_decorator(require_POST)
    def deactivate_view(self, request, object_id):
        endpoint = self._managed_endpoint(request, object_id)
        webhook_endpoint_deactivate(endpoint=endpoint, actor=request.user)
        self.message_user(
            request,
            "Endpoint deactivated: nothing more is sent to it.",
            messages.WARNING,
        )
        return redirect("console:providers_webhookendpoint_change", endpoint.pk)


class WebhookAttemptInline(admin.TabularInline):
    model = WebhookAttempt
    extra = 0
    can_delete = False
    fields = ["number", "at", "status_code", "error", "duration_ms"]
    readonly_fields = fields

    def has_view_permission(self, request, obj=None):
        return console_provider(request) is not None

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(WebhookDelivery, site=console_site)
class WebhookDeliveryConsoleAdmin(ProviderReadOnlyAdmin):
    """The delivery log of the provider's endpoints: read-only, every attempt listed."""

    provider_field = "endpoint__provider"
    list_display = [
        "event",
        "endpoint",
        "status",
        "attempts",
        "last_status_code",
        "last_error_short",
        "created_at",
        "delivered_at",
        "next_attempt_at",
    ]
    list_filter = ["status", "event"]
    search_fields = ["event", "event_id", "endpoint__url"]
    fields = [
        "event",
        "event_id",
        "endpoint",
        "status",
        "attempts",
        "next_attempt_at",
        "last_status_code",
        "last_error",
        "created_at",
        "delivered_at",
        "payload",
    ]
    readonly_fields = fields
    inlines = [WebhookAttemptInline]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("endpoint")

    @admin.display(description="last error")
    def last_error_short(self, obj):
        return obj.last_error if len(obj.last_error) <= 80 else f"{obj.last_error[:79]}…"


@admin.register(ServiceRequest, site=console_site)
class ServiceRequestConsoleAdmin(ProviderReadOnlyAdmin):
    """The service requests broadcast to the provider, read-only, each with a link to its page
    where the provider answers with its availability (or with the API)."""

    provider_field = "broadcast_to"
    list_display = [
        "id",
        "status",
        "volume",
        "deadline",
        "services_needed",
        "price_limit",
        "your_answer",
        "answer_link",
    ]
    list_filter = ["status"]
    fields = [
        "status",
        "data_bytes",
        "deadline",
        "services",
        "price_limit_minor",
        "currency",
        "sla_min_rate_mbps",
        "created_at",
    ]
    readonly_fields = fields

    @admin.display(description="volume")
    def volume(self, obj):
        return filesizeformat(obj.data_bytes)

    @admin.display(description="services")
    def services_needed(self, obj):
        return ", ".join(obj.services) or "—"

    @admin.display(description="price limit")
    def price_limit(self, obj):
        if obj.price_limit_minor is None:
            return "none"
        return money_format(obj.price_limit_minor, obj.currency)

    @admin.display(description="your answer")
    def your_answer(self, obj):
        if obj.answered_until is None:
            return "not yet"
        return f"valid until {obj.answered_until:%Y-%m-%d %H:%M} UTC"

    @admin.display(description="")
    def answer_link(self, obj):
        return format_html(
            '<a href="{}">Open and answer</a>', reverse("service_request_detail", args=[obj.pk])
        )

    def get_queryset(self, request):
        # the latest validity of the acting provider's own answers (the admin is shared by
        # every request: nothing per request is kept on it)
        provider = console_provider(request)
        return (
            super()
            .get_queryset(request)
            .annotate(
                answered_until=Max(
                    "availability__valid_until", filter=Q(availability__provider=provider)
                )
            )
        )


# --- Ratings ----------------------------------------------------------------------------------


@admin.register(Rating, site=console_site)
class RatingConsoleAdmin(ProviderReadOnlyAdmin):
    """Ratings of the provider by its recipients and of its recipients (by the provider, or set
    from payments), read-only. Above the list: the provider's aggregates and the lease holders
    it may rate now, each linked to the rating form; replies are given on the ratings page."""

    change_list_template = "billing/ratings/console_change_list.html"
    list_display = ["created_at", "kind", "source", "recipient", "lease", "job", "positive"]
    list_filter = ["kind", "source", "positive"]
    fields = [*list_display, "quality", "communication", "delivery", "comment", "reply"]
    readonly_fields = fields

    def changelist_view(self, request, extra_context=None):
        provider = console_provider(request)
        extra_context = {
            **(extra_context or {}),
            "rating_summary": provider_rating_summary(provider=provider) if provider else None,
            "rateables": [
                rateable
                for rateable in rateables_of(organization=provider.organization)
                if rateable.kind == RatingKind.RECIPIENT
            ]
            if provider
            else [],
        }
        return super().changelist_view(request, extra_context)


# --- Settlements ------------------------------------------------------------------------------


@admin.register(Settlement, site=console_site)
class SettlementConsoleAdmin(ProviderReadOnlyAdmin):
    """What the exchange owes the provider per period and currency: the paid lines attributed
    to it (gross), the exchange's fee and the net; read-only, each downloadable as CSV."""

    list_display = ["period", "currency", "gross", "fee", "net", "lines_count", "csv_link"]
    list_filter = ["currency"]
    fields = [
        "period",
        "currency",
        "gross",
        "fee_rate",
        "fee",
        "reversals",
        "net",
        "lines_count",
        "created_at",
        "csv_link",
    ]
    readonly_fields = fields

    @admin.display(description="period", ordering="period_start")
    def period(self, obj):
        last_day = obj.period_end - timedelta(days=1)
        return f"{obj.period_start:%Y-%m-%d} to {last_day:%Y-%m-%d}"

    @admin.display(description="gross", ordering="gross_minor")
    def gross(self, obj):
        return money_format(obj.gross_minor, obj.currency)

    @admin.display(description="exchange's fee rate")
    def fee_rate(self, obj):
        return f"{obj.fee_bps / 100:g} %"

    @admin.display(description="exchange's fee", ordering="fee_minor")
    def fee(self, obj):
        return money_format(obj.fee_minor, obj.currency)

    @admin.display(description="returned after lost disputes", ordering="reversals_minor")
    def reversals(self, obj):
        return money_format(obj.reversals_minor, obj.currency)

    @admin.display(description="net (paid to you)", ordering="net_minor")
    def net(self, obj):
        return money_format(obj.net_minor, obj.currency)

    @admin.display(description="download")
    def csv_link(self, obj):
        return format_html(
            '<a href="{}" download>CSV</a>',
            reverse("console:billing_settlement_csv", args=[obj.pk]),
        )

    def get_urls(self):
        own = [
            path(
                "<path:object_id>/csv/",
                self.admin_site.admin_view(self.csv_view),
                name="billing_settlement_csv",
            )
        ]
        return own + super().get_urls()

    def csv_view(self, request, object_id):
        settlement = self.get_object(request, unquote(object_id))  # 404 if not the provider's
        return settlement_csv_response(settlement)
