"""The live auction page's websocket: a snapshot on connect, every event of the auction as it
happens, and bids and buy-now from signed-in buyers. Bids go through the same service as the
web form and the API (`bid_place`).

When the channel layer (Redis) does not answer, on connect or later, the page is told that live
updates are paused and the socket closes (marketplace.live.LiveChannelGuard); bids still go in
through the plain form and the API, and the page resyncs from a snapshot once it reconnects."""

import asyncio
import json
import logging
import time
from collections import deque

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from auctions.live import EVENT_HANDLER, auction_group_name
from auctions.models import BidChannel
from auctions.selectors import auction_snapshot, auctions_public
from auctions.services import BidRejected, auction_buy_now, bid_place
from marketplace.live import LiveChannelGuard, server_loop_register
from marketplace.models import Organization
from marketplace.ratelimit import bid_rate_count
from marketplace.selectors import organization_current

logger = logging.getLogger(__name__)

# Close code for an auction that does not exist or is not public (sent after accepting, so
# the browser sees it and stops reconnecting).
CLOSE_NOT_FOUND = 4404

# A person clicks a few times a second at most; this only stops a runaway client.
MESSAGES_PER_WINDOW = 20
RATE_WINDOW_SECONDS = 1.0

# How long an event that arrived before its predecessor is held before the page resyncs.
GAP_WAIT_SECONDS = 0.5

# The largest amount the database stores (a signed 64-bit integer).
AMOUNT_MAX_MINOR = 2**63 - 1


def _organization_acting(scope) -> tuple[object | None, Organization | None]:
    """The signed-in user and the organization it acts for (None, None when anonymous)."""
    user = scope.get("user")
    if user is None or not user.is_authenticated:
        return None, None
    return user, organization_current(user=user, session=scope.get("session"))


@database_sync_to_async
def _acting_and_snapshot(auction_id: int, scope) -> tuple[object, Organization | None, dict | None]:
    """Who the connection acts for (read once: a page reconnects when it changes) and the
    auction's snapshot for that viewer."""
    user, organization = _organization_acting(scope)
    return user, organization, _snapshot_for(auction_id, organization)


@database_sync_to_async
def _snapshot_read(auction_id: int, organization: Organization | None) -> dict | None:
    return _snapshot_for(auction_id, organization)


def _snapshot_for(auction_id: int, organization: Organization | None) -> dict | None:
    auction = auctions_public().filter(pk=auction_id).first()
    if auction is None:
        return None
    viewer = (
        organization
        if organization is not None and (organization.is_recipient or organization.is_group)
        else None
    )
    return auction_snapshot(auction=auction, viewer=viewer)


@database_sync_to_async
def _bid_place(
    auction_id: int,
    user,
    organization: Organization | None,
    *,
    amount_minor: int,
    max_amount_minor: int | None,
    client_bid_id: str,
) -> dict:
    if user is None:
        raise BidRejected("not_authenticated", "Log in to bid.")
    if organization is None:
        raise BidRejected("not_a_buyer", "Join or create a buyer organization to bid.")
    limited = bid_rate_count(user)
    if not limited.allowed:
        raise BidRejected(
            "rate_limited",
            f"Too many bids: wait {limited.retry_after} seconds, then bid again.",
            retry_after_seconds=limited.retry_after,
        )
    outcome = bid_place(
        auction_id=auction_id,
        bidder=organization,
        user=user,
        amount_minor=amount_minor,
        max_amount_minor=max_amount_minor,
        client_bid_id=client_bid_id,
        channel=BidChannel.WEBSOCKET,
    )
    return {
        "type": "bid.accepted",
        "client_bid_id": client_bid_id,
        "seq": outcome.bid.seq,
        "leading": outcome.leading,
        "price_minor": outcome.auction.current_price_minor,
        "replayed": outcome.replayed,
    }


@database_sync_to_async
def _buy_now(auction_id: int, user, organization: Organization | None) -> dict:
    if user is None:
        raise BidRejected("not_authenticated", "Log in to buy.")
    if organization is None:
        raise BidRejected("not_a_buyer", "Join or create a buyer organization to buy.")
    lease = auction_buy_now(auction_id=auction_id, buyer=organization, user=user)
    return {"type": "buy_now.accepted", "price_minor": lease.price_minor}


def _amount_parse(value, *, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= AMOUNT_MAX_MINOR:
        raise BidRejected("invalid_amount", "Amounts are positive whole numbers of minor units.")
    return value


class AuctionConsumer(LiveChannelGuard, AsyncJsonWebsocketConsumer):
    """One auction's live feed at /ws/auctions/<id>/ (JSON messages)."""

    group_name = None

    async def connect(self):
        self.auction_id = self.scope["url_route"]["kwargs"]["auction_id"]
        self.recent_messages = deque()
        # Workers closing auctions in this process send their events through this loop.
        server_loop_register(asyncio.get_running_loop())
        if self.live_is_lost():
            await self.live_pause()
            return
        # Join before reading the snapshot, so no event falls between the two: an event the
        # snapshot already contains is ignored by the page (its seq is not newer).
        try:
            await self.group_join(auction_group_name(self.auction_id))
        except Exception as error:
            logger.warning("Auction %s: live channel unreachable (%r)", self.auction_id, error)
            await self.live_pause()
            return
        self.group_name = auction_group_name(self.auction_id)
        self.user, self.organization, snapshot = await _acting_and_snapshot(
            self.auction_id, self.scope
        )
        await self.accept()
        if snapshot is None:
            await self.groups_leave([self.group_name])
            self.group_name = None
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.last_seq = snapshot["seq"]
        self.held_events: dict[int, dict] = {}
        self.gap_timer: asyncio.TimerHandle | None = None
        await self.send_json(snapshot)

    async def disconnect(self, code):
        if getattr(self, "gap_timer", None) is not None:
            self.gap_timer.cancel()
        if self.group_name:
            await self.groups_leave([self.group_name])

    async def dispatch(self, message):
        # Relaying an event needs no database: skip the hop through the database thread that
        # Channels makes before every handler (it would queue every watcher's event behind
        # the bids being placed).
        if message["type"] == EVENT_HANDLER:
            await self.auction_event(message)
            return
        await super().dispatch(message)

    async def auction_event(self, message):
        """An event published by the services after their transaction committed.

        Servers publish after their own commits, so two close bids placed through two servers
        can arrive here crossed. Events go to the page in seq order: an early one is held until
        the one before it arrives; if that one never comes, the page gets a fresh snapshot."""
        event = message["event"]
        seq = event.get("seq")
        if not isinstance(seq, int) or seq <= self.last_seq:
            return
        self.held_events[seq] = event
        while self.last_seq + 1 in self.held_events:
            self.last_seq += 1
            await self.send_json(self.held_events.pop(self.last_seq))
        if self.held_events and self.gap_timer is None:
            loop = asyncio.get_running_loop()
            self.gap_timer = loop.call_later(
                GAP_WAIT_SECONDS, lambda: loop.create_task(self._gap_resync())
            )
        elif not self.held_events and self.gap_timer is not None:
            self.gap_timer.cancel()
            self.gap_timer = None

    async def _gap_resync(self):
        """A missing event did not arrive: send a snapshot, then what came after it."""
        self.gap_timer = None
        if not self.held_events:
            return
        snapshot = await _snapshot_read(self.auction_id, self.organization)
        if snapshot is None:
            return
        await self._snapshot_send(snapshot)

    async def _snapshot_send(self, snapshot: dict):
        self.last_seq = max(self.last_seq, snapshot["seq"])
        await self.send_json(snapshot)
        for seq in sorted(self.held_events):
            event = self.held_events.pop(seq)
            if seq == self.last_seq + 1:
                self.last_seq = seq
                await self.send_json(event)

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        try:
            content = json.loads(text_data) if text_data else None
        except ValueError:
            content = None
        if not isinstance(content, dict):
            await self._error("malformed_message", "Send one JSON object per message.")
            return
        await self.receive_json(content, **kwargs)

    async def receive_json(self, content, **kwargs):
        kind = content.get("type")
        handlers = {"bid": self._bid, "snapshot": self._snapshot, "buy_now": self._buy_now}
        handler = handlers.get(kind) if isinstance(kind, str) else None
        if handler is None:
            await self._error("unknown_message_type", f"Unknown message type {kind!r}.")
            return
        await handler(content)

    async def _snapshot(self, content):
        if self._rate_limited():
            await self._error("rate_limited", "Too many messages; slow down.")
            return
        snapshot = await _snapshot_read(self.auction_id, self.organization)
        if snapshot is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        await self._snapshot_send(snapshot)

    async def _bid(self, content):
        client_bid_id = content.get("client_bid_id") or ""
        if not isinstance(client_bid_id, str):
            await self._error("malformed_message", "client_bid_id is a string.")
            return
        if self._rate_limited():
            await self._error(
                "rate_limited", "Too many bids; slow down.", client_bid_id=client_bid_id
            )
            return
        try:
            reply = await _bid_place(
                self.auction_id,
                self.user,
                self.organization,
                amount_minor=_amount_parse(content.get("amount_minor")),
                max_amount_minor=_amount_parse(content.get("max_amount_minor"), optional=True),
                client_bid_id=client_bid_id,
            )
        except BidRejected as rejection:
            await self._error(
                rejection.code, rejection.message, client_bid_id=client_bid_id, **rejection.extra
            )
            return
        await self.send_json(reply)

    async def _buy_now(self, content):
        if self._rate_limited():
            await self._error("rate_limited", "Too many messages; slow down.")
            return
        try:
            reply = await _buy_now(self.auction_id, self.user, self.organization)
        except BidRejected as rejection:
            await self._error(rejection.code, rejection.message, **rejection.extra)
            return
        await self.send_json(reply)

    async def _error(self, code: str, detail: str, **extra):
        await self.send_json({"type": "error", "code": code, "detail": detail, **extra})

    def _rate_limited(self) -> bool:
        now = time.monotonic()
        while self.recent_messages and now - self.recent_messages[0] >= RATE_WINDOW_SECONDS:
            self.recent_messages.popleft()
        if len(self.recent_messages) >= MESSAGES_PER_WINDOW:
            return True
        self.recent_messages.append(now)
        return False
