"""The live side of auctions: group names, bidder handles and event publishing over the channel
layer. Events are published after the transaction that made them commits."""

import logging

from django.utils.crypto import salted_hmac

from marketplace.live import group_send

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


def auction_events_publish(auction_id: int, events: list[dict]) -> None:
    """Send events to every watcher of the auction. Called from transaction.on_commit."""
    for event in events:
        try:
            group_send(auction_group_name(auction_id), {"type": EVENT_HANDLER, "event": event})
        except Exception as error:
            # Watchers that miss an event see a gap in seq and resync from a snapshot; pages
            # whose live channel is down (Redis stopped) resync once they reconnect.
            logger.warning(
                "Could not publish %s of auction %s: %r", event.get("type"), auction_id, error
            )
