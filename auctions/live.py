"""The live side of auctions: group names, bidder handles and event publishing over the channel
layer. Events are published after the transaction that made them commits."""

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.utils.crypto import salted_hmac

logger = logging.getLogger(__name__)

# The consumer's handler for events fanned out to an auction's group.
EVENT_HANDLER = "auction.event"


def auction_group_name(auction_id: int) -> str:
    return f"auction-{auction_id}"


def bidder_handle(auction_id: int, organization_id: int | None) -> str | None:
    """An anonymous, stable name of a bidder within one auction (different in every auction)."""
    if organization_id is None:
        return None
    digest = salted_hmac(
        "auctions.bidder_handle", f"{auction_id}:{organization_id}", algorithm="sha256"
    ).hexdigest()
    return f"Bidder {digest[:5].upper()}"


# The event loop serving websockets in this process. The in-memory channel layer's queues
# belong to it, so a thread without that loop (the embedded worker closing an auction) must
# hand its sends to it rather than run them on a loop of its own.
_server_loop: asyncio.AbstractEventLoop | None = None


def server_loop_register(loop: asyncio.AbstractEventLoop) -> None:
    """Called by consumers as they connect: remembers the loop that serves them."""
    global _server_loop
    _server_loop = loop


def _group_send(layer, group: str, message: dict) -> None:
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


def auction_events_publish(auction_id: int, events: list[dict]) -> None:
    """Send events to every watcher of the auction. Called from transaction.on_commit."""
    layer = get_channel_layer()
    if layer is None:
        return
    for event in events:
        try:
            _group_send(
                layer, auction_group_name(auction_id), {"type": EVENT_HANDLER, "event": event}
            )
        except Exception:
            # Watchers that miss an event see a gap in seq and resync from a snapshot.
            logger.exception("Could not publish %s of auction %s", event.get("type"), auction_id)
