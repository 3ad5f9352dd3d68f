from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.utils import timezone


class PresenceConsumer(AsyncJsonWebsocketConsumer):
    """Tells a page who it is signed in as and the server's clock, so pages can compute time
    left from the server's time rather than the browser's."""

    async def connect(self):
        await self.accept()
        user = self.scope.get("user")
        await self.send_json(
            {
                "type": "hello",
                "server_time": timezone.now().isoformat(),
                "signed_in": bool(user and user.is_authenticated),
            }
        )

    async def receive_json(self, content, **kwargs):
        if content.get("type") == "ping":
            await self.send_json({"type": "pong", "server_time": timezone.now().isoformat()})
        else:
            await self.send_json({"type": "error", "code": "unknown_message_type"})
