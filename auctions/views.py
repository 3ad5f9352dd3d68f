"""Auction pages: the list with its filters, and one auction's live page with the bid form that
also works as a plain POST (the page's script sends the same bid over the websocket)."""

import uuid
from datetime import datetime

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from auctions.forms import AuctionFilterForm, BidForm
from auctions.groups import groups_of
from auctions.live import bidder_handle
from auctions.models import ENDED_STATUSES, Auction, Bid, BidChannel
from auctions.selectors import (
    auction_is_ended,
    auction_snapshot,
    auctions_filter,
    auctions_public,
    lease_of,
)
from auctions.services import BidRejected, auction_buy_now, bid_place
from marketplace.models import Organization
from marketplace.money import CURRENCY_EXPONENTS, money_format
from marketplace.ratelimit import bid_rate_count
from providers.selectors import providers_public

AUCTIONS_PER_PAGE = 50


def auction_list(request):
    form = AuctionFilterForm(request.GET or None, providers=providers_public())
    form.is_valid()  # invalid filters are shown as errors and ignored
    filters = getattr(form, "cleaned_data", {})
    status = filters.get("status") or "live"
    queryset = auctions_public()
    if status == "ended":
        queryset = queryset.filter(status__in=ENDED_STATUSES).order_by("-closes_at")
    auctions = auctions_filter(
        queryset,
        status=status if status in ("live", "open") else None,
        closing_soon=status == "closing_soon",
        provider_slug=filters.get("provider") or None,
        min_rate_mbps=filters.get("min_rate"),
        max_rate_mbps=filters.get("max_rate"),
    )
    page = Paginator(auctions, AUCTIONS_PER_PAGE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "auctions/list.html",
        {"form": form, "page": page, "status": status, "query": query.urlencode()},
    )


def _viewer(request) -> Organization | None:
    """The organization whose standing the page shows: the current one, if it buys (a buying
    group's account bids too: its admins use the ordinary form, the service applies the
    group's rules)."""
    organization = request.organization
    if organization is not None and (organization.is_recipient or organization.is_group):
        return organization
    return None


def _group_standings(request, auction: Auction, lease) -> list[dict]:
    """For each buying group of the user that bid on the auction: leading or outbid (won or
    not once ended), and its bidder handle, which the page's script compares with the
    leader of the live events. While the auction runs, the user's other groups come too,
    as hidden lines the script shows once such a group leads (its first bid, live)."""
    if not request.user.is_authenticated:
        return []
    groups = list(groups_of(request.user))
    bidders = set(
        Bid.objects.filter(
            auction=auction,
            bidder_id__in=[group.organization_id for group in groups],
            retracted_at__isnull=True,
        ).values_list("bidder_id", flat=True)
    )
    ended = auction_is_ended(auction)
    return [
        {
            "name": group.organization.name,
            "handle": bidder_handle(auction.pk, group.organization_id),
            "bid": group.organization_id in bidders,
            "leading": auction.leader_id == group.organization_id,
            "won": lease is not None and lease.winner_id == group.organization_id,
        }
        for group in groups
        if group.organization_id in bidders or not ended
    ]


def _bid_message(outcome, currency: str) -> str:
    price = money_format(outcome.auction.current_price_minor, currency)
    if outcome.replayed:
        return f"That bid was already placed. The current price is {price}."
    if outcome.leading:
        return f"Your bid is in. You are leading at {price}."
    return f"Your bid is in, but another bidder's maximum is higher: the price is now {price}."


def auction_detail(request, pk):
    auction = get_object_or_404(auctions_public(), pk=pk)
    form = BidForm(
        request.POST if request.method == "POST" else None,
        currency=auction.currency,
        initial={"client_bid_id": uuid.uuid4().hex},
    )
    if request.method == "POST":
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        limited = bid_rate_count(request.user)
        if not limited.allowed:
            form.add_error(
                None, f"Too many bids: wait {limited.retry_after} seconds, then bid again."
            )
            context = _detail_context(request, auction, form)
            response = render(request, "auctions/detail.html", context, status=429)
            response["Retry-After"] = str(limited.retry_after)
            return response
        if request.organization is None:
            form.add_error(None, "Join or create a buyer organization to bid.")
        elif form.is_valid():
            try:
                outcome = bid_place(
                    auction_id=auction.pk,
                    bidder=request.organization,
                    user=request.user,
                    amount_minor=form.cleaned_data["amount"],
                    max_amount_minor=form.cleaned_data["max_amount"],
                    client_bid_id=form.cleaned_data["client_bid_id"],
                    channel=BidChannel.WEB,
                )
            except BidRejected as rejection:
                if rejection.code == "auction_not_open":
                    # The page of an ended auction has no form to show the error in.
                    messages.error(request, rejection.message)
                    return redirect("auction_detail", pk=auction.pk)
                field = "amount" if rejection.code in ("bid_too_low", "invalid_amount") else None
                form.add_error(field, rejection.message)
            else:
                level = messages.SUCCESS if outcome.leading else messages.WARNING
                messages.add_message(request, level, _bid_message(outcome, auction.currency))
                return redirect("auction_detail", pk=auction.pk)
    return render(request, "auctions/detail.html", _detail_context(request, auction, form))


def _detail_context(request, auction: Auction, form: BidForm) -> dict:
    viewer = _viewer(request)
    snapshot = auction_snapshot(auction=auction, viewer=viewer)
    you_bid = (
        viewer is not None
        and Bid.objects.filter(auction=auction, bidder=viewer, retracted_at__isnull=True).exists()
    )
    lease = lease_of(auction=auction) if auction_is_ended(auction) else None
    history = [
        {**bid, "placed_at": datetime.fromisoformat(bid["placed_at"])}
        for bid in reversed(snapshot["bids"])
    ]
    own = (
        request.organization is not None
        and request.organization.pk == auction.block.provider.organization_id
    )
    return {
        "auction": auction,
        "service_block": auction.block,
        "provider": auction.block.provider,
        "snapshot": snapshot,
        "history": history,
        "form": form,
        "ended": auction_is_ended(auction),
        "lease": lease,
        "winner": bidder_handle(auction.pk, lease.winner_id) if lease else None,
        "you_won": lease is not None and viewer is not None and lease.winner_id == viewer.pk,
        "you_bid": you_bid,
        "group_standings": _group_standings(request, auction, lease),
        "own_auction": own,
        "can_bid": viewer is not None and not own,
        "live_config": {
            "auction_id": auction.pk,
            "ws_path": f"/ws/auctions/{auction.pk}/",
            "currency": auction.currency,
            "exponent": CURRENCY_EXPONENTS[auction.currency],
            "you_bid": you_bid,
            "snapshot": snapshot,
        },
    }


@require_POST
def auction_buy_now_view(request, pk):
    auction = get_object_or_404(auctions_public(), pk=pk)
    if not request.user.is_authenticated:
        return redirect_to_login(reverse("auction_detail", kwargs={"pk": auction.pk}))
    if request.organization is None:
        messages.error(request, "Join or create a buyer organization to buy.")
        return redirect("auction_detail", pk=auction.pk)
    try:
        lease = auction_buy_now(
            auction_id=auction.pk, buyer=request.organization, user=request.user
        )
    except BidRejected as rejection:
        messages.error(request, rejection.message)
    else:
        messages.success(
            request,
            f"You bought this block for {money_format(lease.price_minor, lease.currency)}.",
        )
    return redirect("auction_detail", pk=auction.pk)
