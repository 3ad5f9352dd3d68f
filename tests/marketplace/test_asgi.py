import pytest
from channels.testing import WebsocketCommunicator
from django.test import Client

from marketplace.asgi import application


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
