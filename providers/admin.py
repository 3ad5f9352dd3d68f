"""Staff admin for providers: verification records who verified and when."""

from django.contrib import admin, messages

from providers.models import Network, Offer, ProviderProfile, RoutingPath, RoutingPathHop
from providers.services import provider_suspend, provider_verify


class NetworkInline(admin.TabularInline):
    model = Network
    extra = 0


class OfferInline(admin.TabularInline):
    model = Offer
    extra = 0


@admin.register(ProviderProfile)
class ProviderProfileAdmin(admin.ModelAdmin):
    list_display = [
        "legal_name",
        "organization",
        "status",
        "applied_at",
        "verified_at",
        "verified_by",
    ]
    list_filter = ["status"]
    search_fields = ["legal_name", "organization__name", "contact_email"]
    readonly_fields = ["status", "applied_at", "verified_at", "verified_by"]
    inlines = [NetworkInline, OfferInline]
    actions = ["verify_selected", "suspend_selected"]

    @admin.action(description="Verify selected providers")
    def verify_selected(self, request, queryset):
        for provider in queryset:
            provider_verify(provider=provider, staff_user=request.user)
        self.message_user(request, f"Verified {queryset.count()} provider(s).", messages.SUCCESS)

    @admin.action(description="Suspend selected providers")
    def suspend_selected(self, request, queryset):
        for provider in queryset:
            provider_suspend(
                provider=provider, staff_user=request.user, reason="suspended in admin"
            )
        self.message_user(request, f"Suspended {queryset.count()} provider(s).", messages.WARNING)


class RoutingPathHopInline(admin.TabularInline):
    model = RoutingPathHop
    extra = 0


@admin.register(RoutingPath)
class RoutingPathAdmin(admin.ModelAdmin):
    list_display = ["name", "provider", "capacity_mbps"]
    inlines = [RoutingPathHopInline]


@admin.register(Network)
class NetworkAdmin(admin.ModelAdmin):
    list_display = ["name", "provider", "technology", "region"]
    list_filter = ["technology"]


@admin.register(Offer)
class OfferAdmin(admin.ModelAdmin):
    list_display = [
        "provider",
        "service",
        "price_per_gb_minor",
        "price_per_minute_minor",
        "currency",
    ]
    list_filter = ["service"]
