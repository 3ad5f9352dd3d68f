"""Many buyers bidding on one auction at the same moment, each through its own database
connection, as the web servers' threads do. The auction row lock must serialize them: no bid
lost or stored twice, a gapless sequence, and a final price and leader that the price rules give
for the accepted bids taken one after another. Closing from two threads at once makes one lease.
"""

import random
import threading
import traceback
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from django.core import mail
from django.db import connection
from django.utils import timezone

from auctions.models import Auction, AuctionStatus, Bid, Lease
from auctions.services import (
    BidRejected,
    auction_close,
    bid_place,
    bid_resolve,
    increment_at,
    minimum_next_bid,
)
from tests.factories import AuctionFactory, buyer

pytestmark = [
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="row locks under real concurrency need PostgreSQL; "
        "SQLite serializes whole transactions",
    ),
    pytest.mark.django_db(transaction=True),
]

BIDDERS = 32
ATTEMPTS_PER_BIDDER = 100
START_PRICE = 1000
RESERVE = 5000
# However the threads go, the test ends: a thread still bidding after this is a failure.
THREAD_JOIN_SECONDS = 120


@pytest.fixture(autouse=True)
def _channel_layer_of_our_own(settings):
    """Bids publish live events; on a Redis that other test runs share, keep ours apart."""
    layers = {alias: dict(layer) for alias, layer in settings.CHANNEL_LAYERS.items()}
    for layer in layers.values():
        if "CONFIG" in layer:
            layer["CONFIG"] = {**layer["CONFIG"], "prefix": f"sx-test-{uuid.uuid4().hex[:12]}"}
    settings.CHANNEL_LAYERS = layers


@dataclass
class BidderLog:
    """What one bidding thread saw happen to its own bids."""

    accepted: dict[str, int] = field(default_factory=dict)  # client_bid_id -> Bid pk
    rejected: Counter = field(default_factory=Counter)  # by rejection code
    retries_replayed: int = 0
    failures: list[str] = field(default_factory=list)


def _bidder_run(*, auction_id, bands, organization, user, seed, start, log: BidderLog) -> None:
    """Bid ATTEMPTS_PER_BIDDER times from what this bidder last saw of the auction: mostly the
    minimum it was told, often a few steps more, some plain bids, some proxy bids; a leader
    sometimes raises its own maximum; a few accepted bids are sent again, as a client retries
    after a lost answer."""
    rng = random.Random(seed)
    minimum_seen = START_PRICE
    own_maximum = 0
    leading = False
    try:
        start.wait()
        for attempt in range(ATTEMPTS_PER_BIDDER):
            step = increment_at(minimum_seen, bands)
            if leading and rng.random() < 0.5:
                amount = minimum_seen
                maximum = max(own_maximum, amount) + rng.randint(1, 4) * step
            else:
                # Racing bidders told the same minimum: the higher ones still get in.
                amount = minimum_seen + rng.choice((0, 0, rng.randint(1, 12))) * step
                maximum = None if rng.random() < 0.6 else amount + rng.randint(1, 30) * step
            arguments = {
                "auction_id": auction_id,
                "bidder": organization,
                "user": user,
                "amount_minor": amount,
                "max_amount_minor": maximum,
                "client_bid_id": f"{organization.pk}-{attempt}",
            }
            try:
                outcome = bid_place(**arguments)
            except BidRejected as rejection:
                log.rejected[rejection.code] += 1
                minimum_seen = rejection.extra.get("minimum_minor", minimum_seen)
                leading = rejection.code == "already_leading"
                continue
            if outcome.replayed:
                log.failures.append(f"a first attempt was taken for a retry: {arguments}")
            log.accepted[arguments["client_bid_id"]] = outcome.bid.pk
            minimum_seen = minimum_next_bid(outcome.auction)
            leading = outcome.leading
            own_maximum = maximum or amount
            if rng.random() < 0.05:
                again = bid_place(**arguments)
                if not again.replayed or again.bid.pk != outcome.bid.pk:
                    log.failures.append(f"a retry was not answered with the first bid: {arguments}")
                log.retries_replayed += 1
    except Exception:
        log.failures.append(traceback.format_exc())
    finally:
        connection.close()


def _threads_run(target, argument_sets: list[dict]) -> None:
    threads = [threading.Thread(target=target, kwargs=kwargs) for kwargs in argument_sets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=THREAD_JOIN_SECONDS)
    assert not any(thread.is_alive() for thread in threads), "a thread is still running"


def _bids_replayed_through_the_rules(auction: Auction, bids: list[Bid]) -> Auction:
    """Take the stored bids one after another through the pure price rule on a fresh, unsaved
    auction with the same terms; every bid must be accepted with the standing stored with it."""
    replica = Auction(
        start_price_minor=auction.start_price_minor,
        reserve_price_minor=auction.reserve_price_minor,
        increment_bands=auction.increment_bands,
        currency=auction.currency,
    )
    for bid in bids:
        standing = bid_resolve(
            auction=replica,
            bidder_id=bid.bidder_id,
            amount_minor=bid.amount_minor,
            max_minor=bid.max_amount_minor or bid.amount_minor,
        )
        assert (standing.price_minor, standing.leader_id) == (
            bid.price_after_minor,
            bid.leader_after_id,
        ), f"bid seq {bid.seq} stored a standing the rules do not give"
        replica.current_price_minor = standing.price_minor
        replica.leader_id = standing.leader_id
        replica.leader_max_minor = standing.leader_max_minor
    return replica


def test_concurrent_bidders_lose_no_bid_and_end_where_the_rules_say_with_one_lease():
    auction = AuctionFactory(start_price_minor=START_PRICE, reserve_price_minor=RESERVE)
    buyers = [buyer() for _ in range(BIDDERS)]
    logs = [BidderLog() for _ in buyers]
    start = threading.Barrier(BIDDERS)

    _threads_run(
        _bidder_run,
        [
            {
                "auction_id": auction.pk,
                "bands": auction.increment_bands,
                "organization": organization,
                "user": user,
                "seed": index,
                "start": start,
                "log": log,
            }
            for index, ((organization, user), log) in enumerate(zip(buyers, logs, strict=True))
        ],
    )

    failures = [failure for log in logs for failure in log.failures]
    assert not failures, "\n".join(failures)
    accepted = {bid_id: pk for log in logs for bid_id, pk in log.accepted.items()}
    rejected = sum((log.rejected for log in logs), Counter())
    assert len(accepted) + rejected.total() == BIDDERS * ATTEMPTS_PER_BIDDER
    assert set(rejected) <= {"bid_too_low", "already_leading"}, rejected
    assert rejected["bid_too_low"] > 0, "no bid was ever outrun by another: nothing ran at once"
    assert sum(log.retries_replayed for log in logs) > 0

    auction.refresh_from_db()
    bids = list(Bid.objects.filter(auction=auction).order_by("seq"))
    # Every accepted bid is stored, once, under its client id; nothing else is stored.
    assert len(bids) == len(accepted)
    assert {bid.client_bid_id: bid.pk for bid in bids} == accepted
    assert [bid.seq for bid in bids] == list(range(1, len(bids) + 1))
    assert (auction.bid_count, auction.seq) == (len(bids), len(bids))

    previous_leader, last_challenge, last_price = None, 0, 0
    for bid in bids:
        if bid.bidder_id != previous_leader:
            # Only a leader raising its own maximum may send a lower amount.
            assert bid.amount_minor > last_challenge, f"bid seq {bid.seq} did not outbid"
            last_challenge = bid.amount_minor
        assert bid.price_after_minor >= last_price, f"the price fell at bid seq {bid.seq}"
        previous_leader, last_price = bid.leader_after_id, bid.price_after_minor

    replica = _bids_replayed_through_the_rules(auction, bids)
    assert (replica.current_price_minor, replica.leader_id, replica.leader_max_minor) == (
        auction.current_price_minor,
        auction.leader_id,
        auction.leader_max_minor,
    )
    assert auction.current_price_minor >= RESERVE

    Auction.objects.filter(pk=auction.pk).update(closes_at=timezone.now() - timedelta(seconds=1))
    closings = []
    both_ready = threading.Barrier(2)

    def close():
        try:
            both_ready.wait()
            closings.append(auction_close(auction_id=auction.pk))
        finally:
            connection.close()

    _threads_run(close, [{}, {}])

    assert len(closings) == 2
    assert sum(outcome is not None for outcome in closings) == 1
    lease = Lease.objects.get(auction=auction)
    assert (lease.winner_id, lease.price_minor) == (auction.leader_id, auction.current_price_minor)
    auction.refresh_from_db()
    assert auction.status == AuctionStatus.CLOSED
    assert auction.seq == len(bids) + 1
    subjects = sorted(message.subject for message in mail.outbox)
    assert [subject.split(" #")[0] for subject in subjects] == ["Auction", "You won auction"]
