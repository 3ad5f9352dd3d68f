"""Fault: Redis stops while buyers bid (issue 8). The exchange (`manage.py serve`, daphne) runs
on a Redis of the test's own (channel layer, cache and rate limits; tasks in the database) and a
buyer watches an auction in Chromium. With Redis stopped, bids placed over HTTP (the plain form,
from a page without and one with JavaScript, and the partner API) are still accepted, quickly,
and recorded; the watcher's page says live updates are paused. Redis started again on the same
port, the page reconnects by itself and resyncs from a snapshot: it shows the bids placed
meanwhile, and live bidding goes on.

The rows the test creates are committed (`transaction=True`) so the server process sees them."""

import json
import time
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from auctions.live import bidder_handle
from auctions.models import Bid, BidChannel
from tests.factories import AuctionFactory, buyer
from tests.support.api import api_key_for, http_request
from tests.support.browser import page_signed_in, served
from tests.support.redis_server import PrivateRedis

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PAUSED = "Live updates paused — reconnecting…"
LIVE_SECONDS = 1  # SPEC §4.2: every watcher sees a bid within one second
# An HTTP bid while Redis is down: the cache gives up in 0.5 s, a publish in 2 s at most.
HTTP_BID_SECONDS = 5
# The page reconnects after 0.5 s, doubled after each failure up to 10 s (give or take 25 %).
RECONNECT_SECONDS = 30


@pytest.fixture
def private_redis(tmp_path):
    redis = PrivateRedis(tmp_path)
    redis.start()
    yield redis
    redis.kill()


@pytest.fixture
def server(transactional_db, tmp_path, private_redis):
    """`manage.py serve` on the test database and the private Redis: its URL and its log."""
    log = tmp_path / "serve.log"
    with served(
        f"sx-faults-{uuid.uuid4().hex[:12]}",
        log,
        REDIS_URL=private_redis.url,
        # the task queue in the database: only the live side depends on this Redis
        TASK_BACKEND="db",
        EMBEDDED_WORKER="false",
    ) as url:
        yield url, log


@pytest.fixture
def chromium(server, chromium_browser):
    """Debian's Chromium (closed before the server stops)."""
    return chromium_browser


def _bid_by_plain_form(page, server: str, path: str, amount: str) -> float:
    """Bid with the page's form, posted by the browser; the seconds it took."""
    page.goto(server + path)
    page.get_by_label("Your bid (USD)").fill(amount)
    started = time.monotonic()
    page.get_by_role("button", name="Place bid").click()
    expect(page.locator(".message")).to_contain_text("Your bid is in.")
    return time.monotonic() - started


def _paused_notice(page):
    return page.get_by_role("status").filter(has_text=PAUSED)


def test_bids_go_on_over_http_while_redis_is_stopped_and_the_page_resyncs_after(
    server, chromium, private_redis
):
    base, log = server
    auction = AuctionFactory(closes_at=timezone.now() + timedelta(minutes=30))
    path = f"/auctions/{auction.pk}/"
    first, second, by_api, by_page = (buyer() for _ in range(4))
    watching = page_signed_in(chromium, base, buyer()[1], path)
    expect(watching.locator("#auction-live")).to_have_attribute("data-connection", "live")
    watching.evaluate("window.stillTheSamePage = true")
    plain = page_signed_in(chromium, base, first[1], path, java_script_enabled=False)
    other = page_signed_in(chromium, base, second[1], path, java_script_enabled=False)

    # Live bidding works through this Redis.
    _bid_by_plain_form(plain, base, path, "10.00")
    expect(watching.get_by_test_id("price")).to_have_text("10.00 USD", timeout=LIVE_SECONDS * 1000)
    expect(_paused_notice(watching)).to_have_count(0)

    private_redis.stop()

    # (b) The watcher's page says its live updates are paused, and stays usable.
    expect(_paused_notice(watching)).to_be_visible(timeout=10000)
    expect(watching.locator("#auction-live")).to_have_attribute("data-connection", "offline")

    # (a) Bids over HTTP are accepted, without waiting on the dead Redis.
    seconds = _bid_by_plain_form(other, base, path, "11.00")
    assert seconds < HTTP_BID_SECONDS, f"a form bid took {seconds:.1f} s with Redis stopped"
    key = api_key_for(by_api[0])
    started = time.monotonic()
    status, body = http_request(
        f"{base}/api/v1/auctions/{auction.pk}/bids/",
        key,
        data=json.dumps({"amount_minor": 1200}).encode(),
        headers={"Content-Type": "application/json"},
    )
    seconds = time.monotonic() - started
    assert status == 201, f"API bid with Redis stopped: {status} {body[:500]!r}"
    assert seconds < HTTP_BID_SECONDS, f"an API bid took {seconds:.1f} s with Redis stopped"
    # A page with JavaScript, opened while Redis is down, says so; its form posts normally.
    bidding = page_signed_in(chromium, base, by_page[1], path)
    expect(_paused_notice(bidding)).to_be_visible(timeout=10000)
    bidding.get_by_label("Your bid (USD)").fill("13.00")
    bidding.get_by_role("button", name="Place bid").click()
    expect(bidding.locator(".message")).to_contain_text("Your bid is in. You are leading")

    assert [(bid.amount_minor, bid.channel) for bid in Bid.objects.order_by("seq")] == [
        (1000, BidChannel.WEB),
        (1100, BidChannel.WEB),
        (1200, BidChannel.API),
        (1300, BidChannel.WEB),
    ]
    # Nothing reached the watcher meanwhile; it still says why.
    expect(watching.get_by_test_id("price")).to_have_text("10.00 USD")
    expect(_paused_notice(watching)).to_be_visible()

    private_redis.start()

    # (c) The page reconnects by itself and resyncs from a fresh snapshot.
    expect(watching.locator("#auction-live")).to_have_attribute(
        "data-connection", "live", timeout=RECONNECT_SECONDS * 1000
    )
    expect(watching.get_by_test_id("price")).to_have_text("13.00 USD")
    leader = bidder_handle(auction.pk, by_page[0].pk)
    expect(watching.get_by_test_id("leader")).to_have_text(leader)
    expect(watching.locator("[data-live=history] tr")).to_have_count(4)
    expect(watching.locator("[data-live=history] tr").first).to_contain_text("13.00 USD")
    expect(_paused_notice(watching)).to_have_count(0)
    expect(watching.get_by_test_id("live-paused")).to_be_hidden()
    assert watching.evaluate("window.stillTheSamePage") is True

    # Live again: the next bid reaches the watcher within a second.
    _bid_by_plain_form(plain, base, path, "14.00")
    expect(watching.get_by_test_id("price")).to_have_text("14.00 USD", timeout=LIVE_SECONDS * 1000)
    expect(watching.get_by_test_id("leader")).to_have_text(bidder_handle(auction.pk, first[0].pk))

    # Lost connections to the channel layer closed the websockets cleanly: no application
    # died mid-handshake.
    output = log.read_text()
    assert "Exception inside application" not in output, output
    assert "live updates paused" in output, output
