"""Auctions close on time and exactly once while two real `manage.py worker` processes sweep
for due auctions at the same time (SPEC §4.2: within 2 s of the close, one lease per sale).

The workers use the test database, so the test's rows are committed for them
(`transaction=True`); on Redis they take tasks from a queue of this test's own
(tests.support.settings) and publish live events under a channel prefix of its own.
"""

import re
import subprocess
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from auctions.models import ENDED_STATUSES, Auction, AuctionStatus, Lease
from auctions.services import bid_place
from tests.factories import AuctionFactory, buyer
from tests.support.processes import manage_start, stop, wait_for
from tests.support.queues import private_queue_close, private_queue_open

pytestmark = pytest.mark.django_db(transaction=True)

WORKERS = 2
# The promise under test: closed within this long after the (possibly extended) close.
CLOSE_WITHIN = timedelta(seconds=2)


@pytest.fixture
def test_queue_name(settings):
    """A task queue of this test's own (here and in the workers it starts), so that on a
    shared Redis they take nobody else's tasks; its Redis keys are deleted afterwards."""
    private = private_queue_open(settings)
    yield private.name
    private_queue_close(private)


@pytest.fixture
def channel_prefix(settings):
    """Live events of this test (from this process and from its workers) under a prefix of its
    own, so that watchers in other test runs on the same Redis never see them."""
    prefix = f"sx-test-{uuid.uuid4().hex[:12]}"
    layers = {alias: dict(layer) for alias, layer in settings.CHANNEL_LAYERS.items()}
    for layer in layers.values():
        if "CONFIG" in layer:
            layer["CONFIG"] = {**layer["CONFIG"], "prefix": prefix}
    settings.CHANNEL_LAYERS = layers
    return prefix


def _worker_start(*, queue_name: str, channel_prefix: str, log: Path) -> subprocess.Popen:
    return manage_start(
        queue_name,
        log,
        "worker",
        "--queue",
        queue_name,
        CHANNELS_PREFIX=channel_prefix,
        EMAIL_URL="consolemail://",  # the e-mails land in the log, to be counted
    )


def _bid(auction: Auction, who, amount: int, maximum: int | None = None) -> None:
    organization, user = who
    bid_place(
        auction_id=auction.pk,
        bidder=organization,
        user=user,
        amount_minor=amount,
        max_amount_minor=maximum,
    )


def test_two_workers_close_each_due_auction_once_and_on_time(
    tmp_path, test_queue_name, channel_prefix
):
    logs = [tmp_path / f"worker-{n}.log" for n in range(1, WORKERS + 1)]
    workers = []
    try:
        for log in logs:
            workers.append(
                _worker_start(queue_name=test_queue_name, channel_prefix=channel_prefix, log=log)
            )
        watched = {f"worker {n}": pair for n, pair in enumerate(zip(workers, logs, strict=True), 1)}
        wait_for(
            lambda: all("Task worker" in log.read_text() for log in logs),
            what="start of both workers",
            watched=watched,
        )

        now = timezone.now()
        alice, bob, carol = buyer(), buyer(), buyer()
        # No soft close: a bid this close to the end would otherwise move the end.
        terms = {"start_price_minor": 1000, "soft_close_seconds": 0}
        proxy_war = AuctionFactory(closes_at=now + timedelta(seconds=1.5), **terms)
        _bid(proxy_war, alice, 1000, maximum=3000)
        _bid(proxy_war, bob, 1500, maximum=2000)
        _bid(proxy_war, carol, 2100)
        reserve_met = AuctionFactory(
            closes_at=now + timedelta(seconds=2), reserve_price_minor=1200, **terms
        )
        _bid(reserve_met, bob, 1000, maximum=1500)
        below_reserve = AuctionFactory(
            closes_at=now + timedelta(seconds=1.5), reserve_price_minor=5000, **terms
        )
        _bid(below_reserve, carol, 1000, maximum=4000)
        no_bids = AuctionFactory(closes_at=now + timedelta(seconds=1), **terms)
        # Opened by the workers, then closed by them.
        opens_late = AuctionFactory(
            status=AuctionStatus.SCHEDULED,
            opens_at=now + timedelta(seconds=0.3),
            closes_at=now + timedelta(seconds=2),
            **terms,
        )
        auctions = [proxy_war, reserve_met, below_reserve, no_bids, opens_late]
        for auction in auctions:
            auction.refresh_from_db()
        before = {auction.pk: auction for auction in auctions}

        wait_for(
            lambda: (
                not Auction.objects.filter(pk__in=list(before))
                .exclude(status__in=ENDED_STATUSES)
                .exists()
            ),
            what="close of every auction",
            watched=watched,
        )
        # Give a second close, were there one, the time to happen.
        time.sleep(1.5)
        assert all(worker.poll() is None for worker in workers), "a worker stopped"
    finally:
        stop(*workers, seconds=15)

    after = {auction.pk: auction for auction in Auction.objects.filter(pk__in=list(before))}
    leases = {lease.auction_id: lease for lease in Lease.objects.filter(auction__in=list(before))}
    assert Lease.objects.filter(auction__in=list(before)).count() == len(leases)
    output = "\n".join(log.read_text() for log in logs)

    expected = {
        proxy_war.pk: (AuctionStatus.CLOSED, alice[0].pk, 2150),
        reserve_met.pk: (AuctionStatus.CLOSED, bob[0].pk, 1200),
        below_reserve.pk: (AuctionStatus.NO_SALE, None, None),
        no_bids.pk: (AuctionStatus.NO_SALE, None, None),
        opens_late.pk: (AuctionStatus.NO_SALE, None, None),
    }
    for pk, (status, winner_id, price) in expected.items():
        auction, lease = after[pk], leases.get(pk)
        assert auction.status == status, f"auction {pk}"
        if winner_id is None:
            assert lease is None, f"auction {pk}"
        else:
            assert (lease.winner_id, lease.price_minor) == (winner_id, price), f"auction {pk}"
        assert auction.closes_at <= auction.closed_at <= auction.closes_at + CLOSE_WITHIN, (
            f"auction {pk} due {auction.closes_at:%T.%f}, closed {auction.closed_at:%T.%f}"
        )
        # One live event per bid, one for the opening of a scheduled auction, one for the close.
        opened = before[pk].status == AuctionStatus.SCHEDULED
        assert auction.seq == auction.bid_count + opened + 1, f"auction {pk}"
        # Each side is told once: the e-mails of one close, not of two.
        subjects = re.findall(rf"^Subject: (.*#{pk}\b.*)$", output, flags=re.MULTILINE)
        if winner_id is None:
            assert subjects == [f"Auction #{pk} ended without a sale"]
        else:
            assert sorted(subject.split(" for ")[0] for subject in subjects) == [
                f"Auction #{pk} sold",
                f"You won auction #{pk}",
            ]
