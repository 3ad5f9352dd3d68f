import asyncio
import logging

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.utils import timezone

from marketplace.live import (
    NOTIFICATION_HANDLER,
    LiveChannelGuard,
    organization_group_name,
    server_loop_register,
)
from marketplace.selectors import memberships_of

logger = logging.getLogger(__name__)


class PresenceConsumer(LiveChannelGuard, AsyncJsonWebsocketConsumer):
    """Every page's companion: tells it the server's clock (pages compute time left from the
    server's time, not the browser's) and, for a signed-in user, relays the live notifications
    of the user's organizations (an auction won or sold). When the channel layer (Redis) does not
    answer, the page is told live updates are paused and the socket closes; it reconnects later.
    """

    # not Channels' `groups`, which it would join and leave without LiveChannelGuard's care
    organization_groups: list[str]

    async def connect(self):
        server_loop_register(asyncio.get_running_loop())
        self.organization_groups = []
        if self.live_is_lost():
            await self.live_pause()
            return
        user = self.scope.get("user")
        signed_in = bool(user and user.is_authenticated)
        if signed_in:
            organization_ids = await database_sync_to_async(self._organization_ids)(user)
            for organization_id in organization_ids:
                group = organization_group_name(organization_id)
                try:
                    await self.group_join(group)
                except Exception as error:
                    logger.warning("Presence: live channel unreachable (%r)", error)
                    await self.live_pause()
                    return
                self.organization_groups.append(group)
        await self.accept()
        await self.send_json(
            {"type": "hello", "server_time": timezone.now().isoformat(), "signed_in": signed_in}
        )

    @staticmethod
    def _organization_ids(user) -> list[int]:
        return list(memberships_of(user=user).values_list("organization_id", flat=True))

    async def disconnect(self, code):
        await self.groups_leave(getattr(self, "organization_groups", []))

    async def dispatch(self, message):
        # Relaying a notification needs no database: no hop through the database thread.
        if message["type"] == NOTIFICATION_HANDLER:
            await self.organization_notification(message)
            return
        await super().dispatch(message)

    async def receive_json(self, content, **kwargs):
        if content.get("type") == "ping":
            await self.send_json({"type": "pong", "server_time": timezone.now().isoformat()})
        else:
            await self.send_json({"type": "error", "code": "unknown_message_type"})

    async def organization_notification(self, message):
        await self.send_json({"type": "notification", **message["notification"]})
