"""Live bidding in Chromium: two buyers watch one auction in two browser contexts; a bid from
one reaches the other's page within a second, without a reload; a page that misses events or
its connection resyncs from a snapshot; a buyer without JavaScript bids with the plain form.

pytest-django's live server speaks WSGI only, so these tests run the real ASGI server
(`manage.py serve`, daphne) in a process of its own on the test database, with a task queue of
the test's own (tests.support.settings) that no worker takes. The rows the tests create are
committed (`transaction=True`), so that server sees them."""

import json
import re
from datetime import datetime, timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from auctions.live import bidder_handle
from auctions.models import Bid, BidChannel
from auctions.services import bid_place
from tests.factories import PASSWORD, AuctionFactory, StaffUserFactory, buyer
from tests.support.browser import page_signed_in, served_on_private_queue

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LIVE_SECONDS = 1  # SPEC §4.2: every watcher sees a bid within one second


@pytest.fixture
def asgi_server(transactional_db, tmp_path, settings):
    """`manage.py serve` on a free port, on the test database and a private task queue; its
    address."""
    # No task worker or periodic jobs: these tests need only HTTP and websockets.
    with served_on_private_queue(settings, tmp_path / "serve.log", EMBEDDED_WORKER="false") as url:
        yield url


@pytest.fixture
def chromium(asgi_server, chromium_browser):
    """Debian's Chromium (closed before the server stops)."""
    return chromium_browser


def _live(page) -> None:
    """Wait until the page's websocket has delivered its snapshot."""
    expect(page.locator("#auction-live")).to_have_attribute("data-connection", "live")


def test_a_bid_on_one_buyers_page_appears_on_the_others_within_a_second(asgi_server, chromium):
    # Every accepted bid extends this auction's close (soft-close window longer than the time
    # left), so the watcher's page must also show the new close.
    auction = AuctionFactory(
        closes_at=timezone.now() + timedelta(minutes=5), soft_close_seconds=600
    )
    first, second = buyer(), buyer()
    path = f"/auctions/{auction.pk}/"
    bidding = page_signed_in(chromium, asgi_server, first[1], path)
    watching = page_signed_in(chromium, asgi_server, second[1], path)
    _live(bidding)
    _live(watching)
    watching.evaluate("window.stillTheSamePage = true")
    expect(watching.get_by_test_id("price")).to_have_text("10.00 USD")
    closes_before = watching.locator("[data-live=closes-at]").get_attribute("datetime")

    bidding.get_by_label("Your bid (USD)").fill("12.00")
    bidding.get_by_role("button", name="Place bid").click()

    timeout = LIVE_SECONDS * 1000
    expect(watching.get_by_test_id("price")).to_have_text("12.00 USD", timeout=timeout)
    handle = bidder_handle(auction.pk, first[0].pk)
    expect(watching.get_by_test_id("leader")).to_have_text(handle, timeout=timeout)
    expect(watching.locator("[data-live=history] tr").first).to_contain_text("12.00 USD")
    expect(watching.locator("[data-live=extended]")).to_be_visible(timeout=timeout)
    closes_after = watching.locator("[data-live=closes-at]").get_attribute("datetime")
    assert datetime.fromisoformat(closes_after) > datetime.fromisoformat(closes_before)
    expect(watching.locator("svg.price-chart path.line")).to_have_count(1)
    assert watching.evaluate("window.stillTheSamePage") is True
    expect(bidding.get_by_test_id("bid-feedback")).to_contain_text("You are leading at 12.00 USD")
    expect(bidding.get_by_test_id("standing")).to_have_text("You are leading")

    # The watcher answers; the first bidder learns it was outbid, live.
    watching.get_by_label("Your bid (USD)").fill("13.00")
    watching.get_by_role("button", name="Place bid").click()

    expect(bidding.get_by_test_id("price")).to_have_text("13.00 USD", timeout=timeout)
    expect(bidding.get_by_test_id("standing")).to_have_text("You have been outbid", timeout=timeout)
    expect(watching.get_by_test_id("standing")).to_have_text("You are leading")
    assert [(bid.amount_minor, bid.channel) for bid in Bid.objects.order_by("seq")] == [
        (1200, BidChannel.WEBSOCKET),
        (1300, BidChannel.WEBSOCKET),
    ]


class RoutedFeed:
    """The page's websocket through Playwright: records what the page sends, can drop events
    from the server (as if lost) and refuse new connections (as if the server were down)."""

    def __init__(self, page):
        self.sent_by_page = []
        self.drop_bid_events = False
        self.refuse = False
        self.connections = 0
        page.route_web_socket(re.compile(r"/ws/auctions/\d+/$"), self._route)

    def _route(self, ws):
        if self.refuse:
            ws.close()
            return
        self.connections += 1
        self.current = ws
        server = ws.connect_to_server()

        def from_page(message):
            self.sent_by_page.append(json.loads(message))
            server.send(message)

        def from_server(message):
            if self.drop_bid_events and json.loads(message)["type"] == "bid.placed":
                return
            ws.send(message)

        ws.on_message(from_page)
        server.on_message(from_server)


def _bid_by_form(page, server: str, path: str, amount: str) -> None:
    page.goto(server + path)
    page.get_by_label("Your bid (USD)").fill(amount)
    page.get_by_role("button", name="Place bid").click()
    expect(page.locator(".message")).to_contain_text("Your bid is in.")


def test_a_page_that_misses_events_resyncs_from_a_snapshot_and_after_reconnecting(
    asgi_server, chromium
):
    auction = AuctionFactory()
    path = f"/auctions/{auction.pk}/"
    # The other bidders' bids go through the server's plain form, so the server publishes them.
    first, second = (
        page_signed_in(chromium, asgi_server, buyer()[1], path, java_script_enabled=False)
        for _ in range(2)
    )
    page = chromium.new_context().new_page()
    feed = RoutedFeed(page)
    page.goto(asgi_server + path)
    _live(page)

    feed.drop_bid_events = True
    _bid_by_form(first, asgi_server, path, "10.00")  # seq 1, lost on the way
    feed.drop_bid_events = False
    _bid_by_form(second, asgi_server, path, "11.00")  # seq 2: the page sees the gap

    expect(page.get_by_test_id("price")).to_have_text("11.00 USD")
    expect(page.locator("[data-live=history] tr")).to_have_count(2)
    assert {"type": "snapshot"} in feed.sent_by_page

    # The connection drops and the server is unreachable for a while; a bid meanwhile.
    feed.refuse = True
    feed.current.close()
    expect(page.locator("#auction-live")).to_have_attribute("data-connection", "offline")
    _bid_by_form(first, asgi_server, path, "12.00")
    feed.refuse = False

    expect(page.locator("#auction-live")).to_have_attribute(
        "data-connection", "live", timeout=20000
    )
    expect(page.get_by_test_id("price")).to_have_text("12.00 USD")
    expect(page.locator("[data-live=history] tr")).to_have_count(3)
    assert feed.connections == 2


def test_a_rejected_bid_is_shown_inline_with_the_typed_amount_kept(asgi_server, chromium):
    auction = AuctionFactory()
    page = page_signed_in(chromium, asgi_server, buyer()[1], f"/auctions/{auction.pk}/")
    _live(page)

    page.get_by_label("Your bid (USD)").fill("9.99")
    page.get_by_role("button", name="Place bid").click()

    expect(page.get_by_test_id("bid-feedback")).to_have_text(
        "The first bid must be at least the start price, 10.00 USD."
    )
    expect(page.get_by_label("Your bid (USD)")).to_have_value("9.99")
    assert not Bid.objects.exists()


def test_the_countdown_follows_the_servers_clock_not_the_browsers(asgi_server, chromium):
    auction = AuctionFactory(closes_at=timezone.now() + timedelta(minutes=10))
    context = chromium.new_context()
    # The browser's clock is an hour ahead: the time left must still be about ten minutes.
    context.clock.set_fixed_time(datetime.now() + timedelta(hours=1))
    page = context.new_page()
    page.goto(f"{asgi_server}/auctions/{auction.pk}/")
    _live(page)

    expect(page.get_by_test_id("time-left")).to_have_text(re.compile(r"^(9:\d\d|10:00)$"))


def test_a_buyer_without_javascript_bids_with_the_plain_form(asgi_server, chromium):
    auction = AuctionFactory()
    organization, user = buyer()
    path = f"/auctions/{auction.pk}/"
    page = page_signed_in(chromium, asgi_server, user, path, java_script_enabled=False)

    page.get_by_label("Your bid (USD)").fill("10.10")
    page.get_by_role("button", name="Place bid").click()
    expect(page.locator(".message.success")).to_have_text(
        "Your bid is in. You are leading at 10.10 USD."
    )
    expect(page.get_by_test_id("price")).to_have_text("10.10 USD")
    expect(page.get_by_test_id("standing")).to_have_text("You are leading")

    bid = Bid.objects.get(auction=auction)
    assert (bid.bidder, bid.amount_minor, bid.channel) == (organization, 1010, BidChannel.WEB)


def test_a_bid_staff_retract_in_the_admin_leaves_every_watchers_page_live(asgi_server, chromium):
    auction = AuctionFactory(closes_at=timezone.now() + timedelta(minutes=5))
    first, second = buyer(), buyer()
    bid_place(auction_id=auction.pk, bidder=first[0], user=first[1], amount_minor=1200)
    retracted = bid_place(
        auction_id=auction.pk, bidder=second[0], user=second[1], amount_minor=1300
    )
    path = f"/auctions/{auction.pk}/"
    outbid = page_signed_in(chromium, asgi_server, first[1], path)
    leading = page_signed_in(chromium, asgi_server, second[1], path)
    _live(outbid)
    _live(leading)
    expect(leading.get_by_test_id("standing")).to_have_text("You are leading")
    expect(outbid.locator("[data-live=history] tr")).to_have_count(2)

    staff = StaffUserFactory()
    admin = chromium.new_context().new_page()
    admin.goto(f"{asgi_server}/admin/login/?next=/admin/auctions/auction/{auction.pk}/change/")
    admin.locator("input[name=username]").fill(staff.email)
    admin.locator("input[name=password]").fill(PASSWORD)
    admin.get_by_role("button", name="Log in").click()
    admin.get_by_role("link", name="Retract…").last.click()
    admin.get_by_label("Reason").fill("the bidder's account was taken over")
    admin.get_by_role("button", name="Retract the bid").click()
    expect(admin.locator(".messagelist")).to_contain_text(f"Bid #{retracted.bid.pk} retracted")

    timeout = LIVE_SECONDS * 1000
    for page in (outbid, leading):
        expect(page.get_by_test_id("price")).to_have_text("12.00 USD", timeout=timeout)
        expect(page.get_by_test_id("leader")).to_have_text(bidder_handle(auction.pk, first[0].pk))
        expect(page.locator("[data-live=history] tr")).to_have_count(1)
    expect(outbid.get_by_test_id("standing")).to_have_text("You are leading")
    # its only bid no longer counts: it is neither leading nor outbid
    expect(leading.get_by_test_id("standing")).to_have_text("")
