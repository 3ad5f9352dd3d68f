"""Sending to websocket groups from synchronous code, and live notifications to everyone of an
organization who has the portal open. Sends happen after the transaction commits."""

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer

logger = logging.getLogger(__name__)

# The consumer handler of organization notifications.
NOTIFICATION_HANDLER = "organization.notification"

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
        asyncio.run_coroutine_threadsafe(layer.group_send(group, message), loop).result(5)
        return
    if current is not None:
        # Sync code called from a thread that runs a loop of its own (a browser-driving
        # test): async_to_sync refuses to run there, so send from a helper thread.
        with ThreadPoolExecutor(max_workers=1) as pool:
            pool.submit(async_to_sync(layer.group_send), group, message).result(5)
        return
    async_to_sync(layer.group_send)(group, message)


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
