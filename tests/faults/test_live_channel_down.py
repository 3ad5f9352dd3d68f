"""Fault: the channel layer's Redis does not answer when a page connects (issue 8). The live
websockets do not hang or die mid-handshake: they are accepted, told that live updates are
paused, and closed with CLOSE_LIVE_UNAVAILABLE, so the page says so and connects again later
(static/js/auction.js). Through the whole ASGI application, with Channels' communicator."""

import socket

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from marketplace.asgi import application
from marketplace.live import CLOSE_LIVE_UNAVAILABLE, LIVE_PAUSED_MESSAGE
from tests.factories import AuctionFactory

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

ORIGIN = b"http://testserver"
TIMEOUT = 5


@pytest.fixture
def channel_layer_unreachable(settings):
    """channels-redis on a loopback port where nothing listens (Redis stopped)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Channels drops its layers when the setting changes, and again when it is restored.
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [f"redis://127.0.0.1:{port}/0"]},
        }
    }


@pytest.mark.parametrize("path", ["/ws/auctions/{auction}/", "/ws/presence/"])
async def test_a_page_connecting_while_the_live_channel_is_down_is_told_and_closed(
    path, channel_layer_unreachable, async_db_connections_closed
):
    auction = await database_sync_to_async(AuctionFactory)()
    communicator = WebsocketCommunicator(
        application, path.format(auction=auction.pk), headers=[(b"origin", ORIGIN)]
    )
    connected, _ = await communicator.connect(timeout=TIMEOUT)
    assert connected

    first = await communicator.receive_json_from(timeout=TIMEOUT)
    if first["type"] == "hello":
        # an anonymous page's companion joins no group: it may greet before the layer's
        # failure reaches it
        assert path == "/ws/presence/"
        first = await communicator.receive_json_from(timeout=TIMEOUT)
    assert first == LIVE_PAUSED_MESSAGE
    assert await communicator.receive_output(timeout=TIMEOUT) == {
        "type": "websocket.close",
        "code": CLOSE_LIVE_UNAVAILABLE,
    }
    await communicator.disconnect(timeout=TIMEOUT)
