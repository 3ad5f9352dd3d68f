"""Writes for blocks, auctions, bids and leases. Every bid goes through `bid_place`: the web form,
the live page and the API call the same function.

Rules (SPEC §4.2): English ascending auction; the minimum next bid follows the increment bands;
proxy bidding (the exchange bids for a bidder one increment at a time up to its maximum; the
winner pays one increment over the runner-up's maximum, capped at its own; on equal maxima the
earlier bidder leads); a hidden reserve shown only as met / not met; buy-now only until the
first bid; soft close (an accepted bid in the last `soft_close_seconds` moves the close to
now + that window, never beyond `max_extension_seconds` after the scheduled close).

Bids on one auction are serialized by locking the auction row (`select_for_update`). On
SQLite, whose transactions here take the database's write lock when they begin, the same code
is serialized by the database itself.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from auctions.groups import group_amounts_check, group_bidder_check, lease_shares_record
from auctions.live import auction_events_publish, bidder_handle
from auctions.models import (
    LIVE_STATUSES,
    Auction,
    AuctionStatus,
    Bid,
    BidChannel,
    GroupOffer,
    GroupOfferStatus,
    Lease,
    ServiceBlock,
    default_increment_bands,
)
from marketplace.live import organization_notify
from marketplace.models import Membership, Organization, User
from marketplace.money import currency_validate, money_format
from marketplace.services import audit_log_record
from providers.models import ProviderProfile
from providers.services import provider_assert_can_sell

# The staff permission to retract a bid (superusers have it; grant it to moderators).
RETRACT_PERMISSION = "auctions.retract_bid"


class BidRejected(Exception):
    """A bid the rules refuse; `code` is stable and machine-readable."""

    def __init__(self, code: str, message: str, **extra):
        super().__init__(message)
        self.code = code
        self.message = message
        self.extra = extra


# --- Increments and the price rule ------------------------------------------------------------


def increment_bands_validate(bands) -> list[dict]:
    """Check an increment table: bands from 0 upwards, each with a positive increment."""
    if not isinstance(bands, list) or not bands:
        raise ValidationError({"increment_bands": "Give at least one increment band."})
    cleaned = []
    for band in bands:
        if not isinstance(band, dict):
            raise ValidationError(
                {"increment_bands": "Each band is {from_minor, increment_minor}."}
            )
        start, step = band.get("from_minor"), band.get("increment_minor")
        for value in (start, step):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValidationError({"increment_bands": "Band amounts are whole minor units."})
        if start < 0 or step < 1:
            raise ValidationError(
                {"increment_bands": "Bands start at 0 or more and increase by at least 1."}
            )
        cleaned.append({"from_minor": start, "increment_minor": step})
    starts = [band["from_minor"] for band in cleaned]
    if starts[0] != 0 or starts != sorted(set(starts)):
        raise ValidationError(
            {"increment_bands": "The first band starts at 0 and bands ascend without repeats."}
        )
    return cleaned


def increment_at(price_minor: int, bands: list[dict]) -> int:
    """The bid increment that applies at this price."""
    step = bands[0]["increment_minor"]
    for band in bands:
        if price_minor >= band["from_minor"]:
            step = band["increment_minor"]
        else:
            break
    return step


def minimum_next_bid(auction: Auction) -> int:
    """The lowest amount a bidder other than the leader may bid now."""
    if auction.current_price_minor is None:
        return auction.start_price_minor
    return auction.current_price_minor + increment_at(
        auction.current_price_minor, auction.increment_bands
    )


@dataclass
class Standing:
    """What a bid changes: the visible price, the leader and the leader's hidden maximum."""

    price_minor: int
    leader_id: int
    leader_max_minor: int


def bid_resolve(*, auction: Auction, bidder_id: int, amount_minor: int, max_minor: int) -> Standing:
    """Apply the price rules to one bid against the auction's standing; raise BidRejected if
    the rules refuse it. Pure: changes nothing."""
    bands = auction.increment_bands
    if auction.leader_id is None:
        if amount_minor < auction.start_price_minor:
            raise BidRejected(
                "bid_too_low",
                f"The first bid must be at least the start price, "
                f"{money_format(auction.start_price_minor, auction.currency)}.",
                minimum_minor=auction.start_price_minor,
            )
        standing = Standing(amount_minor, bidder_id, max_minor)
    elif auction.leader_id == bidder_id:
        # The leader cannot bid against itself; it can only raise its hidden maximum.
        if max_minor <= auction.leader_max_minor:
            raise BidRejected(
                "already_leading",
                "You are already leading; to bid again, raise your maximum above your current one.",
            )
        standing = Standing(auction.current_price_minor, bidder_id, max_minor)
    else:
        minimum = minimum_next_bid(auction)
        if amount_minor < minimum:
            raise BidRejected(
                "bid_too_low",
                f"Bid at least {money_format(minimum, auction.currency)}.",
                minimum_minor=minimum,
            )
        leader_max = auction.leader_max_minor
        if max_minor > leader_max:
            # The challenger takes the lead and pays one increment over the old leader's
            # maximum, capped at its own maximum, and never less than what it bid.
            price = max(amount_minor, min(max_minor, leader_max + increment_at(leader_max, bands)))
            standing = Standing(price, bidder_id, max_minor)
        else:
            # The leader's proxy answers one increment over the challenger, up to its maximum;
            # on equal maxima the earlier bidder keeps the lead.
            price = min(leader_max, max_minor + increment_at(max_minor, bands))
            standing = Standing(price, auction.leader_id, leader_max)
    reserve = auction.reserve_price_minor
    if (
        reserve is not None
        and standing.leader_max_minor >= reserve
        and standing.price_minor < reserve
    ):
        # A leader whose maximum covers the reserve is raised to the reserve at once.
        standing.price_minor = reserve
    return standing


# --- Blocks and auctions ------------------------------------------------------------------------


def _whole_minor(value, name: str, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValidationError({name: f"Give a whole amount of at least {minimum} minor units."})
    return value


def block_build(
    *,
    provider: ProviderProfile,
    starts_at: datetime,
    ends_at: datetime,
    max_rate_mbps: int,
    min_rate_mbps: int,
    seats: int = 1,
    data_cap_gb: int | None = None,
    description: str = "",
) -> ServiceBlock:
    """A validated, unsaved block (verified providers only); `block_create` saves it."""
    provider_assert_can_sell(provider=provider)
    if starts_at <= timezone.now():
        raise ValidationError({"starts_at": "A block must start in the future."})
    block = ServiceBlock(
        provider=provider,
        starts_at=starts_at,
        ends_at=ends_at,
        max_rate_mbps=max_rate_mbps,
        min_rate_mbps=min_rate_mbps,
        seats=seats,
        data_cap_gb=data_cap_gb,
        description=description.strip(),
    )
    block.full_clean()
    return block


@transaction.atomic
def block_create(*, provider: ProviderProfile, **fields) -> ServiceBlock:
    """List a block of segmentation-service time (verified providers only)."""
    block = block_build(provider=provider, **fields)
    block.save()
    return block


def auction_build(
    *,
    block: ServiceBlock,
    opens_at: datetime,
    closes_at: datetime,
    start_price_minor: int,
    currency: str = "USD",
    reserve_price_minor: int | None = None,
    buy_now_price_minor: int | None = None,
    increment_bands: list[dict] | None = None,
    soft_close_seconds: int = 120,
    max_extension_seconds: int = 3600,
) -> Auction:
    """A validated, unsaved auction of a block; `auction_create` saves it. It must close,
    extensions included, before the block starts."""
    provider_assert_can_sell(provider=block.provider)
    currency_validate(currency)
    _whole_minor(start_price_minor, "start_price_minor", minimum=1)
    if reserve_price_minor is not None:
        _whole_minor(reserve_price_minor, "reserve_price_minor", minimum=start_price_minor)
    if buy_now_price_minor is not None:
        floor = max(start_price_minor, reserve_price_minor or 0) + 1
        if (
            isinstance(buy_now_price_minor, bool)
            or not isinstance(buy_now_price_minor, int)
            or buy_now_price_minor < floor
        ):
            raise ValidationError(
                {"buy_now_price_minor": "The buy-now price must be above the start and reserve."}
            )
    if closes_at <= opens_at:
        raise ValidationError({"closes_at": "An auction must close after it opens."})
    if closes_at <= timezone.now():
        raise ValidationError({"closes_at": "The close must be in the future."})
    latest_close = closes_at + timedelta(seconds=max_extension_seconds)
    if latest_close > block.starts_at:
        raise ValidationError(
            {
                "closes_at": "The auction must close, with all soft-close extensions, before "
                "the block starts."
            }
        )
    if soft_close_seconds < 0 or max_extension_seconds < 0:
        raise ValidationError({"soft_close_seconds": "Durations cannot be negative."})
    if block.pk is not None and Lease.objects.filter(block=block).exists():
        raise ValidationError({"block": "This block is leased already."})
    if (
        block.pk is not None
        and GroupOffer.objects.filter(block=block, status=GroupOfferStatus.OPEN).exists()
    ):
        raise ValidationError({"block": "This block is offered to a buying group."})
    bands = increment_bands_validate(
        increment_bands if increment_bands is not None else default_increment_bands()
    )
    auction = Auction(
        block=block,
        opens_at=opens_at,
        closes_at=closes_at,
        scheduled_close_at=closes_at,
        currency=currency,
        start_price_minor=start_price_minor,
        reserve_price_minor=reserve_price_minor,
        buy_now_price_minor=buy_now_price_minor,
        increment_bands=bands,
        soft_close_seconds=soft_close_seconds,
        max_extension_seconds=max_extension_seconds,
        status=AuctionStatus.OPEN if opens_at <= timezone.now() else AuctionStatus.SCHEDULED,
    )
    auction.full_clean()
    return auction


@transaction.atomic
def auction_create(*, block: ServiceBlock, **fields) -> Auction:
    """Put a block up for auction (see `auction_build` for the rules)."""
    # the block locked: an offer to a group of the same block waits, then sees the auction
    block = ServiceBlock.objects.select_for_update().get(pk=block.pk)
    auction = auction_build(block=block, **fields)
    auction.save()
    return auction


# --- Bidding ------------------------------------------------------------------------------------


@dataclass
class BidOutcome:
    """What placing a bid did."""

    bid: Bid
    auction: Auction
    leading: bool
    replayed: bool = False
    events: list[dict] = field(default_factory=list)


def _event(auction: Auction, kind: str, **data) -> dict:
    auction.seq += 1
    return {"type": kind, "auction_id": auction.pk, "seq": auction.seq, **data}


def bidder_assert_eligible(*, auction_id: int, bidder: Organization, user: User) -> None:
    """Only members of an active recipient organization, never on their own auction. Checked
    before the auction is locked: none of it changes with the bidding."""
    seller = (
        Auction.objects.filter(pk=auction_id)
        .values_list("block__provider__organization_id", flat=True)
        .first()
    )
    if seller is None:
        raise BidRejected("auction_not_found", "There is no such auction.")
    if not bidder.is_active or not (bidder.is_recipient or bidder.is_group):
        raise BidRejected("not_a_buyer", "Only active buyer (recipient) organizations can bid.")
    if not Membership.objects.filter(user=user, organization=bidder).exists():
        raise BidRejected("not_a_buyer", f"You are not a member of {bidder}.")
    if seller == bidder.pk:
        raise BidRejected("own_auction", "You cannot bid on your own organization's auction.")
    if bidder.is_group:
        # a group pays through its payers' cards; its admins bid (auctions.groups)
        group_bidder_check(bidder=bidder, user=user)
    else:
        billing_standing_check(bidder)


def billing_standing_check(bidder: Organization) -> None:
    """A bidder pays by card: it needs a card on file, and unpaid leases (on statements
    whose charge failed, waits for the bank's authentication, or was charged back after a
    lost dispute) block further bidding from UNPAID_LEASES_BLOCK on."""
    from billing.models import Card, LineItem, LineItemKind, StatementStatus

    if not Card.objects.filter(account__organization=bidder).exists():
        raise BidRejected(
            "card_required",
            "Add a card on file before bidding (Billing → Cards): a won auction is charged to it.",
        )
    limit = settings.UNPAID_LEASES_BLOCK
    unpaid = (
        LineItem.objects.filter(
            organization=bidder,
            kind=LineItemKind.AUCTION,
            statement__status__in=(
                StatementStatus.PAYMENT_FAILED,
                StatementStatus.ACTION_REQUIRED,
                StatementStatus.CHARGED_BACK,
            ),
        )
        .values("lease")
        .distinct()
        .count()
    )
    if limit and unpaid >= limit:
        raise BidRejected(
            "unpaid_leases",
            f"{unpaid} of your leases are unpaid: pay their statements (Billing → "
            "Statements) before bidding again.",
        )


# The largest amount a database bigint column holds.
MAX_AMOUNT_MINOR = 2**63 - 1


def _amounts_check(amount_minor, max_amount_minor) -> tuple[int, int]:
    for value in (amount_minor, max_amount_minor):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise BidRejected("invalid_amount", "Amounts are whole numbers of minor units.")
    if amount_minor is None or amount_minor < 1:
        raise BidRejected("invalid_amount", "A bid must be a positive amount.")
    if max(amount_minor, max_amount_minor or 0) > MAX_AMOUNT_MINOR:
        raise BidRejected("invalid_amount", "That amount is beyond what the exchange can hold.")
    if max_amount_minor is not None and max_amount_minor < amount_minor:
        raise BidRejected("invalid_amount", "Your maximum cannot be below your bid.")
    return amount_minor, max_amount_minor if max_amount_minor is not None else amount_minor


def _auction_locked(auction_id: int) -> Auction:
    try:
        return (
            # Lock only the auction row: bids on other auctions of the provider go on.
            Auction.objects.select_for_update(of=("self",))
            .select_related("block__provider__organization")
            .get(pk=auction_id)
        )
    except Auction.DoesNotExist:
        raise BidRejected("auction_not_found", "There is no such auction.") from None


def _assert_open(auction: Auction, now: datetime) -> None:
    provider = auction.block.provider
    if not provider.is_verified or not provider.organization.is_active:
        # A provider suspended while its auction runs sells nothing more.
        raise BidRejected("auction_not_open", "This auction is suspended by the exchange.")
    if auction.status not in LIVE_STATUSES or now >= auction.closes_at:
        raise BidRejected("auction_not_open", "This auction has ended.")
    if now < auction.opens_at:
        raise BidRejected(
            "auction_not_open", f"This auction opens at {auction.opens_at:%Y-%m-%d %H:%M:%S} UTC."
        )


def _extend_if_in_soft_close(auction: Auction, now: datetime, events: list[dict]) -> None:
    window = timedelta(seconds=auction.soft_close_seconds)
    if not window or auction.closes_at - now > window:
        return
    cap = auction.scheduled_close_at + timedelta(seconds=auction.max_extension_seconds)
    new_close = min(now + window, cap)
    if new_close > auction.closes_at:
        auction.closes_at = new_close
        auction.extensions += 1
        events.append(
            _event(
                auction,
                "auction.extended",
                closes_at=new_close.isoformat(),
                extensions=auction.extensions,
            )
        )


def _replay(auction: Auction, bid: Bid) -> BidOutcome:
    return BidOutcome(
        bid=bid, auction=auction, leading=auction.leader_id == bid.bidder_id, replayed=True
    )


# What a bid, or a bid's retraction, changes on its auction.
STANDING_FIELDS = [
    "current_price_minor",
    "leader",
    "leader_user",
    "leader_max_minor",
    "bid_count",
    "seq",
    "closes_at",
    "extensions",
]


@transaction.atomic
def bid_place(
    *,
    auction_id: int,
    bidder: Organization,
    user: User,
    amount_minor: int,
    max_amount_minor: int | None = None,
    client_bid_id: str = "",
    channel: str = BidChannel.WEB,
) -> BidOutcome:
    """Place a bid (a proxy bid when `max_amount_minor` is given). The same `client_bid_id`
    from the same bidder returns the first outcome instead of bidding twice."""
    amount_minor, max_minor = _amounts_check(amount_minor, max_amount_minor)
    client_bid_id = (client_bid_id or "").strip()[:64]
    bidder_assert_eligible(auction_id=auction_id, bidder=bidder, user=user)
    auction = _auction_locked(auction_id)
    if client_bid_id:
        earlier = Bid.objects.filter(
            auction=auction, bidder=bidder, client_bid_id=client_bid_id
        ).first()
        if earlier is not None and earlier.retracted_at is not None:
            raise BidRejected(
                "bid_retracted",
                "The exchange's staff retracted that bid; it no longer counts. Place a new one.",
            )
        if earlier is not None:
            return _replay(auction, earlier)
    if bidder.is_group:
        group_amounts_check(
            bidder=bidder, currency=auction.currency, amounts=[amount_minor, max_amount_minor]
        )
    now = timezone.now()
    _assert_open(auction, now)
    standing = bid_resolve(
        auction=auction, bidder_id=bidder.pk, amount_minor=amount_minor, max_minor=max_minor
    )
    offered_minor = amount_minor
    if auction.leader_id == bidder.pk:
        # A leader's new bid only raises its hidden maximum; the history shows it at the
        # standing price, never below it.
        amount_minor = max(amount_minor, auction.current_price_minor)
    if auction.status == AuctionStatus.SCHEDULED:
        auction.status = AuctionStatus.OPEN
    auction.current_price_minor = standing.price_minor
    # The leader after a bid is either this bidder or the one who led before.
    if standing.leader_id == bidder.pk:
        auction.leader_user = user
    auction.leader_id = standing.leader_id
    auction.leader_max_minor = standing.leader_max_minor
    auction.bid_count += 1
    events = [
        _event(
            auction,
            "bid.placed",
            amount_minor=amount_minor,
            price_minor=standing.price_minor,
            currency=auction.currency,
            bidder=bidder_handle(auction.pk, bidder.pk),
            leader=bidder_handle(auction.pk, standing.leader_id),
            bid_count=auction.bid_count,
            reserve_met=auction.reserve_met,
            min_next_minor=minimum_next_bid(auction),
            placed_at=now.isoformat(),
        )
    ]
    bid = Bid.objects.create(
        auction=auction,
        bidder=bidder,
        user=user,
        amount_minor=amount_minor,
        offered_minor=offered_minor,
        max_amount_minor=max_amount_minor,
        price_after_minor=standing.price_minor,
        leader_after_id=standing.leader_id,
        seq=auction.seq,
        client_bid_id=client_bid_id,
        channel=channel,
        placed_at=now,
    )
    _extend_if_in_soft_close(auction, now, events)
    auction.save(update_fields=["status", *STANDING_FIELDS])
    audit_log_record(
        action="bid.placed",
        actor=user,
        organization=bidder,
        target=bid,
        data={
            "auction": auction.pk,
            "amount_minor": amount_minor,
            "price_after_minor": standing.price_minor,
            "currency": auction.currency,
            "proxy": max_amount_minor is not None,
            "channel": channel,
        },
    )
    transaction.on_commit(partial(auction_events_publish, auction.pk, events))
    return BidOutcome(
        bid=bid, auction=auction, leading=standing.leader_id == bidder.pk, events=events
    )


@transaction.atomic
def auction_buy_now(*, auction_id: int, buyer: Organization, user: User) -> Lease:
    """Buy the block at the buy-now price; offered only until the first bid. Ends the auction."""
    bidder_assert_eligible(auction_id=auction_id, bidder=buyer, user=user)
    auction = _auction_locked(auction_id)
    now = timezone.now()
    _assert_open(auction, now)
    if not auction.buy_now_available:
        raise BidRejected(
            "buy_now_unavailable", "Buy-now is no longer offered: bidding has started."
        )
    if buyer.is_group:
        group_amounts_check(
            bidder=buyer, currency=auction.currency, amounts=[auction.buy_now_price_minor]
        )
    auction.current_price_minor = auction.buy_now_price_minor
    auction.leader = buyer
    auction.leader_user = user
    auction.leader_max_minor = auction.buy_now_price_minor
    if auction.status == AuctionStatus.SCHEDULED:
        auction.status = AuctionStatus.OPEN
    audit_log_record(
        action="auction.bought_now",
        actor=user,
        organization=buyer,
        target=auction,
        data={"price_minor": auction.buy_now_price_minor},
    )
    return _auction_end(auction, now=now, bought_now=True).lease


def _standing_rebuild(auction: Auction) -> list[int]:
    """Recompute a locked auction's price, leader and hidden maximum from the bids that stand
    (not retracted), replayed in order through the rules of `bid_place` with what each bidder
    offered. A bid is passed over when the rules refuse it without the retracted ones (a
    leader's raise that no longer raises anything), or when its bidder could not place it now
    (no longer a member, no card, unpaid leases, a group whose payers' pledges no longer cover
    it): a retraction never revives a bid its bidder could not stand by. Each replayed bid's
    price and leader after it are rewritten to the replay's, so the history agrees with the
    standing. Returns the ids of the bids passed over."""
    auction.current_price_minor = None
    auction.leader = None
    auction.leader_user = None
    auction.leader_max_minor = None
    standing_bids = list(
        auction.bids.filter(retracted_at__isnull=True).select_related("bidder", "user")
    )
    eligible: dict[tuple[int, int | None], bool] = {}
    passed_over, replayed = [], []
    for bid in sorted(standing_bids, key=lambda bid: bid.seq):
        offered = bid.offered_minor or bid.amount_minor
        maximum = bid.max_amount_minor or offered
        try:
            key = (bid.bidder_id, bid.user_id)
            if key not in eligible:
                try:
                    if bid.user is None:
                        raise BidRejected("not_a_buyer", "The bidder's account is gone.")
                    bidder_assert_eligible(auction_id=auction.pk, bidder=bid.bidder, user=bid.user)
                    eligible[key] = True
                except BidRejected:
                    eligible[key] = False
            if not eligible[key]:
                raise BidRejected("not_eligible", "The bidder could not place this bid now.")
            if bid.bidder.is_group:
                group_amounts_check(
                    bidder=bid.bidder, currency=auction.currency, amounts=[offered, maximum]
                )
            standing = bid_resolve(
                auction=auction, bidder_id=bid.bidder_id, amount_minor=offered, max_minor=maximum
            )
        except BidRejected:
            passed_over.append(bid.pk)
            continue
        if standing.leader_id == bid.bidder_id:
            auction.leader_user_id = bid.user_id
        auction.current_price_minor = standing.price_minor
        auction.leader_id = standing.leader_id
        auction.leader_max_minor = standing.leader_max_minor
        bid.price_after_minor = standing.price_minor
        bid.leader_after_id = standing.leader_id
        replayed.append(bid)
    Bid.objects.bulk_update(replayed, ["price_after_minor", "leader_after"])
    auction.bid_count = len(replayed)
    return passed_over


@transaction.atomic
def bid_retract(*, bid_id: int, staff_user: User, reason: str) -> Auction:
    """Exchange staff retract a bid (bids are binding: nobody else can). The bid stays on
    record, marked retracted with who, when and why; the auction's standing is rebuilt from
    the bids that stand and every watcher is told (live, then by resync). Only while the
    auction runs: an ended auction's lease is settled business."""
    if not (staff_user.is_staff and staff_user.has_perm(RETRACT_PERMISSION)):
        raise PermissionDenied("Only exchange staff with the right to retract bids can.")
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "Give the reason for retracting the bid."})
    auction_id = Bid.objects.filter(pk=bid_id).values_list("auction_id", flat=True).first()
    if auction_id is None:
        raise BidRejected("bid_not_found", "There is no such bid.")
    auction = _auction_locked(auction_id)
    bid = Bid.objects.select_for_update().get(pk=bid_id)
    if bid.retracted_at is not None:
        return auction
    if auction.status not in LIVE_STATUSES:
        raise BidRejected(
            "auction_ended", "This auction has ended; its bids can no longer be retracted."
        )
    bid.retracted_at = timezone.now()
    bid.retracted_by = staff_user
    bid.retraction_reason = reason[:500]
    bid.save(update_fields=["retracted_at", "retracted_by", "retraction_reason"])
    previous = {"price_minor": auction.current_price_minor, "leader": auction.leader_id}
    passed_over = _standing_rebuild(auction)
    events = [
        _event(
            auction,
            "bid.retracted",
            retracted_seq=bid.seq,
            price_minor=auction.current_price_minor,
            currency=auction.currency,
            leader=bidder_handle(auction.pk, auction.leader_id),
            bid_count=auction.bid_count,
            reserve_met=auction.reserve_met,
            min_next_minor=minimum_next_bid(auction),
            buy_now_minor=auction.buy_now_price_minor if auction.buy_now_available else None,
        )
    ]
    # The standing changed as a bid would change it: in the soft-close window the others get
    # the same time to answer.
    _extend_if_in_soft_close(auction, bid.retracted_at, events)
    auction.save(update_fields=STANDING_FIELDS)
    audit_log_record(
        action="bid.retracted",
        actor=staff_user,
        organization=bid.bidder,
        target=bid,
        data={
            "auction": auction.pk,
            "amount_minor": bid.amount_minor,
            "reason": bid.retraction_reason,
            "price_before_minor": previous["price_minor"],
            "price_after_minor": auction.current_price_minor,
            "leader_before": previous["leader"],
            "leader_after": auction.leader_id,
            "passed_over": passed_over,
        },
    )
    transaction.on_commit(partial(auction_events_publish, auction.pk, events))
    return auction


# --- Opening and closing ------------------------------------------------------------------------


@dataclass
class CloseOutcome:
    auction: Auction
    lease: Lease | None


def _auction_end(auction: Auction, *, now: datetime, bought_now: bool = False) -> CloseOutcome:
    """End a locked auction: a lease for the leader if the reserve is met, else no sale."""
    lease = None
    if auction.leader_id is not None and auction.reserve_met:
        auction.status = AuctionStatus.CLOSED
        lease = Lease.objects.create(
            auction=auction,
            block=auction.block,
            winner_id=auction.leader_id,
            winner_user=auction.leader_user,
            price_minor=auction.current_price_minor,
            currency=auction.currency,
            starts_at=auction.block.starts_at,
            ends_at=auction.block.ends_at,
            bought_now=bought_now,
        )
        # a buying group's lease: who pays and who is sponsored, as pledged at the win
        lease_shares_record(lease=lease)
    else:
        auction.status = AuctionStatus.NO_SALE
    auction.closed_at = now
    if bought_now:
        auction.closes_at = now
    event = _event(
        auction,
        "auction.closed",
        status=auction.status,
        price_minor=auction.current_price_minor,
        currency=auction.currency,
        winner=bidder_handle(auction.pk, auction.leader_id) if lease else None,
        bought_now=bought_now,
        closed_at=now.isoformat(),
    )
    auction.save(
        update_fields=[
            "status",
            "closed_at",
            "closes_at",
            "seq",
            "current_price_minor",
            "leader",
            "leader_user",
            "leader_max_minor",
        ]
    )
    audit_log_record(
        action="auction.closed",
        organization=auction.block.provider.organization,
        target=auction,
        data={
            "status": auction.status,
            "price_minor": auction.current_price_minor,
            "currency": auction.currency,
            "winner": auction.leader_id if lease else None,
            "bought_now": bought_now,
        },
    )
    if lease is not None:
        audit_log_record(
            action="lease.created",
            organization=lease.winner,
            target=lease,
            data={
                "auction": auction.pk,
                "price_minor": lease.price_minor,
                "currency": lease.currency,
            },
        )
    transaction.on_commit(partial(auction_events_publish, auction.pk, [event]))
    # robust: a mail server that fails must not stop the sweep closing other auctions.
    transaction.on_commit(partial(auction_close_notify, auction_id=auction.pk), robust=True)
    return CloseOutcome(auction=auction, lease=lease)


def auction_close(*, auction_id: int) -> CloseOutcome | None:
    """Close an auction whose (possibly extended) close has passed. Exactly once: the row is
    locked and its status re-checked; a second closer finds it ended and does nothing."""
    with transaction.atomic():
        auction = (
            Auction.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("block")
            .filter(pk=auction_id, status__in=LIVE_STATUSES)
            .first()
        )
        now = timezone.now()
        if auction is None or auction.closes_at > now:
            return None
        return _auction_end(auction, now=now)


def auctions_close_due() -> int:
    """Close every auction whose close has passed; returns how many this call closed."""
    due = Auction.objects.filter(status__in=LIVE_STATUSES, closes_at__lte=timezone.now())
    closed = 0
    for auction_id in due.values_list("pk", flat=True)[:200]:
        if auction_close(auction_id=auction_id) is not None:
            closed += 1
    return closed


def auctions_open_due() -> int:
    """Mark scheduled auctions whose opening time has come as open, with a live event."""
    opened = 0
    due = Auction.objects.filter(status=AuctionStatus.SCHEDULED, opens_at__lte=timezone.now())
    for auction_id in due.values_list("pk", flat=True)[:200]:
        with transaction.atomic():
            auction = (
                Auction.objects.select_for_update(skip_locked=True)
                .filter(pk=auction_id, status=AuctionStatus.SCHEDULED)
                .first()
            )
            if auction is None:
                continue
            auction.status = AuctionStatus.OPEN
            event = _event(auction, "auction.opened", closes_at=auction.closes_at.isoformat())
            auction.save(update_fields=["status", "seq"])
            transaction.on_commit(partial(auction_events_publish, auction.pk, [event]))
            opened += 1
    return opened


@transaction.atomic
def auction_cancel(*, auction: Auction, staff_user: User, reason: str) -> Auction:
    """Staff cancel a running auction; nobody wins it."""
    if not staff_user.is_staff:
        raise PermissionDenied("Only exchange staff can cancel auctions.")
    auction = Auction.objects.select_for_update().get(pk=auction.pk)
    if auction.status not in LIVE_STATUSES:
        return auction
    auction.status = AuctionStatus.CANCELLED
    auction.closed_at = timezone.now()
    event = _event(auction, "auction.closed", status=auction.status, winner=None, reason=reason)
    auction.save(update_fields=["status", "closed_at", "seq"])
    audit_log_record(
        action="auction.cancelled", actor=staff_user, target=auction, data={"reason": reason}
    )
    transaction.on_commit(partial(auction_events_publish, auction.pk, [event]))
    return auction


def auction_close_notify(*, auction_id: int) -> None:
    """Tell the winner and the provider how the auction ended, live and by e-mail (after
    commit)."""
    auction = Auction.objects.select_related("block__provider__organization").get(pk=auction_id)
    provider = auction.block.provider
    provider_emails = {provider.contact_email} | set(
        provider.organization.memberships.filter(role__in=("owner", "admin")).values_list(
            "user__email", flat=True
        )
    )
    lease = Lease.objects.filter(auction=auction).select_related("winner", "winner_user").first()
    url = reverse("auction_detail", args=[auction.pk])
    if lease is None:
        organization_notify(
            provider.organization_id,
            text=f"Auction #{auction.pk} ended without a sale.",
            url=url,
        )
        send_mail(
            subject=f"Auction #{auction.pk} ended without a sale",
            message=f"Your auction of {auction.block} ended without a sale "
            f"({auction.get_status_display().lower()}).",
            from_email=None,
            recipient_list=sorted(provider_emails),
        )
        return
    price = money_format(lease.price_minor, lease.currency)
    organization_notify(
        provider.organization_id, text=f"Auction #{auction.pk} sold for {price}.", url=url
    )
    organization_notify(
        lease.winner_id, text=f"You won auction #{auction.pk} for {price}.", url=url
    )
    send_mail(
        subject=f"Auction #{auction.pk} sold for {price}",
        message=f"Your block {auction.block} was won by {lease.winner} for {price}.",
        from_email=None,
        recipient_list=sorted(provider_emails),
    )
    winner_emails = {lease.winner_user.email} if lease.winner_user else set()
    winner_emails |= set(
        lease.winner.memberships.filter(role__in=("owner", "admin")).values_list(
            "user__email", flat=True
        )
    )
    send_mail(
        subject=f"You won auction #{auction.pk} for {price}",
        message=(
            f"You won {auction.block} from {provider} for {price}.\n"
            f"The block runs {lease.starts_at:%Y-%m-%d %H:%M} to "
            f"{lease.ends_at:%Y-%m-%d %H:%M} UTC "
            f"with {auction.block.seats} seat(s)."
        ),
        from_email=None,
        recipient_list=sorted(winner_emails),
    )
