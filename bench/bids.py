"""Live bidding benchmark: bids over websockets against real servers on PostgreSQL + Redis.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/0 \\
        .venv/bin/python bench/bids.py [--quick] [--mode both|throughput|fanout] [--servers 2]

It creates a database of its own on the DATABASE_URL's server (sx_bench_<pid>, dropped at the
end), migrates it, seeds a verified provider, its auctions and buyer organizations through the
project's services, and starts `manage.py serve` (daphne) processes and one `manage.py worker`
against it. Live events go through channels-redis under a channel prefix of its own, so it
disturbs nothing else on a shared Redis; tasks use the database backend (the benchmark
enqueues none; the worker is there for its periodic jobs, as in production).

Throughput mode: 32 signed-in bidders, each on its own websocket, bid on one auction as soon as
their last bid is answered (a leader waits until it is outbid), twice, each time on an auction
of its own. "rising": a bid's amount grows with the time it is sent, so bids reach the
auction's lock about in the order of their amounts and most are accepted; this gives the
headline `accepted_bids_per_s`. "racing": each bids the minimum next bid it last heard of (from
the events or from its rejection), so all race for the same amount and one wins each round;
`racing_*` shows what the exchange answers when nearly every bid is rejected as too low.
Baseline, in the same run and on the same PostgreSQL database: as many clients (psycopg, one
connection each) running `UPDATE ... SET n = n + 1` on one row, each in its own transaction,
for as long. Both serialize on one row lock.

Fan-out mode: 200 anonymous watchers on one auction while bidders offer 20 bids/s (each bid
clearly above the last, so it is accepted whatever the interleaving). Latency is from sending a
bid to its `bid.placed` event reaching every watcher; every watcher's events are checked by seq
for lost, duplicated and out-of-order ones.

Every figure is printed; the last line is one JSON object with all of them. Not a test: it
asserts nothing.
"""

import argparse
import asyncio
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

BASE_DIR = Path(__file__).resolve().parent.parent
PROCESS_START_SECONDS = 60
REPLY_TIMEOUT_SECONDS = 15
# How long fan-out waits, after the last bid is answered, for its event to reach every watcher.
DRAIN_SECONDS = 15
# Fan-out bids rise by this much each: more than twice the largest default increment, so a bid
# is above the minimum even if the bid before it is still on its way.
FANOUT_STEP_MINOR = 20_000


def _refuse(message: str) -> None:
    print(f"bench/bids.py: {message}", file=sys.stderr)
    sys.exit(2)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("both", "throughput", "fanout"), default="both")
    parser.add_argument("--quick", action="store_true", help="short runs (under a minute)")
    parser.add_argument("--servers", type=int, default=2, help="daphne server processes")
    parser.add_argument("--bidders", type=int, default=32, help="throughput mode bidders")
    parser.add_argument("--watchers", type=int, default=200, help="fan-out mode watchers")
    parser.add_argument("--rate", type=float, default=20.0, help="fan-out bids offered per s")
    parser.add_argument("--seconds", type=float, help="measured seconds of each mode")
    parser.add_argument(
        "--settings",
        default="marketplace.settings",
        help="settings module of the servers and the worker (to measure another configuration)",
    )
    parser.add_argument("--keep-database", action="store_true", help="do not drop it at the end")
    arguments = parser.parse_args()
    if arguments.seconds is None:
        arguments.seconds = 5.0 if arguments.quick else 20.0
    arguments.warmup = 1.0 if arguments.quick else 3.0
    return arguments


# --- The database, the servers and the worker ---------------------------------------------------


def _postgres_url_checked() -> tuple[str, str]:
    database_url = os.environ.get("DATABASE_URL", "")
    redis_url = os.environ.get("REDIS_URL", "")
    if urlsplit(database_url).scheme not in ("postgres", "postgresql", "pgsql") or not redis_url:
        _refuse(
            "measures the production setup and needs PostgreSQL and Redis: set "
            "DATABASE_URL=postgres://USER@HOST:PORT/DB (any database on the server; the benchmark "
            "creates and drops its own) and REDIS_URL=redis://HOST:PORT/N"
        )
    try:
        import websockets  # noqa: F401
    except ImportError:
        _refuse("needs the websockets client: .venv/bin/pip install -r requirements-dev.txt")
    return database_url, redis_url


def _libpq_dsn(url: str) -> str:
    """A URL psycopg accepts (it knows postgresql:// and postgres://, not pgsql://)."""
    return urlunsplit(urlsplit(url)._replace(scheme="postgresql"))


def _database_create(server_url: str, name: str) -> str:
    import psycopg

    with psycopg.connect(_libpq_dsn(server_url), autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))


def _database_drop(server_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(_libpq_dsn(server_url), autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _redis_keys_delete(redis_url: str, *, prefix: str) -> None:
    """Remove what the channel layer left under the run's own prefix (groups of closed sockets
    would otherwise linger until they expire)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        for key in client.scan_iter(match=f"{prefix}*"):
            client.delete(key)
    finally:
        client.close()


@dataclass
class Processes:
    environment: dict
    log_dir: Path
    started: list[subprocess.Popen] = field(default_factory=list)

    def start(self, name: str, *args: str) -> tuple[subprocess.Popen, Path]:
        log = self.log_dir / f"{name}.log"
        with log.open("w") as output:
            process = subprocess.Popen(
                [sys.executable, "manage.py", *args],
                cwd=BASE_DIR,
                env=self.environment,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopped with all it started
            )
        self.started.append(process)
        return process, log

    def wait_for(self, process: subprocess.Popen, log: Path, pattern: str) -> re.Match:
        deadline = time.monotonic() + PROCESS_START_SECONDS
        while time.monotonic() < deadline:
            match = re.search(pattern, log.read_text())
            if match:
                return match
            if process.poll() is not None:
                raise RuntimeError(
                    f"{log.name}: exited with {process.returncode}:\n{log.read_text()}"
                )
            time.sleep(0.1)
        raise RuntimeError(
            f"{log.name}: not ready in {PROCESS_START_SECONDS} s:\n{log.read_text()}"
        )

    def stop_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.started:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _django_setup(environment: dict) -> None:
    os.environ.update(environment)
    sys.path.insert(0, str(BASE_DIR))
    import django

    django.setup()


# --- Seed data, through the project's services -------------------------------------------------


@dataclass
class Seeded:
    auction_ids: dict[str, int]  # by use: "rising", "racing", "fanout"
    bidder_cookies: list[str]  # "sessionid=..." of one member of each buyer organization


def _seed(*, buyers: int) -> Seeded:
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore
    from django.utils import timezone

    from auctions.services import auction_create, block_create
    from billing.models import BillingAccount, Card
    from marketplace.models import OrganizationKind, User
    from marketplace.services import organization_create
    from providers.services import provider_register, provider_verify

    # No passwords: hashing dozens of them would take longer than the benchmark.
    staff = User.objects.create_superuser(email="staff@bench.example", password=None)
    owner = User.objects.create_user(email="noc@bench.example", password=None)
    provider = provider_register(
        user=owner,
        organization=None,
        organization_name="Bench Fiber",
        legal_name="Bench Fiber Ltd",
        contact_name="Network operations",
        contact_email="noc@bench.example",
    )
    provider = provider_verify(provider=provider, staff_user=staff)
    now = timezone.now()
    auction_ids = {}
    for hours, use in enumerate(("rising", "racing", "fanout"), start=1):
        block = block_create(
            provider=provider,
            starts_at=now + timedelta(days=2, hours=hours),
            ends_at=now + timedelta(days=2, hours=hours + 1),
            max_rate_mbps=1000,
            min_rate_mbps=100,
        )
        # Closes far beyond the run: no soft-close extension interferes.
        auction = auction_create(
            block=block,
            opens_at=now - timedelta(seconds=1),
            closes_at=now + timedelta(hours=3),
            start_price_minor=1000,
        )
        auction_ids[use] = auction.pk
    cookies = []
    for number in range(buyers):
        user = User.objects.create_user(email=f"buyer{number}@bench.example", password=None)
        organization = organization_create(
            user=user, name=f"Bench Buyer {number}", kind=OrganizationKind.RECIPIENT
        )
        # bidders need a card on file; the bench charges nothing, so no Stripe is involved
        account = BillingAccount.objects.create(
            organization=organization, stripe_customer_id=f"cus_bench_{number}"
        )
        Card.objects.create(
            account=account,
            payment_method_id=f"pm_bench_{number}",
            brand="visa",
            last4="4242",
            exp_month=12,
            exp_year=2030,
            is_default=True,
        )
        session = SessionStore()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.create()
        cookies.append(f"{settings.SESSION_COOKIE_NAME}={session.session_key}")
    return Seeded(auction_ids, cookies)


# --- Websocket clients --------------------------------------------------------------------------


class Client:
    """One websocket to an auction: reads every message in a task of its own, stamped with the
    time it was read."""

    def __init__(self, server: str, auction_id: int, cookie: str | None):
        self.url = f"{server.replace('http://', 'ws://')}ws/auctions/{auction_id}/"
        self.origin = server.rstrip("/")
        self.cookie = cookie
        self.socket = None
        self.snapshot: dict | None = None
        self.snapshot_received = asyncio.Event()
        self.reader: asyncio.Task | None = None

    async def open(self) -> None:
        from websockets.asyncio.client import connect

        self.socket = await connect(
            self.url,
            origin=self.origin,
            additional_headers={"Cookie": self.cookie} if self.cookie else None,
            compression=None,
            proxy=None,
            open_timeout=30,
            ping_interval=None,
            max_queue=4096,
        )
        self.reader = asyncio.create_task(self._read())
        await asyncio.wait_for(self.snapshot_received.wait(), timeout=30)

    async def _read(self) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            async for raw in self.socket:
                received_at = time.monotonic()
                message = json.loads(raw)
                if message.get("type") == "snapshot" and self.snapshot is None:
                    self.snapshot = message
                    self.snapshot_received.set()
                self.on_message(message, received_at)
        except ConnectionClosed:
            pass

    def on_message(self, message: dict, received_at: float) -> None:
        pass

    async def send(self, message: dict) -> None:
        await self.socket.send(json.dumps(message))

    async def close(self) -> None:
        if self.socket is not None:
            await self.socket.close()
        if self.reader is not None:
            await self.reader


class Bidder(Client):
    """A signed-in buyer that follows the price from the events and its own answers."""

    def __init__(self, server: str, auction_id: int, cookie: str, name: str):
        super().__init__(server, auction_id, cookie)
        self.name = name
        self.seq = 0
        self.min_next = 0
        self.leader = None
        self.you = None
        self.changed = asyncio.Event()
        self.pending: dict[str, asyncio.Future] = {}
        self.answers: Counter = Counter()

    def on_message(self, message: dict, received_at: float) -> None:
        kind = message.get("type")
        if kind == "snapshot":
            self.seq, self.min_next = message["seq"], message["min_next_minor"]
            self.leader, self.you = message["leader"], message.get("you")
        elif kind == "bid.placed" and message["seq"] > self.seq:
            self.seq, self.min_next = message["seq"], message["min_next_minor"]
            self.leader = message["leader"]
            self.changed.set()
        elif kind in ("bid.accepted", "error"):
            self.answers[message.get("code", kind)] += 1
            future = self.pending.pop(message.get("client_bid_id") or "", None)
            if future is not None and not future.done():
                future.set_result((message, received_at))


class Watcher(Client):
    """An anonymous watcher that keeps every event's seq and when it came."""

    def __init__(self, server: str, auction_id: int):
        super().__init__(server, auction_id, cookie=None)
        self.events: list[tuple[int, float]] = []
        self.bid_seen_at: dict[int, float] = {}  # amount -> first time its bid.placed came

    def on_message(self, message: dict, received_at: float) -> None:
        if "seq" not in message or message.get("type") == "snapshot":
            return
        self.events.append((message["seq"], received_at))
        if message.get("type") == "bid.placed":
            self.bid_seen_at.setdefault(message["amount_minor"], received_at)


async def _open_all(clients: list[Client], *, at_once: int = 25) -> None:
    gate = asyncio.Semaphore(at_once)

    async def open_one(client):
        async with gate:
            await client.open()

    await asyncio.gather(*(open_one(client) for client in clients))


async def _close_all(clients: list[Client]) -> None:
    await asyncio.gather(*(client.close() for client in clients), return_exceptions=True)


# --- Throughput mode ----------------------------------------------------------------------------

# "rising" bids (see the module docstring) sent a millisecond apart differ by 100,000 minor
# units, far more than the largest default increment.
RISING_MINOR_PER_MICROSECOND = 100


def _amount_rising(epoch: float) -> int:
    return 1000 + int((time.monotonic() - epoch) * 1_000_000) * RISING_MINOR_PER_MICROSECOND


async def _bidder_run(
    bidder: Bidder, *, strategy: str, epoch: float, measure_from: float, until: float, tally
):
    """Bid as soon as the last bid is answered; a leader waits until it is outbid."""
    loop = asyncio.get_running_loop()
    number = 0
    while time.monotonic() < until:
        if bidder.leader is not None and bidder.leader == bidder.you:
            bidder.changed.clear()
            try:
                await asyncio.wait_for(bidder.changed.wait(), timeout=until - time.monotonic())
            except TimeoutError:
                break
            continue
        number += 1
        client_bid_id = f"{bidder.name}-{number}"
        answer = loop.create_future()
        bidder.pending[client_bid_id] = answer
        amount = _amount_rising(epoch) if strategy == "rising" else bidder.min_next
        await bidder.send(
            {
                "type": "bid",
                "amount_minor": max(amount, bidder.min_next),
                "max_amount_minor": None,
                "client_bid_id": client_bid_id,
            }
        )
        message, received_at = await asyncio.wait_for(answer, timeout=REPLY_TIMEOUT_SECONDS)
        outcome = "accepted" if message["type"] == "bid.accepted" else message["code"]
        if measure_from <= received_at <= until:
            tally[outcome] += 1
        if outcome == "accepted":
            if message["leading"]:
                bidder.leader = bidder.you
        elif outcome == "bid_too_low":
            bidder.min_next = max(bidder.min_next, message["minimum_minor"])
        elif outcome == "already_leading":
            bidder.leader = bidder.you
        elif outcome == "rate_limited":
            await asyncio.sleep(0.05)


async def _bidders_measure(servers, auction_id: int, cookies: list[str], arguments, strategy):
    bidders = [
        Bidder(servers[n % len(servers)], auction_id, cookie, f"{strategy}{n}")
        for n, cookie in enumerate(cookies)
    ]
    await _open_all(bidders)
    start = time.monotonic()
    measure_from, until = start + arguments.warmup, start + arguments.warmup + arguments.seconds
    tally = Counter()
    await asyncio.gather(
        *(
            _bidder_run(
                bidder,
                strategy=strategy,
                epoch=start,
                measure_from=measure_from,
                until=until,
                tally=tally,
            )
            for bidder in bidders
        )
    )
    await _close_all(bidders)
    return tally


async def _baseline_measure(database_url: str, *, clients: int, warmup: float, seconds: float):
    """Single-row UPDATE + COMMIT from `clients` connections, counted over `seconds`."""
    import psycopg

    dsn = _libpq_dsn(database_url)
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as setup:
        await setup.execute("CREATE TABLE bench_counter (id integer PRIMARY KEY, n bigint)")
        await setup.execute("INSERT INTO bench_counter VALUES (1, 0)")
    connections = [
        await psycopg.AsyncConnection.connect(dsn, autocommit=True) for _ in range(clients)
    ]
    start = time.monotonic()
    measure_from, until = start + warmup, start + warmup + seconds
    counted = [0]

    async def client(connection):
        while (now := time.monotonic()) < until:
            async with connection.transaction():
                await connection.execute("UPDATE bench_counter SET n = n + 1 WHERE id = 1")
            if time.monotonic() >= measure_from and now < until:
                counted[0] += 1

    try:
        await asyncio.gather(*(client(connection) for connection in connections))
    finally:
        for connection in connections:
            await connection.close()
    return counted[0] / seconds


def _throughput_mode(servers, seeded: Seeded, arguments, database_url: str) -> dict:
    from auctions.models import Bid

    baseline = asyncio.run(
        _baseline_measure(
            database_url,
            clients=arguments.bidders,
            warmup=arguments.warmup,
            seconds=arguments.seconds,
        )
    )
    cookies = seeded.bidder_cookies[: arguments.bidders]
    result = {"bidders": arguments.bidders, "baseline_updates_per_s": round(baseline, 1)}
    for strategy in ("rising", "racing"):
        auction_id = seeded.auction_ids[strategy]
        tally = asyncio.run(_bidders_measure(servers, auction_id, cookies, arguments, strategy))
        accepted, answered = (
            tally["accepted"] / arguments.seconds,
            tally.total() / arguments.seconds,
        )
        prefix = "" if strategy == "rising" else "racing_"
        result.update(
            {
                f"{prefix}accepted_bids_per_s": round(accepted, 1),
                f"{prefix}answered_bids_per_s": round(answered, 1),
                f"{prefix}ratio": round(accepted / baseline, 4) if baseline else None,
                f"{prefix}answered_ratio": round(answered / baseline, 4) if baseline else None,
                f"{prefix}answers": dict(tally),
                f"{prefix}bids_stored": Bid.objects.filter(auction_id=auction_id).count(),
            }
        )
        print(
            f"throughput ({strategy} bids): {arguments.bidders} bidders over "
            f"{arguments.seconds:.0f} s: {accepted:.1f} accepted bids/s, {answered:.1f} answered "
            f"bids/s {dict(tally)}",
            flush=True,
        )
    print(
        f"baseline: single-row UPDATE+COMMIT from {arguments.bidders} connections: "
        f"{baseline:.1f}/s; ratio accepted (rising) / baseline {result['ratio']}",
        flush=True,
    )
    return result


# --- Fan-out mode -------------------------------------------------------------------------------


def _percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    # Nearest rank: the smallest value with at least `fraction` of them at or below it.
    rank = max(0, math.ceil(fraction * len(ordered)) - 1)
    return ordered[rank]


async def _fanout_measure(servers, seeded: Seeded, arguments) -> dict:
    auction_id = seeded.auction_ids["fanout"]
    watchers = [Watcher(servers[n % len(servers)], auction_id) for n in range(arguments.watchers)]
    bidders = [
        Bidder(servers[n % len(servers)], auction_id, cookie, f"f{n}")
        for n, cookie in enumerate(seeded.bidder_cookies[:4])
    ]
    await _open_all(watchers + bidders)
    loop = asyncio.get_running_loop()
    sent_at: dict[int, float] = {}  # amount -> when its bid left
    answers = []
    start = time.monotonic() + 0.5
    count = int(arguments.seconds * arguments.rate)
    for number in range(count):
        delay = start + number / arguments.rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        bidder = bidders[number % len(bidders)]
        amount = 1000 + number * FANOUT_STEP_MINOR
        client_bid_id = f"{bidder.name}-{number}"
        answer = loop.create_future()
        bidder.pending[client_bid_id] = answer
        answers.append(answer)
        sent_at[amount] = time.monotonic()
        await bidder.send({"type": "bid", "amount_minor": amount, "client_bid_id": client_bid_id})
    offered_for = time.monotonic() - start
    await asyncio.wait(answers, timeout=REPLY_TIMEOUT_SECONDS)
    # Every event still on its way is waited for (a late one counts in the latency, not as
    # lost); what has not come after DRAIN_SECONDS is lost.
    final_seq = await asyncio.to_thread(_auction_seq_read, auction_id)
    deadline = time.monotonic() + DRAIN_SECONDS
    while time.monotonic() < deadline and not all(
        watcher.events and max(seq for seq, _ in watcher.events) >= final_seq
        for watcher in watchers
    ):
        await asyncio.sleep(0.1)
    await _close_all(watchers + bidders)
    outcomes = Counter(
        ("accepted" if a.result()[0]["type"] == "bid.accepted" else a.result()[0]["code"])
        if a.done()
        else "unanswered"
        for a in answers
    )
    return {
        "watchers": watchers,
        "final_seq": final_seq,
        "sent_at": sent_at,
        "outcomes": outcomes,
        "offered_per_s": count / offered_for if offered_for else None,
    }


def _auction_seq_read(auction_id: int) -> int:
    """The auction's last event seq (in a thread of its own: Django's ORM is synchronous)."""
    from django.db import connections

    from auctions.models import Auction

    try:
        return Auction.objects.get(pk=auction_id).seq
    finally:
        connections.close_all()


def _fanout_mode(servers, seeded: Seeded, arguments) -> dict:
    measured = asyncio.run(_fanout_measure(servers, seeded, arguments))
    final_seq = measured["final_seq"]
    watchers, sent_at = measured["watchers"], measured["sent_at"]
    lost = duplicated = out_of_order = 0
    for watcher in watchers:
        seqs = [seq for seq, _ in watcher.events]
        expected = set(range(watcher.snapshot["seq"] + 1, final_seq + 1))
        lost += len(expected - set(seqs))
        duplicated += len(seqs) - len(set(seqs))
        highest = watcher.snapshot["seq"]
        for seq in seqs:
            if seq < highest:
                out_of_order += 1
            highest = max(highest, seq)
    every_watcher, each_delivery = [], []
    for amount, left_at in sent_at.items():
        seen = [w.bid_seen_at[amount] for w in watchers if amount in w.bid_seen_at]
        each_delivery.extend((at - left_at) * 1000 for at in seen)
        if seen and len(seen) == len(watchers):
            every_watcher.append((max(seen) - left_at) * 1000)

    def rounded(value):
        return round(value, 1) if value is not None else None

    result = {
        "watchers": len(watchers),
        "offered_bids_per_s": rounded(measured["offered_per_s"]),
        "bid_outcomes": dict(measured["outcomes"]),
        "bids_seen_by_every_watcher": len(every_watcher),
        "p50_ms": rounded(_percentile(every_watcher, 0.50)),
        "p99_ms": rounded(_percentile(every_watcher, 0.99)),
        "max_ms": rounded(max(every_watcher, default=None)),
        "delivery_p50_ms": rounded(_percentile(each_delivery, 0.50)),
        "delivery_p99_ms": rounded(_percentile(each_delivery, 0.99)),
        "lost": lost,
        "duplicated": duplicated,
        "out_of_order": out_of_order,
    }
    print(
        f"fan-out: {result['watchers']} watchers, {result['offered_bids_per_s']} bids/s offered "
        f"{result['bid_outcomes']}: bid sent -> seen by every watcher p50 {result['p50_ms']} ms, "
        f"p99 {result['p99_ms']} ms, max {result['max_ms']} ms (each delivery p50 "
        f"{result['delivery_p50_ms']} ms, p99 {result['delivery_p99_ms']} ms); lost {lost}, "
        f"duplicated {duplicated}, out of order {out_of_order}",
        flush=True,
    )
    return result


# --- Main ---------------------------------------------------------------------------------------


def main() -> None:
    arguments = _arguments()
    server_url, redis_url = _postgres_url_checked()
    name = f"sx_bench_{os.getpid()}"
    log_dir = BASE_DIR / "var" / name
    log_dir.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    database_url = _database_create(server_url, name)
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": arguments.settings,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "CHANNELS_PREFIX": name,
        "TASK_BACKEND": "db",
        "EMBEDDED_WORKER": "false",
        "DEBUG": "false",
        "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING"),
        "PYTHONUNBUFFERED": "1",
        # the bench measures bidding, not refusals: every bid is still counted by the rate
        # limiter (its cost is in the figures), none is refused
        "API_THROTTLE_BIDS": "1000000/minute",
    }
    processes = Processes(environment=environment, log_dir=log_dir)
    result = {
        "mode": arguments.mode,
        "settings": arguments.settings,
        "quick": arguments.quick,
        "servers": arguments.servers,
        "measured_seconds": arguments.seconds,
        "conn_max_age": int(os.environ.get("CONN_MAX_AGE", "60")),
        "accepted_bids_per_s": None,
        "baseline_updates_per_s": None,
        "ratio": None,
        "p50_ms": None,
        "p99_ms": None,
        "watchers": None,
        "lost": None,
        "duplicated": None,
        "out_of_order": None,
    }
    try:
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"],
            cwd=BASE_DIR,
            env=environment,
            check=True,
        )
        _django_setup(environment)
        seeded = _seed(buyers=max(arguments.bidders, 4))
        from django.db import connections

        connections.close_all()
        worker, worker_log = processes.start("worker", "worker")
        servers = []
        for number in range(arguments.servers):
            process, log = processes.start(f"serve-{number}", "serve", "--port", "0")
            servers.append(processes.wait_for(process, log, r"serving at (http://\S+/)").group(1))
        processes.wait_for(worker, worker_log, r"Task worker")
        print(
            f"setup: database {name}, {len(servers)} server(s) {' '.join(servers)}, 1 worker, "
            f"in {time.monotonic() - began:.1f} s",
            flush=True,
        )
        if arguments.mode in ("both", "throughput"):
            result.update(_throughput_mode(servers, seeded, arguments, database_url))
        if arguments.mode in ("both", "fanout"):
            result.update(_fanout_mode(servers, seeded, arguments))
    except BaseException:
        print(f"bench/bids.py: failed; the processes' logs are in {log_dir}", file=sys.stderr)
        raise
    else:
        shutil.rmtree(log_dir)
    finally:
        processes.stop_all()
        if "django" in sys.modules:
            from django.db import connections

            connections.close_all()
        if not arguments.keep_database:
            _database_drop(server_url, name)
        _redis_keys_delete(redis_url, prefix=name)
    result["total_seconds"] = round(time.monotonic() - began, 1)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
