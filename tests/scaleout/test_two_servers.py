"""Scale-out proof (issue 8): the exchange as production runs it on PostgreSQL + Redis, with two
daphne servers (no embedded worker) and two `manage.py worker` processes (Redis Queue; they
also run the periodic jobs, among them closing auctions).

Buyers watching the same auctions through different servers see each other's bids live, sent
over websockets or through the API of either server; each auction closes exactly once with
two workers sweeping for due auctions; a job's work items are run by both workers.

The processes use the test database, so the test's rows are committed for them
(`transaction=True`), a task queue of this test's own and a channel-layer prefix of its own
(tests.support.scaleout), so other test runs on the same Redis neither see nor take anything
of this test's.
"""

import json
import re
import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

from auctions.live import bidder_handle
from auctions.models import ENDED_STATUSES, Auction, AuctionStatus, Lease
from marketplace.models import AuditLogEntry
from segmentation import services
from segmentation.models import Job, JobStatus, UsageRecord, WorkItemStatus
from tests.captures import CAPTURES_DIR
from tests.factories import (
    PASSWORD,
    AuctionFactory,
    LeaseFactory,
    OfferFactory,
    ServiceBlockFactory,
    VerifiedProviderFactory,
    buyer,
    member_of,
)
from tests.support.api import api_key_for, http_request
from tests.support.queues import private_queue_close, private_queue_open
from tests.support.scaleout import (
    channel_prefix_private,
    cluster_running,
    live_clients,
    session_cookie,
)

pytestmark = [
    pytest.mark.skipif(
        not (settings.IS_POSTGRES and settings.REDIS_URL),
        reason="scale-out needs PostgreSQL and Redis: CI's second run "
        "(DATABASE_URL=postgres://…, REDIS_URL=redis://…)",
    ),
    pytest.mark.django_db(transaction=True),
]

# 2.9 MB paced at 8 Mbit/s: about 3 s over 6 segments, so both workers get some to run.
JOB_SEGMENTS = 6
PIPELINE = [{"service": "anonymize-ip"}, {"service": "strip-payload", "keep_bytes": 8}]
# After the last close, how long a second close (were there one) is given to show itself:
# three sweeps of the workers.
SECOND_CLOSE_GRACE_SECONDS = 1.5
# A page open on an auction mostly waits: the watchers sit idle this long before the bidding,
# longer than two of the Redis layer's blocking receives (channels-redis: 5 s each), which a
# client-side Redis socket timeout no longer than that would cut short, closing the socket.
IDLE_SECONDS = 12


@pytest.fixture
def queue(settings):
    private = private_queue_open(settings)
    yield private
    private_queue_close(private)


@pytest.fixture
def channel_prefix(settings):
    return channel_prefix_private(settings)


def _signed_in(user) -> Client:
    client = Client()
    assert client.login(email=user.email, password=PASSWORD)
    return client


def _job_submit() -> Job:
    """A job of 6 segments on a running lease, through the test's own task queue."""
    lease = LeaseFactory(block__max_rate_mbps=8, block__min_rate_mbps=1)
    for service in ("segmentation", "anonymize-ip", "strip-payload"):
        OfferFactory(provider=lease.block.provider, service=service)
    data = (CAPTURES_DIR / "many-protocols.pcap").read_bytes()
    return services.job_submit(
        organization=lease.winner,
        user=member_of(lease.winner),
        lease_id=lease.pk,
        chunks=[data],
        size=len(data),
        input_name="many-protocols.pcap",
        spec=services.JobSpec(method="round-robin", param=str(JOB_SEGMENTS), pipeline=PIPELINE),
    )


def _bid_placed(auction: Auction, bidder, amount: int):
    handle = bidder_handle(auction.pk, bidder.pk)

    def matches(message: dict) -> bool:
        return (
            message.get("type") == "bid.placed"
            and message.get("auction_id") == auction.pk
            and message.get("bidder") == handle
            and message.get("amount_minor") == amount
        )

    return matches


def _closed(message: dict) -> bool:
    return message.get("type") == "auction.closed"


def test_buyers_on_two_servers_see_each_others_bids_and_two_workers_share_the_work(
    tmp_path, settings, queue, channel_prefix
):
    storage = settings.JOB_STORAGE_DIR
    with cluster_running(
        queue_name=queue.name,
        channel_prefix=channel_prefix,
        directory=tmp_path,
        JOB_STORAGE_DIR=str(storage),
        EMAIL_URL="consolemail://",  # close e-mails land in the workers' logs, to be counted
    ) as cluster:
        server_1, server_2 = cluster.server_urls
        # The job's items keep both workers busy while the buyers connect; the periodic jobs
        # (closing auctions among them) run in a thread of each worker all the same.
        job = _job_submit()

        provider = VerifiedProviderFactory()
        (alpha, alpha_user), (beta, beta_user) = buyer(), buyer()
        alpha_key, beta_key = api_key_for(alpha), api_key_for(beta)
        alpha_cookie = session_cookie(_signed_in(alpha_user))
        beta_cookie = session_cookie(_signed_in(beta_user))
        # Closing in an hour until the bidding is done; no soft close, which would move the
        # end of an auction bid on near its close.
        terms = {"start_price_minor": 1000, "soft_close_seconds": 0}
        by_websocket, by_api, unsold = (
            AuctionFactory(block=ServiceBlockFactory(provider=provider), **terms) for _ in range(3)
        )
        auctions = [by_websocket, by_api, unsold]

        with live_clients(cluster) as live:
            # Buyer alpha watches every auction through server 1, buyer beta through server 2.
            alpha_on = {
                a.pk: live.watch(f"alpha@1 #{a.pk}", server_1, a.pk, cookie=alpha_cookie)
                for a in auctions
            }
            beta_on = {
                a.pk: live.watch(f"beta@2 #{a.pk}", server_2, a.pk, cookie=beta_cookie)
                for a in auctions
            }

            # The job runs to its end meanwhile; then the pages are still live.
            idle_since = time.monotonic()
            cluster.wait_for(lambda: Job.objects.get(pk=job.pk).ended, what="the end of the job")
            time.sleep(max(0.0, IDLE_SECONDS - (time.monotonic() - idle_since)))
            for socket in live.sockets:
                socket.assert_open()

            # Bids sent over the websocket of one server reach the watcher on the other.
            alpha_on[by_websocket.pk].send(
                {"type": "bid", "amount_minor": 1000, "client_bid_id": "alpha-1"}
            )
            alpha_on[by_websocket.pk].expect(
                lambda m: m.get("type") == "bid.accepted" and m.get("client_bid_id") == "alpha-1",
                what="alpha's bid accepted by server 1",
            )
            seen = beta_on[by_websocket.pk].expect(
                _bid_placed(by_websocket, alpha, 1000), what="alpha's bid on server 2"
            )
            beta_bid = seen["min_next_minor"]
            beta_on[by_websocket.pk].send(
                {"type": "bid", "amount_minor": beta_bid, "client_bid_id": "beta-1"}
            )
            alpha_on[by_websocket.pk].expect(
                _bid_placed(by_websocket, beta, beta_bid), what="beta's bid on server 1"
            )

            # Bids through either server's API reach the watchers on both.
            status, body = http_request(
                f"{server_1}/api/v1/auctions/{by_api.pk}/bids/",
                beta_key,
                data=json.dumps({"amount_minor": 1000}).encode(),
                headers={"Content-Type": "application/json"},
            )
            assert status == 201, body
            for socket in (alpha_on[by_api.pk], beta_on[by_api.pk]):
                seen = socket.expect(
                    _bid_placed(by_api, beta, 1000), what="beta's API bid on server 1"
                )
            alpha_bid = seen["min_next_minor"]
            status, body = http_request(
                f"{server_2}/api/v1/auctions/{by_api.pk}/bids/",
                alpha_key,
                data=json.dumps({"amount_minor": alpha_bid}).encode(),
                headers={"Content-Type": "application/json"},
            )
            assert status == 201, body
            for socket in (alpha_on[by_api.pk], beta_on[by_api.pk]):
                socket.expect(
                    _bid_placed(by_api, alpha, alpha_bid), what="alpha's API bid on server 2"
                )

            # Now the auctions are due: both workers sweep for them at once.
            closes_at = timezone.now() + timedelta(seconds=1)
            Auction.objects.filter(pk__in=[a.pk for a in auctions]).update(
                closes_at=closes_at, scheduled_close_at=closes_at
            )
            for socket in live.sockets:
                socket.expect(_closed, what="the close of the auction")
            time.sleep(SECOND_CLOSE_GRACE_SECONDS)
            cluster.assert_running()
            closes_seen = {
                socket.label: len(socket.of_type("auction.closed")) for socket in live.sockets
            }
            closed_events = {
                pk: (
                    alpha_on[pk].of_type("auction.closed")[0],
                    beta_on[pk].of_type("auction.closed")[0],
                )
                for pk in alpha_on
            }

        worker_logs = cluster.logs("worker")
        worker_names = cluster.worker_names

    # Each watcher, on either server, was told of each close once, and both alike.
    assert closes_seen == dict.fromkeys(closes_seen, 1)
    for pk, (to_alpha, to_beta) in closed_events.items():
        assert to_alpha == to_beta, f"auction {pk}"

    after = {auction.pk: auction for auction in Auction.objects.filter(pk__in=closed_events)}
    expected = {
        by_websocket.pk: (AuctionStatus.CLOSED, beta, beta_bid),
        by_api.pk: (AuctionStatus.CLOSED, alpha, alpha_bid),
        unsold.pk: (AuctionStatus.NO_SALE, None, None),
    }
    for pk, (status, winner, price) in expected.items():
        auction = after[pk]
        assert auction.status == status and auction.status in ENDED_STATUSES, f"auction {pk}"
        assert auction.closed_at >= auction.closes_at, f"auction {pk} closed early"
        # One live event per bid and one for the close: no second close was published.
        assert auction.seq == auction.bid_count + 1, f"auction {pk}"
        event = closed_events[pk][0]
        assert event["seq"] == auction.seq and event["status"] == status, f"auction {pk}"
        # One lease for a sale, none without; the money-moving action audited once.
        leases = list(Lease.objects.filter(auction_id=pk))
        subjects = re.findall(rf"^Subject: (.*#{pk}\b.*)$", worker_logs, flags=re.MULTILINE)
        if winner is None:
            assert leases == [], f"auction {pk}"
            assert event["winner"] is None
            assert subjects == [f"Auction #{pk} ended without a sale"]
            continue
        [lease] = leases
        assert (lease.winner_id, lease.price_minor) == (winner.pk, price), f"auction {pk}"
        assert event["winner"] == bidder_handle(pk, winner.pk)
        audits = AuditLogEntry.objects.filter(action="lease.created", object_id=str(lease.pk))
        assert audits.count() == 1, f"auction {pk}"
        # Each side told once: the e-mails of one close, not of two.
        assert sorted(subject.split(" for ")[0] for subject in subjects) == [
            f"Auction #{pk} sold",
            f"You won auction #{pk}",
        ]

    # The job's segments were spread over both workers, each segment run and metered once.
    job = Job.objects.get(pk=job.pk)
    assert job.status == JobStatus.SUCCEEDED, job.failure_reason
    items = list(job.items.all())
    assert len(items) == job.items_total == JOB_SEGMENTS
    assert {item.status for item in items} == {WorkItemStatus.DONE}
    ran_by = {item.number: item.worker for item in items}
    assert set(ran_by.values()) == set(worker_names), ran_by
    assert UsageRecord.objects.filter(job=job).count() == JOB_SEGMENTS
