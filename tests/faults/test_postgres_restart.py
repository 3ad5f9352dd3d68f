"""PostgreSQL restarted while buyers bid (issue 8, point 3): no bid the API acknowledged is lost,
bids during the outage fail fast with a clear answer, a client that retries with its
Idempotency-Key has its bid recorded exactly once, the server serves again without being
restarted itself, and every watcher's page ends on the live price.

The suite's own PostgreSQL server is shared, so the exchange under test gets a private cluster
(tests.support.postgres_cluster) that the test stops and starts; the exchange itself is a real
`manage.py serve` (daphne, the embedded worker, the in-memory channel layer) on that cluster.
One restart scenario runs per stop mode ("fast": a service manager's restart, sessions ended;
"immediate": a crash, recovered from the WAL at start); each test asserts one outcome of it."""

import asyncio
import json
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.conf import settings

from auctions.models import ENDED_STATUSES, Auction, Bid
from marketplace.models import IdempotencyRecord
from tests.support.postgres_cluster import (
    PostgresCluster,
    postgres_cluster_create,
    postgres_cluster_unavailable,
)
from tests.support.processes import kill, manage_start, serve_start, stop, wait_for

pytestmark = [
    pytest.mark.skipif(
        not settings.IS_POSTGRES,
        reason="PostgreSQL restart needs the PostgreSQL run of CI (DATABASE_URL=postgres://...)",
    ),
    pytest.mark.skipif(
        postgres_cluster_unavailable() is not None,
        reason=f"PostgreSQL restart needs a private cluster: {postgres_cluster_unavailable()}",
    ),
]

BIDS_BEFORE = 6  # acknowledged before the database goes down
BIDS_AFTER = 6  # acknowledged after it is back
DOWN_SECONDS = 3  # how long the database stays down
START_PRICE_MINOR = 1000
STEP_MINOR = 100  # one increment band: every bid is the previous one plus this

ANSWER_SECONDS = 10  # a request answered later than this hangs
RETRY_PAUSE_SECONDS = 0.25
BID_GIVE_UP_SECONDS = 60  # one bid not acknowledged within this: the exchange did not recover
MIGRATE_SECONDS = 300
CONVERGE_SECONDS = 15
CLOSE_SECONDS = 10  # SPEC §4.2 says two; shared CI machines get slack

STOP_MODES = ("fast", "immediate")

# Run by `manage.py shell` on the private database (the test's own ORM is bound to the suite's
# test database): two buyers with write API keys and, for each restart, an open auction with
# one increment to bid on and another to close once the database is back.
DATA_MARKER = "SX-FAULT-DATA "
DATA_SCRIPT = f"""
import json
from datetime import timedelta
from django.utils import timezone
from tests.factories import AuctionFactory, buyer
from tests.support.api import api_key_for

def auction():
    return AuctionFactory(
        closes_at=timezone.now() + timedelta(hours=1),
        start_price_minor={START_PRICE_MINOR},
        increment_bands=[{{"from_minor": 0, "increment_minor": {STEP_MINOR}}}],
    ).pk

data = {{
    "keys": [api_key_for(buyer()[0]) for _ in range(2)],
    "auctions": {{mode: {{"bidding": auction(), "closing": auction()}} for mode in {STOP_MODES!r}}},
}}
print({DATA_MARKER!r} + json.dumps(data), flush=True)
"""


@dataclass
class Attempt:
    """One POST of a bid: when it went and came back, and what came back."""

    bid: int
    key: str
    sent: float
    answered: float
    status: int | None  # None: no HTTP answer (connection refused, time-out)
    code: str = ""  # the problem's code, or the transport error
    content_type: str = ""
    retry_after: str | None = None
    replayed: bool = False
    body: dict | None = None

    def brief(self) -> str:
        took = self.answered - self.sent
        replayed = " replayed" if self.replayed else ""
        return f"bid {self.bid}: {self.status} {self.code}{replayed} in {took:.2f} s"


def _json_or_none(raw: bytes) -> dict | None:
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def bid_post(url: str, api_key: str, *, bid: int, key: str, amount_minor: int) -> Attempt:
    request = urllib.request.Request(
        url,
        data=json.dumps({"amount_minor": amount_minor}).encode(),
        headers={
            "Authorization": f"Bearer {api_key}",
            "Content-Type": "application/json",
            "Idempotency-Key": key,
        },
        method="POST",
    )
    sent = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=ANSWER_SECONDS) as response:
            status, headers, raw = response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        status, headers, raw = error.code, error.headers, error.read()
    except OSError as error:  # refused, reset or timed out: no answer at all
        return Attempt(bid, key, sent, time.monotonic(), None, code=f"{type(error).__name__}")
    body = _json_or_none(raw)
    return Attempt(
        bid,
        key,
        sent,
        time.monotonic(),
        status,
        code=str(body.get("code", "")) if body else raw[:80].decode(errors="replace"),
        content_type=headers.get("Content-Type", ""),
        retry_after=headers.get("Retry-After"),
        replayed=headers.get("Idempotent-Replayed") == "true",
        body=body,
    )


class Bidder(threading.Thread):
    """Two buyers outbid each other over the API, one bid after the other, each bid one step
    above the last acknowledged one. A bid that gets no 201 is retried with the same
    Idempotency-Key and body until it does, as a careful client would."""

    def __init__(self, server: str, auction_id: int, api_keys: list[str]):
        super().__init__(name="bidder", daemon=True)
        self.url = f"{server}/api/v1/auctions/{auction_id}/bids/"
        self.api_keys = api_keys
        self.attempts: list[Attempt] = []
        self.acknowledged: list[Attempt] = []  # the 201 that ended each bid's attempts
        self.failure = ""
        self.stopping = threading.Event()

    def run(self):
        bid = 0
        while not self.stopping.is_set():
            key = f"fault-{uuid.uuid4()}"
            amount = START_PRICE_MINOR + bid * STEP_MINOR
            give_up = time.monotonic() + BID_GIVE_UP_SECONDS
            while True:
                attempt = bid_post(
                    self.url, self.api_keys[bid % 2], bid=bid, key=key, amount_minor=amount
                )
                self.attempts.append(attempt)
                if attempt.status == 201:
                    self.acknowledged.append(attempt)
                    break
                retryable = attempt.status is None or attempt.status >= 500
                retryable |= attempt.status == 409 and attempt.code == "idempotency_in_progress"
                if not retryable:
                    self.failure = f"bid {bid} refused: {attempt.brief()} {attempt.body}"
                    return
                if time.monotonic() > give_up:
                    self.failure = f"bid {bid} not acknowledged in {BID_GIVE_UP_SECONDS} s"
                    return
                time.sleep(RETRY_PAUSE_SECONDS)
            bid += 1


class Watcher(threading.Thread):
    """An auction page's live feed, as the page's script keeps it: it applies the snapshot and
    each next event, asks for a snapshot on a gap, and reconnects (after half a second) when
    the connection ends or cannot be opened."""

    def __init__(self, server: str, auction_id: int):
        super().__init__(name=f"watcher-{auction_id}", daemon=True)
        self.url = f"{server.replace('http://', 'ws://')}/ws/auctions/{auction_id}/"
        self.origin = server
        self.seq: int | None = None
        self.price_minor: int | None = None
        self.connections = 0  # opened
        self.refused: list[tuple[float, str]] = []  # (when, why) attempts that opened nothing
        self.ended: list[tuple[float, str]] = []  # (when, how) open connections that ended
        self.snapshots: list[tuple[float, int, int | None]] = []  # (when, seq, price)
        self.bid_events: list[int] = []  # seq of each bid.placed applied
        self.stopping = threading.Event()

    def run(self):
        asyncio.run(self._watch())

    async def _watch(self):
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed

        while not self.stopping.is_set():
            try:
                async with connect(
                    self.url, origin=self.origin, open_timeout=ANSWER_SECONDS, close_timeout=1
                ) as websocket:
                    self.connections += 1
                    while not self.stopping.is_set():
                        try:
                            message = await asyncio.wait_for(websocket.recv(), 0.2)
                        except TimeoutError:
                            continue
                        await self._apply(json.loads(message), websocket)
            except ConnectionClosed as closed:
                self.ended.append((time.monotonic(), str(closed)))
            except (OSError, TimeoutError, Exception) as error:  # the handshake failed
                self.refused.append((time.monotonic(), f"{type(error).__name__}: {error}"))
            if not self.stopping.is_set():
                await asyncio.sleep(0.5)

    async def _apply(self, message: dict, websocket):
        kind, seq = message.get("type"), message.get("seq")
        if kind == "snapshot":
            self.seq, self.price_minor = seq, message["price_minor"]
            self.snapshots.append((time.monotonic(), seq, self.price_minor))
        elif isinstance(seq, int) and self.seq is not None and seq == self.seq + 1:
            self.seq = seq
            if kind == "bid.placed":
                self.price_minor = message["price_minor"]
                self.bid_events.append(seq)
        elif isinstance(seq, int) and self.seq is not None and seq > self.seq + 1:
            await websocket.send(json.dumps({"type": "snapshot"}))

    def brief(self) -> str:
        return (
            f"connections {self.connections}, refused {len(self.refused)} "
            f"({self.refused[-1][1] if self.refused else '-'}), ended {self.ended}, "
            f"snapshots {[(seq, price) for _, seq, price in self.snapshots]}, "
            f"bid events {self.bid_events}, now at seq {self.seq} price {self.price_minor}"
        )


@dataclass
class Exchange:
    """The exchange under test: a private cluster, its migrated database, one server."""

    cluster: PostgresCluster
    database: str
    url: str
    server: subprocess.Popen
    server_log: Path
    api_keys: list[str]
    auctions: dict[str, dict[str, int]]  # stop mode -> {"bidding": id, "closing": id}

    def server_log_since(self, offset: int) -> str:
        return self.server_log.read_text()[offset:]


@dataclass
class Outcome:
    """What one restart did, for the tests to judge."""

    mode: str
    exchange: Exchange
    log_offset: int = 0  # where this restart's part of the server log begins
    down_at: float = 0.0  # the database was down from when `pg_ctl stop` returned...
    up_at: float = 0.0  # ...to when `pg_ctl start` began
    attempts: list[Attempt] = field(default_factory=list)
    acknowledged: list[Attempt] = field(default_factory=list)
    bidder_failure: str = ""
    bids_stored: list[tuple[int, int, int]] = field(default_factory=list)  # id, amount, seq
    idempotency_stored: dict[str, tuple[int | None, dict | None]] = field(default_factory=dict)
    auction_seq: int | None = None
    auction_price_minor: int | None = None
    readiness_down: int | None = None
    readiness_after: int | None = None
    server_running_after: bool = False
    closing_status: str = ""  # the auction due to close after the restart, once it is due
    closing_seconds: float | None = None  # how long after its close it ended
    watcher_before: Watcher | None = None
    watcher_during: Watcher | None = None

    def during_outage(self) -> list[Attempt]:
        return [a for a in self.attempts if a.sent >= self.down_at and a.answered <= self.up_at]

    def after_recovery(self) -> list[Attempt]:
        return [a for a in self.acknowledged if a.sent > self.up_at]

    def explain(self) -> str:
        watchers = [
            f"{name}: {watcher.brief()}"
            for name, watcher in (
                ("watcher before", self.watcher_before),
                ("watcher during", self.watcher_during),
            )
            if watcher is not None
        ]
        return "\n".join(
            [
                f"stop mode {self.mode}; database down for {self.up_at - self.down_at:.1f} s",
                f"bidder: {self.bidder_failure or 'ran through'}",
                "attempts: " + "; ".join(attempt.brief() for attempt in self.attempts),
                f"stored bids (id, amount, seq): {self.bids_stored}",
                f"auction seq {self.auction_seq}, price {self.auction_price_minor}",
                f"readiness down {self.readiness_down}, after {self.readiness_after}",
                f"auction due after the restart: {self.closing_status} "
                f"after {self.closing_seconds} s",
                *watchers,
                "--- server log of this restart (end):",
                self.exchange.server_log_since(self.log_offset)[-6000:],
                "--- PostgreSQL log (end):",
                self.exchange.cluster.log_text()[-3000:],
            ]
        )


def _readiness(server: str) -> int | None:
    try:
        with urllib.request.urlopen(f"{server}/readyz", timeout=ANSWER_SECONDS) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


def _manage_run(queue: str, log: Path, *args: str, seconds: float, **env: str) -> str:
    """Run `manage.py <args>` to its end; its output. Fails the test on an error."""
    process = manage_start(queue, log, *args, **env)
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        kill(process)
        pytest.fail(f"manage.py {args[0]} took over {seconds} s:\n{log.read_text()}")
    if process.returncode != 0:
        pytest.fail(f"manage.py {args[0]} failed ({process.returncode}):\n{log.read_text()}")
    return log.read_text()


@pytest.fixture(scope="module")
def exchange(tmp_path_factory) -> Exchange:
    """A private PostgreSQL cluster with a migrated database, test data and one `manage.py
    serve` on it (in-memory channel layer and cache, database task queue, embedded worker);
    all stopped and removed at the end."""
    directory = tmp_path_factory.mktemp("postgres-restart")
    queue = f"sx-fault-{uuid.uuid4().hex[:12]}"
    cluster = server = None
    try:
        cluster = postgres_cluster_create()
        database = "sx_fault"
        environment = {
            "DATABASE_URL": cluster.database_create(database),
            "REDIS_URL": "",
            "TASK_BACKEND": "db",
        }
        _manage_run(
            queue, directory / "migrate.log", "migrate", "--no-input",
            seconds=MIGRATE_SECONDS, **environment,
        )  # fmt: skip
        output = _manage_run(
            queue, directory / "data.log", "shell", "-c", DATA_SCRIPT, seconds=120, **environment
        )
        data = json.loads(output.split(DATA_MARKER, 1)[1].splitlines()[0])
        server_log = directory / "serve.log"
        server, url = serve_start(queue, server_log, **environment)
        yield Exchange(
            cluster=cluster,
            database=database,
            url=url,
            server=server,
            server_log=server_log,
            api_keys=data["keys"],
            auctions=data["auctions"],
        )
    except Exception as error:
        log = cluster.log_text() if cluster is not None else ""
        pytest.fail(f"Could not set up the exchange on a private cluster: {error}\n{log}")
    finally:
        stop(server)
        if cluster is not None:
            cluster.remove()


def _stored(exchange: Exchange, outcome: Outcome, auction_id: int) -> None:
    """Read what the private database holds after the restart, straight from PostgreSQL."""
    bid_table, auction_table = Bid._meta.db_table, Auction._meta.db_table
    record_table = IdempotencyRecord._meta.db_table
    with exchange.cluster.connect(exchange.database) as connection:
        outcome.bids_stored = connection.execute(
            f"SELECT id, amount_minor, seq FROM {bid_table} WHERE auction_id = %s ORDER BY seq",
            [auction_id],
        ).fetchall()
        outcome.auction_seq, outcome.auction_price_minor = connection.execute(
            f"SELECT seq, current_price_minor FROM {auction_table} WHERE id = %s", [auction_id]
        ).fetchone()
        outcome.idempotency_stored = {
            key: (status, body)
            for key, status, body in connection.execute(
                f"SELECT key, response_status, response_body FROM {record_table}"
            ).fetchall()
        }


def _closing_observe(exchange: Exchange, outcome: Outcome, auction_id: int) -> None:
    """Make the second auction due now (as if its close had come) and see whether the
    server's periodic jobs, which failed while the database was down, end it."""
    table = Auction._meta.db_table
    with exchange.cluster.connect(exchange.database, autocommit=True) as connection:
        connection.execute(
            f"UPDATE {table} SET closes_at = now(), scheduled_close_at = now() WHERE id = %s",
            [auction_id],
        )
        due = time.monotonic()
        while time.monotonic() - due < CLOSE_SECONDS:
            (outcome.closing_status,) = connection.execute(
                f"SELECT status FROM {table} WHERE id = %s", [auction_id]
            ).fetchone()
            if outcome.closing_status in ENDED_STATUSES:
                outcome.closing_seconds = round(time.monotonic() - due, 1)
                return
            time.sleep(0.2)


@pytest.fixture(scope="module", params=STOP_MODES)
def restart(request, exchange) -> Outcome:
    """Buyers bid and two pages watch while PostgreSQL is stopped (in the given mode) for a
    few seconds and started again; what happened."""
    mode = request.param
    auction_id = exchange.auctions[mode]["bidding"]
    outcome = Outcome(mode=mode, exchange=exchange, log_offset=len(exchange.server_log_since(0)))
    running = {"server": (exchange.server, exchange.server_log)}
    bidder = Bidder(exchange.url, auction_id, exchange.api_keys)
    watchers = [Watcher(exchange.url, auction_id)]
    outcome.watcher_before = watchers[0]
    try:
        watchers[0].start()
        wait_for(lambda: watchers[0].snapshots, what="the first page's snapshot", watched=running)
        bidder.start()
        wait_for(
            lambda: len(bidder.acknowledged) >= BIDS_BEFORE or bidder.failure,
            what=f"{BIDS_BEFORE} acknowledged bids before the restart",
            watched=running,
        )

        exchange.cluster.stop(mode=mode)
        outcome.down_at = time.monotonic()
        outcome.watcher_during = Watcher(exchange.url, auction_id)  # a page opened now
        watchers.append(outcome.watcher_during)
        outcome.watcher_during.start()
        time.sleep(DOWN_SECONDS / 2)
        outcome.readiness_down = _readiness(exchange.url)
        time.sleep(DOWN_SECONDS / 2)
        outcome.up_at = time.monotonic()
        exchange.cluster.start()

        recovered = len(bidder.acknowledged)
        wait_for(
            lambda: len(bidder.acknowledged) >= recovered + BIDS_AFTER or bidder.failure,
            what=f"{BIDS_AFTER} acknowledged bids after the restart",
            watched=running,
            seconds=BID_GIVE_UP_SECONDS + ANSWER_SECONDS,
        )
        bidder.stopping.set()
        bidder.join(timeout=BID_GIVE_UP_SECONDS + ANSWER_SECONDS)
        outcome.readiness_after = _readiness(exchange.url)
        outcome.server_running_after = exchange.server.poll() is None
        _stored(exchange, outcome, auction_id)
        for watcher in watchers:  # bounded: a page that never catches up is for the tests
            deadline = time.monotonic() + CONVERGE_SECONDS
            while watcher.seq != outcome.auction_seq and time.monotonic() < deadline:
                time.sleep(0.1)
        _closing_observe(exchange, outcome, exchange.auctions[mode]["closing"])
    except (Exception, pytest.fail.Exception) as error:
        outcome.attempts, outcome.acknowledged = list(bidder.attempts), bidder.acknowledged
        outcome.bidder_failure = bidder.failure
        pytest.fail(f"The restart did not run through: {error}\n{outcome.explain()}")
    finally:
        for thread in [*watchers, bidder]:
            thread.stopping.set()
        for thread in [*watchers, bidder]:
            if thread.ident is not None:  # started
                thread.join(timeout=ANSWER_SECONDS + 5)
    outcome.attempts, outcome.acknowledged = list(bidder.attempts), list(bidder.acknowledged)
    outcome.bidder_failure = bidder.failure
    return outcome


def test_every_bid_acknowledged_with_201_is_in_the_database_after_the_restart(restart):
    assert not restart.bidder_failure, restart.explain()
    stored = {bid_id: (amount, seq) for bid_id, amount, seq in restart.bids_stored}
    for attempt in restart.acknowledged:
        assert stored.get(attempt.body["id"]) == (
            attempt.body["amount_minor"],
            attempt.body["seq"],
        ), f"acknowledged bid {attempt.body} is not stored\n{restart.explain()}"
    last = restart.acknowledged[-1].body
    assert (restart.auction_seq, restart.auction_price_minor) == (
        last["seq"],
        last["price_minor"],
    ), restart.explain()


def test_a_bid_retried_with_its_idempotency_key_is_recorded_exactly_once(restart):
    # Each bid is one step above the one before it: one row per bid, none twice.
    assert [amount for _, amount, _ in restart.bids_stored] == [
        START_PRICE_MINOR + bid * STEP_MINOR for bid in range(len(restart.acknowledged))
    ], restart.explain()
    retried = {attempt.bid for attempt in restart.during_outage()}
    assert retried, f"no bid was retried across the outage\n{restart.explain()}"
    for attempt in restart.acknowledged:
        assert restart.idempotency_stored[attempt.key] == (201, attempt.body), restart.explain()


def test_bids_during_the_outage_are_refused_at_once_and_without_a_traceback(restart):
    during = restart.during_outage()
    assert during, f"no bid was tried while the database was down\n{restart.explain()}"
    for attempt in during:
        assert attempt.status is not None and attempt.status >= 500, attempt.brief()
        assert attempt.answered - attempt.sent < ANSWER_SECONDS, attempt.brief()
        assert "Traceback" not in json.dumps(attempt.body) + attempt.code, attempt.brief()
    assert restart.readiness_down == 503, restart.explain()


def test_bids_during_the_outage_get_a_503_problem_saying_when_to_retry(restart):
    during = restart.during_outage()
    assert during, restart.explain()
    for attempt in during:
        assert (attempt.status, attempt.code) == (503, "database_unavailable"), attempt.brief()
        assert attempt.content_type.startswith("application/problem+json"), attempt.brief()
        assert attempt.retry_after is not None and attempt.retry_after.isdigit(), attempt.brief()


def test_the_server_accepts_bids_again_without_being_restarted(restart):
    assert restart.server_running_after, restart.explain()
    assert len(restart.after_recovery()) >= BIDS_AFTER, restart.explain()
    assert restart.readiness_after == 200, restart.explain()


def test_an_auction_due_after_the_restart_is_closed_by_the_server(restart):
    assert restart.closing_status in ENDED_STATUSES, restart.explain()


def test_a_connected_watcher_sees_every_acknowledged_bid_live(restart):
    watcher = restart.watcher_before
    assert watcher.connections == 1 and not watcher.ended, watcher.brief()
    # All after its snapshot, in order, none missing, no resync needed.
    assert len(watcher.snapshots) == 1, watcher.brief()
    first_seq = watcher.snapshots[0][1]
    acknowledged_after = [a.body["seq"] for a in restart.acknowledged if a.body["seq"] > first_seq]
    assert watcher.bid_events == acknowledged_after, f"{watcher.brief()}\n{restart.explain()}"
    assert watcher.price_minor == restart.acknowledged[-1].body["price_minor"], watcher.brief()


def test_a_page_opened_during_the_outage_gets_the_current_price_once_the_database_is_back(
    restart,
):
    watcher = restart.watcher_during
    # Refused (today: the handshake gets HTTP 500) or paused while the database is down,
    # never for long after it is back.
    assert all(when <= restart.up_at + ANSWER_SECONDS for when, _ in watcher.refused), (
        f"still refused long after the database was back: {watcher.brief()}"
    )
    assert watcher.snapshots, watcher.brief()
    last = restart.acknowledged[-1].body
    assert (watcher.seq, watcher.price_minor) == (last["seq"], last["price_minor"]), (
        f"{watcher.brief()}\n{restart.explain()}"
    )
