"""The live auction websocket, driven through the whole ASGI application (origin check, session
authentication, routing) with Channels' WebsocketCommunicator."""

import asyncio
import json
import time
from datetime import datetime, timedelta

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.db import connection
from django.test import Client
from django.utils import timezone

from auctions.live import bidder_handle
from auctions.models import Auction, AuctionStatus, Bid, BidChannel
from auctions.services import auction_close, bid_place
from marketplace.asgi import application
from marketplace.models import OrganizationKind
from tests.factories import (
    PASSWORD,
    AuctionFactory,
    OrganizationFactory,
    ProviderProfileFactory,
    ServiceBlockFactory,
    UserFactory,
    VerifiedProviderFactory,
    buyer,
    member_of,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

ORIGIN = b"http://testserver"
TIMEOUT = 5


def _session_cookie(user) -> str:
    client = Client()
    assert client.login(email=user.email, password=PASSWORD)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


class Watcher:
    """A websocket client on one auction, signed in as `user` or anonymous."""

    def __init__(self, auction_id: int, user=None, origin: bytes = ORIGIN):
        self.auction_id, self.user, self.origin = auction_id, user, origin
        self.communicator = None

    async def start(self) -> tuple[bool, int | str | None]:
        headers = [(b"origin", self.origin)]
        if self.user is not None:
            session = await database_sync_to_async(_session_cookie)(self.user)
            headers.append((b"cookie", f"{settings.SESSION_COOKIE_NAME}={session}".encode()))
        self.communicator = WebsocketCommunicator(
            application, f"/ws/auctions/{self.auction_id}/", headers=headers
        )
        return await self.communicator.connect(timeout=TIMEOUT)

    async def connect(self) -> dict:
        connected, _ = await self.start()
        assert connected
        snapshot = await self.receive()
        assert snapshot["type"] == "snapshot"
        return snapshot

    async def send(self, message: dict) -> None:
        await self.communicator.send_json_to(message)

    async def receive(self) -> dict:
        return await self.communicator.receive_json_from(timeout=TIMEOUT)

    async def receive_until(self, kind: str) -> tuple[dict, list[dict]]:
        """The first message of this type, and the messages that came before it."""
        before = []
        while True:
            message = await self.receive()
            if message["type"] == kind:
                return message, before
            before.append(message)

    async def close(self) -> None:
        await self.communicator.disconnect()


@pytest.fixture
def auction(db):
    return AuctionFactory()


@pytest.fixture
def bidder_a(db):
    return buyer()


@pytest.fixture
def bidder_b(db):
    return buyer()


def _auction(pk) -> Auction:
    return Auction.objects.get(pk=pk)


auction_read = database_sync_to_async(_auction)


def _bid(auction, bidder_and_user, amount_minor, **kwargs):
    organization, user = bidder_and_user
    return bid_place(
        auction_id=auction.pk,
        bidder=organization,
        user=user,
        amount_minor=amount_minor,
        **kwargs,
    )


async def test_snapshot_on_connect_shows_the_auction_as_of_its_seq(
    auction, bidder_a, bidder_b, async_db_connections_closed
):
    await database_sync_to_async(_bid)(auction, bidder_a, 1000, max_amount_minor=9000)
    await database_sync_to_async(_bid)(auction, bidder_b, 1500)
    current = await auction_read(auction.pk)
    watcher = Watcher(auction.pk, user=bidder_b[1])

    snapshot = await watcher.connect()

    assert snapshot["seq"] == current.seq == 2
    assert snapshot["status"] == "open"
    assert snapshot["open"] is True
    assert snapshot["price_minor"] == current.current_price_minor == 1550
    assert snapshot["min_next_minor"] == 1600
    assert snapshot["leader"] == bidder_handle(auction.pk, bidder_a[0].pk)
    assert snapshot["you"] == bidder_handle(auction.pk, bidder_b[0].pk)
    assert snapshot["you_lead"] is False
    assert [bid["seq"] for bid in snapshot["bids"]] == [1, 2]
    assert snapshot["server_time"]
    # The leader's hidden maximum is never sent.
    assert "9000" not in json.dumps(snapshot)
    await watcher.close()


async def test_a_bid_from_one_buyer_reaches_another_watcher_as_bid_placed_with_the_next_seq(
    auction, bidder_a, bidder_b, async_db_connections_closed
):
    bidding = Watcher(auction.pk, user=bidder_a[1])
    watching = Watcher(auction.pk, user=bidder_b[1])
    first = await bidding.connect()
    await watching.connect()

    await bidding.send(
        {"type": "bid", "amount_minor": 1200, "max_amount_minor": 7777, "client_bid_id": "a-1"}
    )

    accepted, _ = await bidding.receive_until("bid.accepted")
    assert accepted == {
        "type": "bid.accepted",
        "client_bid_id": "a-1",
        "seq": first["seq"] + 1,
        "leading": True,
        "price_minor": 1200,
        "replayed": False,
    }
    event = await watching.receive()
    assert event["type"] == "bid.placed"
    assert event["seq"] == first["seq"] + 1
    assert event["price_minor"] == 1200
    assert event["leader"] == event["bidder"] == bidder_handle(auction.pk, bidder_a[0].pk)
    assert event["min_next_minor"] == 1250
    assert "7777" not in json.dumps(event)
    bid = await database_sync_to_async(Bid.objects.get)(auction=auction)
    assert bid.channel == BidChannel.WEBSOCKET
    await bidding.close()
    await watching.close()


async def test_a_rejected_bid_gets_an_error_with_a_stable_code_and_changes_nothing(
    auction, bidder_a, bidder_b, async_db_connections_closed
):
    bidding = Watcher(auction.pk, user=bidder_a[1])
    watching = Watcher(auction.pk, user=bidder_b[1])
    before = await bidding.connect()
    await watching.connect()

    await bidding.send({"type": "bid", "amount_minor": 999, "client_bid_id": "low-1"})

    error = await bidding.receive()
    assert error["type"] == "error"
    assert error["code"] == "bid_too_low"
    assert error["client_bid_id"] == "low-1"
    assert error["minimum_minor"] == 1000
    assert "10.00 USD" in error["detail"]
    assert await watching.communicator.receive_nothing(timeout=0.3)
    after = await auction_read(auction.pk)
    assert (after.seq, after.bid_count, after.current_price_minor) == (before["seq"], 0, None)
    await bidding.close()
    await watching.close()


@pytest.mark.parametrize("amount", ["1200", 12.5, True, -1200, 0, None, 2**64], ids=repr)
async def test_amounts_that_are_not_positive_whole_minor_units_are_invalid(
    amount, auction, bidder_a, async_db_connections_closed
):
    watcher = Watcher(auction.pk, user=bidder_a[1])
    await watcher.connect()

    await watcher.send({"type": "bid", "amount_minor": amount, "client_bid_id": "x"})

    error = await watcher.receive()
    assert (error["type"], error["code"], error["client_bid_id"]) == (
        "error",
        "invalid_amount",
        "x",
    )
    assert (await auction_read(auction.pk)).bid_count == 0
    await watcher.close()


async def test_a_maximum_below_the_bid_is_an_invalid_amount(
    auction, bidder_a, async_db_connections_closed
):
    watcher = Watcher(auction.pk, user=bidder_a[1])
    await watcher.connect()

    await watcher.send({"type": "bid", "amount_minor": 2000, "max_amount_minor": 1500})

    assert (await watcher.receive())["code"] == "invalid_amount"
    await watcher.send({"type": "bid", "amount_minor": 2000, "max_amount_minor": False})
    assert (await watcher.receive())["code"] == "invalid_amount"
    await watcher.close()


async def test_malformed_and_unknown_messages_get_errors_and_the_connection_stays_open(
    auction, async_db_connections_closed
):
    watcher = Watcher(auction.pk)
    await watcher.connect()

    await watcher.communicator.send_to(text_data="{not json")
    assert (await watcher.receive())["code"] == "malformed_message"
    await watcher.communicator.send_to(text_data="[1, 2]")
    assert (await watcher.receive())["code"] == "malformed_message"
    await watcher.communicator.send_to(bytes_data=b"\x00\x01")
    assert (await watcher.receive())["code"] == "malformed_message"
    await watcher.send({"type": "retract"})
    assert (await watcher.receive())["code"] == "unknown_message_type"
    await watcher.send({"type": "snapshot"})
    assert (await watcher.receive())["type"] == "snapshot"
    await watcher.close()


async def test_an_anonymous_watcher_gets_the_snapshot_but_cannot_bid(
    auction, async_db_connections_closed
):
    watcher = Watcher(auction.pk)

    snapshot = await watcher.connect()

    assert snapshot["auction_id"] == auction.pk
    assert "you" not in snapshot
    await watcher.send({"type": "bid", "amount_minor": 1000, "client_bid_id": "anon"})
    error = await watcher.receive()
    assert (error["code"], error["client_bid_id"]) == ("not_authenticated", "anon")
    await watcher.send({"type": "buy_now"})
    assert (await watcher.receive())["code"] == "not_authenticated"
    assert (await auction_read(auction.pk)).bid_count == 0
    await watcher.close()


async def test_a_user_without_a_buyer_organization_cannot_bid(auction, async_db_connections_closed):
    loner = await database_sync_to_async(UserFactory)()
    provider_member = await database_sync_to_async(
        lambda: member_of(Auction.objects.get(pk=auction.pk).block.provider.organization)
    )()

    for user in (loner, provider_member):
        watcher = Watcher(auction.pk, user=user)
        snapshot = await watcher.connect()
        assert "you" not in snapshot
        await watcher.send({"type": "bid", "amount_minor": 1000, "client_bid_id": "n"})
        assert (await watcher.receive())["code"] == "not_a_buyer"
        await watcher.close()
    assert (await auction_read(auction.pk)).bid_count == 0


async def test_a_buyer_cannot_bid_on_its_own_organizations_auction(
    async_db_connections_closed,
):
    both = await database_sync_to_async(OrganizationFactory)(kind=OrganizationKind.BOTH)
    auction = await database_sync_to_async(AuctionFactory)(
        block=await database_sync_to_async(ServiceBlockFactory)(
            provider=await database_sync_to_async(VerifiedProviderFactory)(organization=both)
        )
    )
    owner = await database_sync_to_async(member_of)(both)
    watcher = Watcher(auction.pk, user=owner)
    await watcher.connect()

    await watcher.send({"type": "bid", "amount_minor": 1000, "client_bid_id": "own"})

    assert (await watcher.receive())["code"] == "own_auction"
    await watcher.close()


async def test_a_websocket_from_another_origin_is_refused(auction, async_db_connections_closed):
    watcher = Watcher(auction.pk, origin=b"https://evil.example")

    connected, _ = await watcher.start()

    assert not connected


async def test_an_unknown_or_unpublished_auction_is_closed_with_4404(async_db_connections_closed):
    unverified = await database_sync_to_async(AuctionFactory)(
        block=await database_sync_to_async(ServiceBlockFactory)(
            provider=await database_sync_to_async(ProviderProfileFactory)()
        )
    )
    for auction_id in (987654, unverified.pk):
        watcher = Watcher(auction_id)
        connected, _ = await watcher.start()
        assert connected  # accepted first, so that browsers see the close code
        assert await watcher.communicator.receive_output(timeout=TIMEOUT) == {
            "type": "websocket.close",
            "code": 4404,
        }


async def test_a_client_that_saw_a_gap_in_seq_gets_the_current_seq_from_a_snapshot(
    auction, bidder_a, bidder_b, async_db_connections_closed
):
    watcher = Watcher(auction.pk)
    first = await watcher.connect()
    # Bids the client misses (as if events had been lost in between).
    await database_sync_to_async(_bid)(auction, bidder_a, 1000)
    await database_sync_to_async(_bid)(auction, bidder_b, 2000)
    current = await auction_read(auction.pk)

    await watcher.send({"type": "snapshot"})

    snapshot, events_before = await watcher.receive_until("snapshot")
    assert [event["seq"] for event in events_before] == [first["seq"] + 1, first["seq"] + 2]
    assert snapshot["seq"] == current.seq == first["seq"] + 2
    assert snapshot["price_minor"] == current.current_price_minor
    assert snapshot["leader"] == bidder_handle(auction.pk, bidder_b[0].pk)
    await watcher.close()


async def test_a_bid_in_the_soft_close_window_extends_the_close_live(
    bidder_a, async_db_connections_closed
):
    closes_at = timezone.now() + timedelta(seconds=30)
    auction = await database_sync_to_async(AuctionFactory)(
        closes_at=closes_at, soft_close_seconds=120
    )
    bidding = Watcher(auction.pk, user=bidder_a[1])
    watching = Watcher(auction.pk)
    first = await bidding.connect()
    await watching.connect()

    await bidding.send({"type": "bid", "amount_minor": 1000, "client_bid_id": "late"})

    placed = await watching.receive()
    extended = await watching.receive()
    assert (placed["type"], placed["seq"]) == ("bid.placed", first["seq"] + 1)
    assert (extended["type"], extended["seq"]) == ("auction.extended", first["seq"] + 2)
    new_close = datetime.fromisoformat(extended["closes_at"])
    assert new_close > closes_at + timedelta(seconds=80)
    assert (await auction_read(auction.pk)).closes_at == new_close
    await bidding.close()
    await watching.close()


async def test_watchers_see_auction_closed_when_a_due_auction_is_closed(
    bidder_a, async_db_connections_closed
):
    auction = await database_sync_to_async(AuctionFactory)()
    await database_sync_to_async(_bid)(auction, bidder_a, 1300)
    await database_sync_to_async(Auction.objects.filter(pk=auction.pk).update)(
        closes_at=timezone.now() - timedelta(seconds=1)
    )
    watcher = Watcher(auction.pk)
    first = await watcher.connect()
    assert first["open"] is False

    outcome = await database_sync_to_async(auction_close)(auction_id=auction.pk)

    assert outcome.lease is not None
    closed = await watcher.receive()
    assert closed["type"] == "auction.closed"
    assert closed["seq"] == first["seq"] + 1
    assert closed["status"] == AuctionStatus.CLOSED
    assert closed["price_minor"] == 1300
    assert closed["winner"] == bidder_handle(auction.pk, bidder_a[0].pk)
    await watcher.close()


async def test_watchers_see_auction_closed_when_a_worker_thread_closes_it(
    bidder_a, async_db_connections_closed
):
    auction = await database_sync_to_async(AuctionFactory)(
        closes_at=timezone.now() + timedelta(seconds=1)
    )
    watcher = Watcher(auction.pk)
    first = await watcher.connect()

    def worker_closes():
        # Like the embedded task worker: a thread of its own, without the server's loop.
        try:
            while Auction.objects.get(pk=auction.pk).closes_at > timezone.now():
                time.sleep(0.05)
            return auction_close(auction_id=auction.pk)
        finally:
            connection.close()

    outcome = await asyncio.get_running_loop().run_in_executor(None, worker_closes)

    assert outcome is not None and outcome.lease is None
    closed = await watcher.receive()
    assert (closed["type"], closed["seq"], closed["status"]) == (
        "auction.closed",
        first["seq"] + 1,
        AuctionStatus.NO_SALE,
    )
    await watcher.close()


async def test_buy_now_over_the_websocket_ends_the_auction_for_every_watcher(
    bidder_a, async_db_connections_closed
):
    auction = await database_sync_to_async(AuctionFactory)(buy_now_price_minor=5000)
    buying = Watcher(auction.pk, user=bidder_a[1])
    watching = Watcher(auction.pk)
    snapshot = await buying.connect()
    await watching.connect()
    assert snapshot["buy_now_minor"] == 5000

    await buying.send({"type": "buy_now"})

    accepted, _ = await buying.receive_until("buy_now.accepted")
    assert accepted["price_minor"] == 5000
    closed = await watching.receive()
    assert (closed["type"], closed["bought_now"], closed["status"]) == (
        "auction.closed",
        True,
        "closed",
    )
    await buying.send({"type": "buy_now"})
    error, _ = await buying.receive_until("error")
    assert error["code"] == "auction_not_open"
    await buying.close()
    await watching.close()


async def test_buy_now_after_the_first_bid_is_refused(
    bidder_a, bidder_b, async_db_connections_closed
):
    auction = await database_sync_to_async(AuctionFactory)(buy_now_price_minor=5000)
    await database_sync_to_async(_bid)(auction, bidder_a, 1000)
    watcher = Watcher(auction.pk, user=bidder_b[1])
    snapshot = await watcher.connect()
    assert snapshot["buy_now_minor"] is None

    await watcher.send({"type": "buy_now"})

    assert (await watcher.receive())["code"] == "buy_now_unavailable"
    await watcher.close()


async def test_the_same_client_bid_id_sent_twice_places_one_bid(
    auction, bidder_a, async_db_connections_closed
):
    watcher = Watcher(auction.pk, user=bidder_a[1])
    await watcher.connect()
    message = {"type": "bid", "amount_minor": 1000, "client_bid_id": "retry-1"}

    await watcher.send(message)
    first, _ = await watcher.receive_until("bid.accepted")
    await watcher.send(message)
    second, _ = await watcher.receive_until("bid.accepted")

    assert (first["replayed"], second["replayed"]) == (False, True)
    assert first["seq"] == second["seq"]
    assert (await auction_read(auction.pk)).bid_count == 1
    await watcher.close()


async def test_a_connection_sending_too_many_bids_is_rate_limited(
    auction, bidder_a, async_db_connections_closed
):
    watcher = Watcher(auction.pk, user=bidder_a[1])
    await watcher.connect()

    codes = []
    for n in range(25):
        await watcher.send({"type": "bid", "amount_minor": "x", "client_bid_id": f"r{n}"})
        codes.append((await watcher.receive())["code"])

    assert codes[:20] == ["invalid_amount"] * 20
    assert set(codes[20:]) == {"rate_limited"}
    await watcher.close()


async def test_bids_from_the_websocket_stay_limited_while_the_cache_is_down(
    settings, auction, bidder_a, async_db_connections_closed
):
    from marketplace.models import RateCounter

    settings.CACHES = {  # a stopped Redis: the limit is counted in the database
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
        }
    }
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {
            **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
            "bids": "2/day",
        },
    }
    watcher = Watcher(auction.pk, user=bidder_a[1])
    await watcher.connect()
    for n, amount in enumerate((1000, 1100)):
        await watcher.send({"type": "bid", "amount_minor": amount, "client_bid_id": f"c{n}"})
        await watcher.receive_until("bid.accepted")

    await watcher.send({"type": "bid", "amount_minor": 1200, "client_bid_id": "c2"})
    refused, _ = await watcher.receive_until("error")

    assert refused["code"] == "rate_limited"
    assert (await auction_read(auction.pk)).bid_count == 2
    counter = await database_sync_to_async(RateCounter.objects.get)(bucket__contains=":bids:")
    assert counter.count == 3
    await watcher.close()


async def _publish(auction_id: int, *events: dict) -> None:
    from channels.layers import get_channel_layer

    from auctions.live import EVENT_HANDLER, auction_group_name

    layer = get_channel_layer()
    for event in events:
        await layer.group_send(
            auction_group_name(auction_id), {"type": EVENT_HANDLER, "event": event}
        )


async def test_events_that_arrive_crossed_reach_the_page_in_seq_order(
    auction, async_db_connections_closed
):
    # Two servers publish after their own commits, so seq 2 can reach a watcher before seq 1.
    watcher = Watcher(auction.pk)
    await watcher.connect()
    first = {"type": "bid.placed", "auction_id": auction.pk, "seq": 1, "price_minor": 1000}
    second = {"type": "bid.placed", "auction_id": auction.pk, "seq": 2, "price_minor": 1100}
    await _publish(auction.pk, second, first, first)
    assert [(await watcher.receive())["seq"] for _ in range(2)] == [1, 2]
    assert await watcher.communicator.receive_nothing(timeout=0.7)  # the duplicate is dropped
    await watcher.close()


async def test_a_missing_event_is_replaced_by_a_fresh_snapshot(
    auction, bidder_a, async_db_connections_closed
):
    watcher = Watcher(auction.pk)
    await watcher.connect()
    # Seq 1 happens but its event is lost; seq 2 arrives on its own.
    await database_sync_to_async(_bid)(auction, bidder_a, 1000)
    await watcher.receive()  # the real seq 1 event
    await _publish(auction.pk, {"type": "auction.extended", "auction_id": auction.pk, "seq": 3})
    snapshot = await watcher.receive()
    assert snapshot["type"] == "snapshot"
    assert snapshot["seq"] == 1
    await watcher.close()
