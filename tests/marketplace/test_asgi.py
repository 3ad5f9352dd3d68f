from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client
from django.utils import timezone

from auctions.models import Auction
from auctions.services import auction_close, bid_place
from marketplace.asgi import application
from tests.factories import AuctionFactory, buyer, member_of


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_websocket_from_an_allowed_origin_gets_the_server_clock(
    async_db_connections_closed,
):
    communicator = WebsocketCommunicator(
        application, "/ws/presence/", headers=[(b"origin", b"http://127.0.0.1:8000")]
    )
    connected, _ = await communicator.connect()
    assert connected
    hello = await communicator.receive_json_from()
    assert hello["type"] == "hello"
    assert hello["signed_in"] is False
    assert hello["server_time"].endswith("+00:00")
    await communicator.send_json_to({"type": "ping"})
    assert (await communicator.receive_json_from())["type"] == "pong"
    await communicator.send_json_to({"type": "forged"})
    assert (await communicator.receive_json_from())["code"] == "unknown_message_type"
    await communicator.disconnect()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_websocket_from_another_origin_is_refused(async_db_connections_closed):
    communicator = WebsocketCommunicator(
        application, "/ws/presence/", headers=[(b"origin", b"https://evil.example")]
    )
    connected, _ = await communicator.connect()
    assert not connected


@pytest.mark.django_db
def test_static_files_are_served_by_the_application_itself():
    response = Client().get("/static/css/site.css")
    assert response.status_code == 200
    assert b"--brand" in b"".join(response.streaming_content)


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_the_winner_and_the_provider_are_notified_live_when_an_auction_closes(
    async_db_connections_closed,
):
    auction, winner_user, provider_user = await database_sync_to_async(_auction_with_a_bid)()
    winner_page = await _signed_in_socket(winner_user)
    provider_page = await _signed_in_socket(provider_user)
    await database_sync_to_async(_close_now)(auction.pk)
    won = await winner_page.receive_json_from(timeout=3)
    sold = await provider_page.receive_json_from(timeout=3)
    assert won == {
        "type": "notification",
        "text": f"You won auction #{auction.pk} for 10.00 USD.",
        "url": f"/auctions/{auction.pk}/",
    }
    assert sold["text"] == f"Auction #{auction.pk} sold for 10.00 USD."
    for page in (winner_page, provider_page):
        await page.disconnect()


def _auction_with_a_bid():
    auction = AuctionFactory()
    organization, user = buyer()
    bid_place(auction_id=auction.pk, bidder=organization, user=user, amount_minor=1000)
    provider_user = member_of(auction.block.provider.organization)
    return auction, user, provider_user


def _close_now(auction_id):
    Auction.objects.filter(pk=auction_id).update(closes_at=timezone.now() - timedelta(seconds=1))
    auction_close(auction_id=auction_id)


async def _signed_in_socket(user):
    client = Client()
    await database_sync_to_async(client.force_login)(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    communicator = WebsocketCommunicator(
        application,
        "/ws/presence/",
        headers=[(b"origin", b"http://127.0.0.1:8000"), (b"cookie", cookie)],
    )
    connected, _ = await communicator.connect()
    assert connected
    hello = await communicator.receive_json_from()
    assert hello["signed_in"] is True
    return communicator
