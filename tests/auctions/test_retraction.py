"""Staff retract a bid (SPEC §4.2: bids are binding, only staff can retract one), and the audit
log records every bid, retraction and close (issue 8)."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse
from django.utils import timezone

from auctions.models import AuctionStatus, Bid
from auctions.selectors import auction_snapshot
from auctions.services import BidRejected, auction_close, bid_retract
from billing.models import Card
from marketplace.models import AuditLogEntry, AuditLogImmutable
from tests.auctions.test_rules import BANDS, bid, rejected
from tests.factories import AuctionFactory, StaffUserFactory, UserFactory, buyer

pytestmark = pytest.mark.django_db


@pytest.fixture
def auction():
    return AuctionFactory(start_price_minor=1000, increment_bands=BANDS)


@pytest.fixture
def staff():
    return StaffUserFactory()


def retract(placed, staff, reason="shill bidding reported by the provider"):
    return bid_retract(bid_id=placed.bid.pk, staff_user=staff, reason=reason)


def test_retracting_the_leaders_bid_gives_the_lead_back_at_the_runner_ups_price(auction, staff):
    alice, bob = buyer(), buyer()
    bid(auction, alice, 1000, maximum=1500)
    placed = bid(auction, bob, 1600, maximum=3000)  # bob leads at 1600 (alice's 1500 + 100)
    assert placed.auction.leader_id == bob[0].pk

    auction = retract(placed, staff)

    auction.refresh_from_db()
    assert auction.leader_id == alice[0].pk
    assert auction.leader_user_id == alice[1].pk
    assert auction.current_price_minor == 1000
    assert auction.leader_max_minor == 1500
    assert auction.bid_count == 1
    snapshot = auction_snapshot(auction=auction)
    assert [b["amount_minor"] for b in snapshot["bids"]] == [1000]
    assert snapshot["min_next_minor"] == 1100


def test_retracting_a_losing_proxy_bid_lowers_what_the_leader_pays(auction, staff):
    alice, bob, carol = buyer(), buyer(), buyer()
    bid(auction, alice, 1000, maximum=5000)
    bid(auction, bob, 1100, maximum=1200)  # alice's proxy answers 1300
    losing = bid(auction, carol, 1400, maximum=2000)  # alice's proxy answers 2100
    assert losing.auction.current_price_minor == 2100

    auction = retract(losing, staff)

    auction.refresh_from_db()
    assert auction.leader_id == alice[0].pk
    assert auction.current_price_minor == 1300
    # the record keeps the bid, marked with who, when and why
    kept = Bid.objects.get(pk=losing.bid.pk)
    assert kept.retracted_by == staff
    assert kept.retracted_at is not None
    assert kept.retraction_reason == "shill bidding reported by the provider"


def test_retracting_the_only_bid_reopens_the_start_price_and_buy_now(staff):
    auction = AuctionFactory(start_price_minor=1000, buy_now_price_minor=9000)
    placed = bid(auction, buyer(), 1000)
    auction = retract(placed, staff)
    auction.refresh_from_db()
    assert auction.current_price_minor is None
    assert auction.leader_id is None
    assert auction.bid_count == 0
    assert auction.buy_now_available
    # bidding goes on from the start price
    bid(auction, buyer(), 1000)


def test_a_retraction_is_published_live_and_moves_the_sequence(
    auction, staff, monkeypatch, django_capture_on_commit_callbacks
):
    published = []
    monkeypatch.setattr(
        "auctions.services.auction_events_publish",
        lambda auction_id, events: published.extend(events),
    )
    alice, bob = buyer(), buyer()
    bid(auction, alice, 1000)
    placed = bid(auction, bob, 1100)
    published.clear()
    with django_capture_on_commit_callbacks(execute=True):
        retract(placed, staff)
    assert [event["type"] for event in published] == ["bid.retracted"]
    event = published[0]
    auction.refresh_from_db()
    assert event["seq"] == auction.seq
    assert event["retracted_seq"] == placed.bid.seq
    assert event["price_minor"] == 1000
    assert event["leader"] == auction_snapshot(auction=auction)["leader"]


def test_retracting_twice_changes_nothing_more(auction, staff):
    alice, bob = buyer(), buyer()
    bid(auction, alice, 1000)
    placed = bid(auction, bob, 1100)
    retract(placed, staff)
    auction.refresh_from_db()
    seq = auction.seq
    retract(placed, staff, reason="again")
    auction.refresh_from_db()
    assert auction.seq == seq
    assert AuditLogEntry.objects.filter(action="bid.retracted").count() == 1


def test_only_staff_retract_and_only_with_a_reason(auction, staff):
    placed = bid(auction, buyer(), 1000)
    with pytest.raises(PermissionDenied):
        bid_retract(bid_id=placed.bid.pk, staff_user=UserFactory(), reason="because")
    with pytest.raises(ValidationError):
        bid_retract(bid_id=placed.bid.pk, staff_user=staff, reason="   ")
    assert Bid.objects.get(pk=placed.bid.pk).retracted_at is None


def test_a_bid_of_an_ended_auction_is_not_retracted(auction, staff):
    placed = bid(auction, buyer(), 1000)
    auction.closes_at = timezone.now() - timedelta(seconds=1)
    auction.save(update_fields=["closes_at"])
    auction_close(auction_id=auction.pk)
    with pytest.raises(BidRejected) as caught:
        retract(placed, staff)
    assert caught.value.code == "auction_ended"
    assert Bid.objects.get(pk=placed.bid.pk).retracted_at is None


def test_bids_retractions_and_closes_are_in_the_audit_log(auction, staff):
    alice, bob = buyer(), buyer()
    first = bid(auction, alice, 1000, maximum=1400)
    second = bid(auction, bob, 1500)
    rejected("bid_too_low", auction, alice, 1200)  # refused bids are not recorded
    retract(second, staff)
    auction.closes_at = timezone.now() - timedelta(seconds=1)
    auction.save(update_fields=["closes_at"])
    auction_close(auction_id=auction.pk)

    entries = list(AuditLogEntry.objects.order_by("pk"))
    actions = [entry.action for entry in entries]
    assert actions == [
        "bid.placed",
        "bid.placed",
        "bid.retracted",
        "auction.closed",
        "lease.created",
    ]
    placed = entries[0]
    assert placed.actor == alice[1]
    assert placed.organization == alice[0]
    assert placed.object_id == str(first.bid.pk)
    assert placed.data["amount_minor"] == 1000
    assert placed.data["proxy"] is True
    retraction = entries[2]
    assert retraction.actor == staff
    assert retraction.organization == bob[0]
    assert retraction.data["price_before_minor"] == 1500
    assert retraction.data["price_after_minor"] == 1000
    closed = entries[3]
    assert closed.data["status"] == AuctionStatus.CLOSED
    assert closed.data["winner"] == alice[0].pk


def test_an_auction_closing_without_a_sale_is_audited_too():
    auction = AuctionFactory(start_price_minor=1000, reserve_price_minor=5000)
    bid(auction, buyer(), 1000)
    auction.closes_at = timezone.now() - timedelta(seconds=1)
    auction.save(update_fields=["closes_at"])
    auction_close(auction_id=auction.pk)
    closed = AuditLogEntry.objects.get(action="auction.closed")
    assert closed.data["status"] == AuctionStatus.NO_SALE
    assert closed.data["winner"] is None


def test_audit_entries_can_be_neither_changed_nor_deleted(auction):
    bid(auction, buyer(), 1000)
    entry = AuditLogEntry.objects.get(action="bid.placed")
    entry.action = "bid.forgotten"
    with pytest.raises(AuditLogImmutable):
        entry.save()
    with pytest.raises(AuditLogImmutable):
        entry.delete()
    with pytest.raises(AuditLogImmutable):
        AuditLogEntry.objects.filter(pk=entry.pk).update(action="bid.forgotten")
    with pytest.raises(AuditLogImmutable):
        AuditLogEntry.objects.all().delete()
    assert AuditLogEntry.objects.get(pk=entry.pk).action == "bid.placed"


# --- the staff admin ---------------------------------------------------------------------------


def test_staff_retract_a_bid_from_the_admin_with_a_reason(client, auction, staff):
    alice, bob = buyer(), buyer()
    bid(auction, alice, 1000)
    placed = bid(auction, bob, 1100)
    client.force_login(staff)
    change = client.get(reverse("admin:auctions_auction_change", args=[auction.pk]))
    url = reverse("admin:auctions_bid_retract", args=[placed.bid.pk])
    assert url in change.content.decode()

    page = client.get(url)
    assert page.status_code == 200
    assert "Bids are binding" in page.content.decode()
    refused = client.post(url, {"reason": ""})
    assert refused.status_code == 200
    assert "This field is required" in refused.content.decode()
    assert Bid.objects.get(pk=placed.bid.pk).retracted_at is None

    done = client.post(url, {"reason": "the bidder's account was taken over"})
    assert done.status_code == 302
    auction.refresh_from_db()
    assert auction.leader_id == alice[0].pk
    assert auction.current_price_minor == 1000
    entry = AuditLogEntry.objects.get(action="bid.retracted")
    assert entry.actor == staff
    assert entry.data["reason"] == "the bidder's account was taken over"


def test_a_non_staff_user_cannot_reach_the_retract_page(client, auction):
    placed = bid(auction, buyer(), 1000)
    _, user = buyer()
    client.force_login(user)
    url = reverse("admin:auctions_bid_retract", args=[placed.bid.pk])
    response = client.post(url, {"reason": "mine"})
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
    assert Bid.objects.get(pk=placed.bid.pk).retracted_at is None


def test_retracting_on_an_ended_auction_from_the_admin_says_why(client, auction, staff):
    placed = bid(auction, buyer(), 1000)
    auction.closes_at = timezone.now() - timedelta(seconds=1)
    auction.save(update_fields=["closes_at"])
    auction_close(auction_id=auction.pk)
    client.force_login(staff)
    url = reverse("admin:auctions_bid_retract", args=[placed.bid.pk])
    response = client.post(url, {"reason": "too late"})
    assert response.status_code == 200
    assert "can no longer be retracted" in response.content.decode()


# --- the rebuilt standing follows the rules ----------------------------------------------------


def test_a_leaders_raise_is_replayed_at_what_it_offered_not_at_the_price_it_was_shown(
    auction, staff
):
    alice, bob = buyer(), buyer()
    bid(auction, alice, 1000)
    lead = bid(auction, bob, 1200)
    raised = bid(auction, bob, 1100, maximum=4000)  # shown at 1200, the standing price
    assert raised.bid.amount_minor == 1200
    auction = retract(lead, staff)
    auction.refresh_from_db()
    # as if alice had bid 1000 and bob 1100 with a maximum of 4000
    assert (auction.current_price_minor, auction.leader_id) == (1100, bob[0].pk)


def test_the_leader_user_is_the_member_who_placed_the_leaders_last_bid(auction, staff):
    organization, first_member = buyer()
    _, second_member = buyer(organization=organization)
    carol = buyer()
    bid(auction, (organization, first_member), 1000, maximum=2000)
    bid(auction, (organization, second_member), 1000, maximum=3000)  # raises the maximum
    losing = bid(auction, carol, 1200)
    auction = retract(losing, staff)
    auction.refresh_from_db()
    assert auction.leader_id == organization.pk
    assert auction.leader_user_id == second_member.pk


def test_a_bidder_that_could_not_bid_now_is_not_revived_by_a_retraction(auction, staff):
    alice, bob = buyer(), buyer()
    bid(auction, alice, 1000, maximum=1500)
    placed = bid(auction, bob, 1600)
    Card.objects.filter(account__organization=alice[0]).delete()  # alice removed her card
    auction = retract(placed, staff)
    auction.refresh_from_db()
    assert auction.leader_id is None
    assert auction.current_price_minor is None
    entry = AuditLogEntry.objects.get(action="bid.retracted")
    assert entry.data["passed_over"] == [Bid.objects.get(bidder=alice[0]).pk]


def test_the_history_after_a_retraction_agrees_with_the_standing(auction, staff):
    alice, bob, carol = buyer(), buyer(), buyer()
    first = bid(auction, alice, 1000, maximum=5000)
    bid(auction, bob, 1100, maximum=1200)
    bid(auction, carol, 1400)
    auction = retract(first, staff)
    auction.refresh_from_db()
    snapshot = auction_snapshot(auction=auction)
    history = [(b["amount_minor"], b["price_minor"], b["leader"]) for b in snapshot["bids"]]
    handle = auction_snapshot(auction=auction)["leader"]
    assert (auction.current_price_minor, auction.leader_id) == (1400, carol[0].pk)
    assert history[-1] == (1400, 1400, handle)
    assert history[0][:2] == (1100, 1100)


def test_a_retraction_in_the_soft_close_window_gives_the_others_time_to_answer(staff):
    auction = AuctionFactory(start_price_minor=1000, increment_bands=BANDS)
    alice, bob = buyer(), buyer()
    bid(auction, alice, 1000)
    placed = bid(auction, bob, 1100)
    auction.refresh_from_db()
    auction.closes_at = timezone.now() + timedelta(seconds=30)
    auction.soft_close_seconds = 120
    auction.save(update_fields=["closes_at", "soft_close_seconds"])
    auction = retract(placed, staff)
    auction.refresh_from_db()
    assert auction.closes_at > timezone.now() + timedelta(seconds=100)


def test_a_staff_member_needs_the_retract_permission(auction):
    placed = bid(auction, buyer(), 1000)
    moderator = UserFactory(is_staff=True)
    with pytest.raises(PermissionDenied):
        bid_retract(bid_id=placed.bid.pk, staff_user=moderator, reason="no right")
    moderator.user_permissions.add(Permission.objects.get(codename="retract_bid"))
    moderator = type(moderator).objects.get(pk=moderator.pk)  # permissions are cached
    bid_retract(bid_id=placed.bid.pk, staff_user=moderator, reason="with the right")
    assert Bid.objects.get(pk=placed.bid.pk).retracted_by == moderator


def test_sending_a_retracted_bids_client_id_again_says_it_was_retracted(auction, staff):
    alice = buyer()
    placed = bid(auction, alice, 1000, client_bid_id="tab-1-bid-1")
    retract(placed, staff)
    with pytest.raises(BidRejected) as caught:
        bid(auction, alice, 1000, client_bid_id="tab-1-bid-1")
    assert caught.value.code == "bid_retracted"
