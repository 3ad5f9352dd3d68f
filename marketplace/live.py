"""Sending to websocket groups from synchronous code, and live notifications to everyone of an
organization who has the portal open. Sends happen after the transaction commits.

When the channel layer stops answering (REDIS_URL's Redis stopped), nothing that made the news
waits for it long: a send gives up after LAYER_TIMEOUT_SECONDS (the caller logs it; pages that
miss an event resync from a snapshot), and consumers mixed with LiveChannelGuard tell their page
that live updates are paused and close, rather than fail mid-handshake; the page reconnects with
a growing delay and resyncs once the layer answers again."""

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer

logger = logging.getLogger(__name__)

# The consumer handler of organization notifications.
NOTIFICATION_HANDLER = "organization.notification"

# A send to a group (or a consumer's joining one) that takes longer than this is given up: a
# bid committed while Redis does not answer must not keep its request (or the worker closing an
# auction) waiting, nor a page its handshake.
LAYER_TIMEOUT_SECONDS = 2.0

# Close code of a websocket whose live channel (the channel layer) does not answer: the page
# says live updates are paused and connects again later (4000-4999: the application's own).
CLOSE_LIVE_UNAVAILABLE = 4503
# What a consumer sends its page just before closing with CLOSE_LIVE_UNAVAILABLE.
LIVE_PAUSED_MESSAGE = {
    "type": "live.paused",
    "detail": "Live updates are paused: the exchange's live channel does not answer.",
}
# The message a guarded consumer dispatches to itself when the layer fails (handler live_lost).
LIVE_LOST_HANDLER = "live.lost"

# The event loop serving websockets in this process. The in-memory channel layer's queues
# belong to it, so a thread without that loop (the embedded worker closing an auction) must
# hand its sends to it rather than run them on a loop of its own.
_server_loop: asyncio.AbstractEventLoop | None = None


def server_loop_register(loop: asyncio.AbstractEventLoop) -> None:
    """Called by consumers as they connect: remembers the loop that serves them."""
    global _server_loop
    _server_loop = loop


def group_send(group: str, message: dict) -> None:
    """Send a message to a channel-layer group from synchronous code, whatever the thread."""
    layer = get_channel_layer()
    if layer is None:
        return
    loop = _server_loop
    try:
        current = asyncio.get_running_loop()
    except RuntimeError:
        current = None
    in_memory = isinstance(layer, InMemoryChannelLayer)
    if in_memory and loop is not None and loop.is_running() and current is not loop:
        bounded = _group_send_bounded(layer, group, message)
        asyncio.run_coroutine_threadsafe(bounded, loop).result(LAYER_TIMEOUT_SECONDS + 1)
        return
    if current is not None:
        # Sync code called from a thread that runs a loop of its own (a browser-driving
        # test): async_to_sync refuses to run there, so send from a helper thread.
        with ThreadPoolExecutor(max_workers=1) as pool:
            sending = pool.submit(async_to_sync(_group_send_bounded), layer, group, message)
            sending.result(LAYER_TIMEOUT_SECONDS + 1)
        return
    async_to_sync(_group_send_bounded)(layer, group, message)


async def _group_send_bounded(layer, group: str, message: dict) -> None:
    """The layer's group_send, given up (TimeoutError) after LAYER_TIMEOUT_SECONDS: a Redis
    that refuses connections fails at once, one that hangs must not hold the sender."""
    await asyncio.wait_for(layer.group_send(group, message), LAYER_TIMEOUT_SECONDS)


def organization_group_name(organization_id: int) -> str:
    return f"organization-{organization_id}"


def organization_notify(organization_id: int, *, text: str, url: str = "") -> None:
    """Show a notification on every open page of the organization's members (after commit)."""
    try:
        group_send(
            organization_group_name(organization_id),
            {"type": NOTIFICATION_HANDLER, "notification": {"text": text, "url": url}},
        )
    except Exception:
        logger.exception("Could not notify organization %s", organization_id)


class LiveChannelGuard:
    """Mixed into a websocket consumer (before Channels' class): a channel layer that fails
    (Redis stopped or unreachable) pauses the page instead of killing the application.

    Channels awaits the layer's receive beside the browser's messages, and an exception there
    (or in group_add) would end the consumer mid-handshake: the browser would see an error, the
    log a traceback. Here the first failure of the layer's receive is dispatched as a
    LIVE_LOST_HANDLER message (nothing more is asked of a dead layer on this connection); the
    consumer calls `live_pause()` then, and when group_add fails in connect. The page gets
    LIVE_PAUSED_MESSAGE and the close code CLOSE_LIVE_UNAVAILABLE, and connects again later."""

    _live_lost = False
    _live_paused = False
    _accepted = False
    _closing = False

    @property
    def channel_receive(self):
        return self._channel_receive_guarded

    @channel_receive.setter
    def channel_receive(self, receive):
        # Channels sets this to the layer's receive for the consumer's channel
        self._channel_receive_of_layer = receive

    async def _channel_receive_guarded(self) -> dict:
        if self._live_lost:
            await asyncio.Future()  # nothing more from this layer; cancelled as the consumer ends
        try:
            return await self._channel_receive_of_layer()
        except Exception as error:
            self._live_lost = True
            logger.warning("The channel layer does not answer (%r): live updates paused", error)
            return {"type": LIVE_LOST_HANDLER}

    def live_is_lost(self) -> bool:
        return self._live_lost

    async def accept(self, *args, **kwargs):
        self._accepted = True
        await super().accept(*args, **kwargs)

    async def close(self, *args, **kwargs):
        self._closing = True
        await super().close(*args, **kwargs)

    async def live_lost(self, message) -> None:
        """The layer failed while the connection was open (before it opened, connect sees
        live_is_lost() and pauses)."""
        if self._accepted:
            await self.live_pause()

    async def live_pause(self) -> None:
        """Tell the page its live updates are paused and close (once): accepted first, so the
        page reads the message and the close code rather than a failed handshake."""
        self._live_lost = True
        if self._live_paused or self._closing:
            return
        self._live_paused = True
        if not self._accepted:
            await self.accept()
        await self.send_json(LIVE_PAUSED_MESSAGE)
        await self.close(code=CLOSE_LIVE_UNAVAILABLE)

    async def group_join(self, group: str) -> None:
        """Join a group, given up after LAYER_TIMEOUT_SECONDS (raises as the layer does, or
        TimeoutError)."""
        await asyncio.wait_for(
            self.channel_layer.group_add(group, self.channel_name), LAYER_TIMEOUT_SECONDS
        )

    async def groups_leave(self, groups: list[str]) -> None:
        """Leave the groups, as far as the layer answers: a membership left behind in a
        stopped Redis expires by itself, and sends to this closed channel expire unread."""
        for group in groups:
            try:
                await asyncio.wait_for(
                    self.channel_layer.group_discard(group, self.channel_name),
                    LAYER_TIMEOUT_SECONDS,
                )
            except Exception as error:
                logger.info("Could not leave %s (%r): left to expire", group, error)
