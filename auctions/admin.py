"""Auctions in the provider console (the provider's own blocks, auctions, bids and leases) and
in the staff admin (moderators cancel auctions and retract bids)."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from auctions.live import bidder_handle
from auctions.models import Auction, Bid, Lease, ServiceBlock
from auctions.services import (
    RETRACT_PERMISSION,
    BidRejected,
    auction_build,
    auction_cancel,
    bid_retract,
    block_build,
)
from marketplace.money import money_format
from providers.console import ProviderScopedAdmin, console_provider, console_site


def _errors_onto(form, error: ValidationError | PermissionDenied) -> None:
    if isinstance(error, ValidationError) and hasattr(error, "error_dict"):
        for field, field_errors in error.error_dict.items():
            form.add_error(field if field in form.fields else None, field_errors)
    elif isinstance(error, ValidationError):
        form.add_error(None, error.messages)
    else:
        form.add_error(None, str(error))


class ServiceBlockConsoleForm(forms.ModelForm):
    class Meta:
        model = ServiceBlock
        fields = [
            "starts_at",
            "ends_at",
            "max_rate_mbps",
            "min_rate_mbps",
            "seats",
            "data_cap_gb",
            "description",
        ]

    def _post_clean(self):
        # The service validates (verified provider, times, rates); its block becomes ours.
        if self.errors:
            return
        try:
            built = block_build(provider=self.provider, **self.cleaned_data)
        except (ValidationError, PermissionDenied) as error:
            _errors_onto(self, error)
            return
        built.pk = self.instance.pk
        self.instance = built


class AuctionConsoleForm(forms.ModelForm):
    class Meta:
        model = Auction
        fields = [
            "block",
            "opens_at",
            "closes_at",
            "currency",
            "start_price_minor",
            "reserve_price_minor",
            "buy_now_price_minor",
            "soft_close_seconds",
            "max_extension_seconds",
        ]
        help_texts = {
            "start_price_minor": "In minor units (cents): 1000 is 10.00 USD.",
            "reserve_price_minor": "Hidden from bidders; they only see whether it is met.",
        }

    def _post_clean(self):
        if self.errors:
            return
        try:
            built = auction_build(**self.cleaned_data)
        except (ValidationError, PermissionDenied) as error:
            _errors_onto(self, error)
            return
        self.instance = built


class ConsoleReadOnly:
    """Bids and leases are records: the console shows them and changes nothing."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(ServiceBlock, site=console_site)
class ServiceBlockConsoleAdmin(ProviderScopedAdmin):
    form = ServiceBlockConsoleForm
    list_display = ["__str__", "starts_at", "ends_at", "max_rate_mbps", "min_rate_mbps", "seats"]
    date_hierarchy = "starts_at"

    def get_form(self, request, obj=None, change=False, **kwargs):
        form_class = super().get_form(request, obj, change, **kwargs)
        form_class.provider = console_provider(request)
        return form_class

    def has_change_permission(self, request, obj=None):
        # Terms of a block already up for auction stay as bidders saw them.
        if obj is not None and obj.auctions.exists():
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.auctions.exists():
            return False
        return super().has_delete_permission(request, obj)


@admin.register(Auction, site=console_site)
class AuctionConsoleAdmin(ProviderScopedAdmin):
    form = AuctionConsoleForm
    provider_field = "block__provider"
    list_display = ["pk", "block", "status", "opens_at", "closes_at", "price", "bid_count"]
    list_filter = ["status"]

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "block":
            kwargs["queryset"] = ServiceBlock.objects.filter(provider=console_provider(request))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change):
        # The block (chosen among the provider's own) carries the provider; nothing to stamp.
        obj.save()

    def get_form(self, request, obj=None, change=False, **kwargs):
        return admin.ModelAdmin.get_form(self, request, obj, change, **kwargs)

    def has_change_permission(self, request, obj=None):
        # Auctions are not edited once listed; staff may cancel one.
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="price")
    def price(self, obj):
        if obj.current_price_minor is None:
            return f"from {money_format(obj.start_price_minor, obj.currency)}"
        return money_format(obj.current_price_minor, obj.currency)


@admin.register(Bid, site=console_site)
class BidConsoleAdmin(ConsoleReadOnly, ProviderScopedAdmin):
    provider_field = "auction__block__provider"
    list_display = [
        "auction",
        "seq",
        "bidder_handle",
        "amount_minor",
        "price_after_minor",
        "placed_at",
    ]
    # only this provider's auctions to filter by, not every auction of the exchange
    list_filter = [("auction", admin.RelatedOnlyFieldListFilter)]
    fields = ["auction", "seq", "bidder_handle", "amount_minor", "price_after_minor", "placed_at"]
    readonly_fields = fields

    @admin.display(description="bidder")
    def bidder_handle(self, obj):
        # Providers see bidders as the anonymous handles everyone sees, not their names.
        return bidder_handle(obj.auction_id, obj.bidder_id)


@admin.register(Lease, site=console_site)
class LeaseConsoleAdmin(ConsoleReadOnly, ProviderScopedAdmin):
    provider_field = "block__provider"
    list_display = ["auction", "winner", "price", "starts_at", "ends_at", "bought_now"]
    fields = ["auction", "winner", "price", "starts_at", "ends_at", "bought_now", "created_at"]
    readonly_fields = fields

    @admin.display(description="price")
    def price(self, obj):
        return money_format(obj.price_minor, obj.currency)


# --- Staff admin --------------------------------------------------------------------------------


class BidInline(admin.TabularInline):
    model = Bid
    extra = 0
    can_delete = False
    fields = [
        "seq",
        "bidder",
        "user",
        "amount_minor",
        "max_amount_minor",
        "price_after_minor",
        "retracted_at",
        "retract_link",
    ]
    readonly_fields = fields

    @admin.display(description="retract")
    def retract_link(self, obj):
        if obj.pk is None or obj.retracted_at is not None:
            return ""
        url = reverse("admin:auctions_bid_retract", args=[obj.pk])
        return format_html('<a href="{}">Retract…</a>', url)

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Auction)
class AuctionAdmin(admin.ModelAdmin):
    list_display = ["pk", "block", "status", "closes_at", "current_price_minor", "leader"]
    list_filter = ["status"]
    readonly_fields = ["current_price_minor", "leader", "leader_max_minor", "bid_count", "seq"]
    inlines = [BidInline]
    actions = ["cancel_selected"]

    @admin.action(description="Cancel selected auctions (nobody wins)")
    def cancel_selected(self, request, queryset):
        for auction in queryset:
            auction_cancel(auction=auction, staff_user=request.user, reason="cancelled by staff")
        self.message_user(request, f"Cancelled {queryset.count()} auction(s).", messages.WARNING)


@admin.register(ServiceBlock)
class ServiceBlockAdmin(admin.ModelAdmin):
    list_display = ["__str__", "provider", "starts_at", "max_rate_mbps", "seats"]


@admin.register(Lease)
class LeaseAdmin(admin.ModelAdmin):
    list_display = ["auction", "winner", "price_minor", "currency", "starts_at", "bought_now"]


class BidRetractForm(forms.Form):
    reason = forms.CharField(
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Recorded in the audit log; bids are binding, so say why this one is not.",
    )


@admin.register(Bid)
class BidAdmin(admin.ModelAdmin):
    """Bids are records: staff read them and may retract one (with a reason), nothing else."""

    list_display = ["pk", "auction", "seq", "bidder", "amount_minor", "placed_at", "retracted_at"]
    list_filter = ["channel", ("retracted_at", admin.EmptyFieldListFilter)]
    search_fields = ["bidder__name", "auction__pk"]
    list_select_related = ["auction", "bidder"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_urls(self):
        retract = self.admin_site.admin_view(self.retract_view)
        return [
            path("<int:bid_id>/retract/", retract, name="auctions_bid_retract"),
            *super().get_urls(),
        ]

    def retract_view(self, request, bid_id: int):
        if not (request.user.is_staff and request.user.has_perm(RETRACT_PERMISSION)):
            raise PermissionDenied
        bid = get_object_or_404(Bid.objects.select_related("auction", "bidder"), pk=bid_id)
        form = BidRetractForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                bid_retract(
                    bid_id=bid.pk, staff_user=request.user, reason=form.cleaned_data["reason"]
                )
            except BidRejected as rejected:
                form.add_error(None, rejected.message)
            except ValidationError as error:
                _errors_onto(form, error)
            else:
                self.message_user(
                    request,
                    f"Bid #{bid.pk} retracted; auction #{bid.auction_id} was recomputed.",
                    messages.WARNING,
                )
                return redirect("admin:auctions_auction_change", bid.auction_id)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Retract bid #{bid.pk}",
            "bid": bid,
            "amount": money_format(bid.amount_minor, bid.auction.currency),
            "form": form,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/auctions/bid/retract.html", context)
