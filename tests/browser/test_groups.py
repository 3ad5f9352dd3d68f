"""Buying groups in Chromium (SPEC §4.4): a group's admin switches to acting for the group and
bids on the auction page, which accepts the bid and shows the group leading, live; after the
group wins, the admin gives a sponsored member a seat on the lease's seats page, and that
member, signed in on its own, sees the seat it holds.

As in test_live_bidding, the real ASGI server (`manage.py serve`) runs in a process of its own
on the test database; the rows the test creates are committed (`transaction=True`)."""

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from auctions.models import Auction, Bid, Lease, LeaseSeat, LeaseShare
from auctions.services import auction_close
from tests.factories import AuctionFactory, buying_group, group_joined
from tests.support.browser import page_signed_in, served_on_private_queue

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def asgi_server(transactional_db, tmp_path, settings):
    """`manage.py serve` on a free port, on the test database and a private task queue; its
    address."""
    with served_on_private_queue(settings, tmp_path / "serve.log", EMBEDDED_WORKER="false") as url:
        yield url


@pytest.fixture
def chromium(asgi_server, chromium_browser):
    """Debian's Chromium (closed before the server stops)."""
    return chromium_browser


def test_a_group_admin_bids_for_the_group_and_a_sponsored_member_sees_its_seat(
    asgi_server, chromium
):
    group, admin, _ = buying_group(name="Harbour Cooperative", cap_minor=50_000)
    sponsored = group_joined(group, role="sponsored")
    auction = AuctionFactory(closes_at=timezone.now() + timedelta(minutes=30))
    path = f"/auctions/{auction.pk}/"

    # The admin acts for the group through the organization switcher, then bids.
    admin_page = page_signed_in(chromium, asgi_server, admin, path)
    admin_page.get_by_label("Acting for").select_option(label="Harbour Cooperative")
    expect(admin_page.locator(".message")).to_contain_text("You now act for Harbour Cooperative")
    expect(admin_page).to_have_url(f"{asgi_server}{path}")
    expect(admin_page.locator("#auction-live")).to_have_attribute("data-connection", "live")

    admin_page.get_by_label("Your bid (USD)").fill("12.00")
    admin_page.get_by_role("button", name="Place bid").click()

    expect(admin_page.get_by_test_id("bid-feedback")).to_contain_text(
        "Your bid is in. You are leading at 12.00 USD."
    )
    expect(admin_page.get_by_test_id("price")).to_have_text("12.00 USD")
    # the group's line, hidden until its first bid, shows it leading from the live event
    expect(admin_page.get_by_test_id("group-status")).to_have_text(
        "Your group Harbour Cooperative: leading"
    )
    bid = Bid.objects.get(auction=auction)
    assert (bid.bidder_id, bid.user_id, bid.amount_minor) == (group.organization_id, admin.pk, 1200)

    # The group wins: the auction closes after its close passed.
    Auction.objects.filter(pk=auction.pk).update(closes_at=timezone.now() - timedelta(seconds=1))
    outcome = auction_close(auction_id=auction.pk)
    lease = outcome.lease
    assert lease.winner_id == group.organization_id
    assert set(LeaseShare.objects.filter(lease=lease).values_list("member_id", "role")) == {
        (group.members.get(user=admin).pk, "payer"),
        (sponsored.pk, "sponsored"),
    }

    # The admin finds the lease on the group's page and gives the sponsored member a seat.
    admin_page.goto(f"{asgi_server}/groups/{group.pk}/")
    admin_page.get_by_test_id("leases").get_by_role("link", name="0 of 5 seats").click()
    expect(admin_page).to_have_url(f"{asgi_server}/leases/{lease.pk}/seats/")
    admin_page.get_by_label("User's e-mail address").fill(sponsored.user.email)
    admin_page.get_by_role("button", name="Assign the seat").click()
    expect(admin_page.locator(".message")).to_have_text(
        f"A seat is assigned to {sponsored.user.email}."
    )
    expect(admin_page.get_by_test_id("seat-count")).to_contain_text("1 of 5 seats taken, 4 free.")

    # The sponsored member, signed in, sees the seat it holds.
    member_page = page_signed_in(
        chromium, asgi_server, sponsored.user, f"/leases/{lease.pk}/seats/"
    )
    expect(member_page.get_by_test_id("seats")).to_contain_text(
        f"{sponsored.user.email} (your seat)"
    )
    expect(member_page.get_by_test_id("seat-form")).to_have_count(0)
    member_page.goto(f"{asgi_server}{path}")
    expect(member_page.get_by_test_id("group-status")).to_have_text(
        "Your group Harbour Cooperative: won · the lease's seats"
    )
    seat = LeaseSeat.objects.get(lease=lease)
    assert (seat.user_id, seat.released_at) == (sponsored.user_id, None)
    assert Lease.objects.filter(winner=group.organization).count() == 1
