"""Fault: Stripe (localstripe) stops answering while statements are charged (issue 8). Charges
made meanwhile are recorded as sent with an unknown outcome (a retryable error, the statement
unpaid, its page saying so); once Stripe answers again, the periodic charge job
(billing.tasks.charges_due -> charges_retry_due) reads each back and charges it exactly once:
one succeeded PaymentIntent per statement, never two.

Each test runs a localstripe of its own (never the session's, which other tests use), keeping
its store in a file, as real Stripe keeps its customers, cards and payments through an outage:
a localstripe restarted empty would have forgotten the cards (every retry refused) and the
payments it made (a read-back would find none), which no real outage does. Two outages:
- localstripe stopped and started again on the same port: every call is refused meanwhile,
  nothing reaches Stripe;
- the answer lost: a proxy between the exchange and localstripe passes the charge on, lets
  localstripe make the payment, then cuts the connection before the answer comes back (a
  network failure, or a worker killed, mid-call); then refuses connections for a while. The
  charge must be read back as paid, not sent again.

The charge job is run in this process with `now` moved past the retry delay, as the worker's
periodic run would do once that time has come."""

import contextlib
import re
import socket
import threading
from datetime import UTC, date, datetime, timedelta

import pytest
from django.test import Client
from django.urls import reverse

from billing.localstripe import localstripe_start, localstripe_stop
from billing.models import Charge, ChargeStatus, Statement, StatementStatus
from billing.payments import PROCESSING_SECONDS, STRIPE_UNREACHABLE, charges_retry_due
from tests.conftest import WEBHOOK_SECRET
from tests.factories import PASSWORD
from tests.support.charges import (
    payment_intents_of,
    recipient_with_card,
    statements_due,
)

pytestmark = pytest.mark.django_db

PERIOD = (date(2026, 10, 1), date(2026, 11, 1))
WON_AT = datetime(2026, 10, 12, 9, tzinfo=UTC)
PRICES = [10_000, 12_345, 20_202]


@pytest.fixture
def stripe_of_the_test(tmp_path, settings):
    """localstripe of this test on a free port, its store in a file; the gateway pointed at it.
    Yields a controller: `stop()`, `start()` (same port, same store), `url`."""

    class Controller:
        def __init__(self):
            self.store = tmp_path / "localstripe-store.pickle"
            self.starts = 0
            self.server = None
            self.port = None

        def start(self):
            self.starts += 1
            self.server = localstripe_start(
                port=self.port,
                store_path=self.store,
                log_path=tmp_path / f"localstripe-{self.starts}.log",
            )
            self.port = int(self.server.url.rsplit(":", 1)[1])
            self.url = self.server.url

        def stop(self):
            localstripe_stop(self.server)

    controller = Controller()
    controller.start()
    settings.STRIPE_SECRET_KEY = ""
    settings.STRIPE_PUBLISHABLE_KEY = ""
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.LOCALSTRIPE_URL = controller.url
    yield controller
    controller.stop()


class AnswerLosingProxy:
    """A TCP proxy on loopback in front of `upstream` (host, port). `mode`:
    "pass" relays both ways; "lose_answers" relays requests, waits for the answer, and closes
    the client's connection instead of relaying it (the call was made, its answer lost);
    "refuse" closes the listening socket (connection refused) until `reopen()`."""

    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self.mode = "pass"
        self.requests_answered_but_lost = 0
        self.port = None
        self.listener = None
        self.threads = []
        self.lock = threading.Lock()
        self.reopen()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reopen(self):
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port or 0))
        listener.listen(16)
        self.port = listener.getsockname()[1]
        self.listener = listener
        thread = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        thread.start()
        self.threads.append(thread)

    def refuse(self):
        self.mode = "refuse"
        self._stop_listening()  # new connections are refused

    def close(self):
        self._stop_listening()
        for thread in self.threads:
            thread.join(timeout=5)

    def _stop_listening(self):
        if self.listener is None:
            return
        # shutdown, not only close: it wakes the thread blocked in accept() and stops listening
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self.listener = None

    def _accept(self, listener):
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed
            thread = threading.Thread(target=self._serve, args=(client,), daemon=True)
            thread.start()

    def _serve(self, client):
        try:
            upstream = socket.create_connection(self.upstream, timeout=10)
        except OSError:
            client.close()
            return
        client.settimeout(30)
        upstream.settimeout(30)
        lose = self.mode == "lose_answers"

        def downstream():
            try:
                while data := upstream.recv(65536):
                    if lose:
                        with self.lock:
                            self.requests_answered_but_lost += 1
                        break  # the answer came: it never reaches the client
                    client.sendall(data)
            except OSError:
                pass
            finally:
                for end in (client, upstream):
                    with contextlib.suppress(OSError):
                        end.shutdown(socket.SHUT_RDWR)
                    end.close()

        answer = threading.Thread(target=downstream, daemon=True)
        answer.start()
        try:
            while data := client.recv(65536):
                upstream.sendall(data)
        except OSError:
            pass
        answer.join(timeout=30)


def _statement_page(statement: Statement) -> tuple[str, str]:
    """What a member of the statement's organization reads on its page: the statement's status
    and the payment's."""
    client = Client()
    member = statement.organization.memberships.select_related("user").first().user
    assert client.login(email=member.email, password=PASSWORD)
    response = client.get(reverse("statement_detail", args=[statement.number]))
    assert response.status_code == 200
    page = response.content.decode()
    status = re.search(r'data-testid="statement-status">([^<]*)<', page)
    payment = re.search(r'data-testid="charge">(.*?)</p>', page, re.S)
    assert status and payment, page
    return status.group(1).strip(), re.sub(r"<[^>]+>", "", payment.group(1)).strip()


def _assert_charged_once(statement: Statement) -> None:
    statement.refresh_from_db()
    charge = Charge.objects.get(statement=statement)
    intents = payment_intents_of(charge)
    # one PaymentIntent, paid, for the amount due: the card was charged once
    assert [(i.status, i.amount_minor) for i in intents] == [
        ("succeeded", statement.amount_due_minor)
    ], statement.number
    assert (charge.status, charge.payment_intent_id, charge.attempts) == (
        ChargeStatus.SUCCEEDED,
        intents[0].id,
        1,
    ), statement.number
    assert (charge.last_error_code, charge.last_error) == ("", "")
    assert statement.status == StatementStatus.PAID, statement.number


def test_statements_charged_while_stripe_is_stopped_are_charged_once_when_it_is_back(
    stripe_of_the_test,
):
    recipients = [
        recipient_with_card(stripe_of_the_test.url, f"Recipient {n}") for n in range(len(PRICES))
    ]
    statements = statements_due(recipients, PRICES, period=PERIOD, won_at=WON_AT)
    now = datetime.now(UTC)

    stripe_of_the_test.stop()

    # The periodic job charges the statements: every call is refused.
    charges_retry_due(now=now)
    for statement in statements:
        statement.refresh_from_db()
        charge = Charge.objects.get(statement=statement)
        assert charge.status == ChargeStatus.PROCESSING, statement.number
        assert charge.last_error_code == STRIPE_UNREACHABLE
        assert "Stripe unreachable" in charge.last_error
        assert charge.next_attempt_at == now + timedelta(seconds=PROCESSING_SECONDS)
        assert statement.status == StatementStatus.ISSUED  # unpaid
        assert _statement_page(statement) == (
            "Issued",
            "Payment: Sent, outcome not known yet — our card processor does not answer right "
            "now; the exchange tries again by itself and never charges twice.",
        )
    # Its next runs while Stripe is still down change nothing, and mark nothing paid.
    later = now + timedelta(seconds=PROCESSING_SECONDS + 1)
    charges_retry_due(now=later)
    assert set(Charge.objects.values_list("status", flat=True)) == {ChargeStatus.PROCESSING}
    assert not Statement.objects.filter(status=StatementStatus.PAID).exists()

    stripe_of_the_test.start()  # same port, same store: Stripe is back

    # Read back (Stripe never saw the attempts), then sent again with the same key.
    assert charges_retry_due(now=later + timedelta(seconds=60)) == len(statements)
    # and the runs after that leave them alone
    charges_retry_due(now=later + timedelta(days=1))
    for statement in statements:
        _assert_charged_once(statement)
        assert _statement_page(statement) == ("Paid", "Payment: Paid")


def test_a_charge_whose_answer_was_lost_is_read_back_as_paid_not_charged_again(
    stripe_of_the_test, settings
):
    (recipient,) = [recipient_with_card(stripe_of_the_test.url, "Acme Analytics")]
    (statement,) = statements_due([recipient], PRICES[:1], period=PERIOD, won_at=WON_AT)
    proxy = AnswerLosingProxy(("127.0.0.1", stripe_of_the_test.port))
    settings.LOCALSTRIPE_URL = proxy.url
    try:
        now = datetime.now(UTC)
        proxy.mode = "lose_answers"
        charges_retry_due(now=now)

        # Stripe charged the card; the exchange never heard
        assert proxy.requests_answered_but_lost >= 1
        charge = Charge.objects.get(statement=statement)
        assert (charge.status, charge.last_error_code) == (
            ChargeStatus.PROCESSING,
            STRIPE_UNREACHABLE,
        )
        settings.LOCALSTRIPE_URL = stripe_of_the_test.url
        assert [i.status for i in payment_intents_of(charge)] == ["succeeded"]
        settings.LOCALSTRIPE_URL = proxy.url
        statement.refresh_from_db()
        assert statement.status == StatementStatus.ISSUED

        # Then Stripe is unreachable: the retries due meanwhile cannot read it back.
        proxy.refuse()
        later = now + timedelta(seconds=PROCESSING_SECONDS + 1)
        charges_retry_due(now=later)
        charge.refresh_from_db()
        assert charge.status == ChargeStatus.PROCESSING

        # Reachable again: the retry reads the payment back and records it; no second charge.
        proxy.mode = "pass"
        proxy.reopen()
        charges_retry_due(now=later + timedelta(seconds=60))
        charges_retry_due(now=later + timedelta(days=1))
    finally:
        proxy.close()
    settings.LOCALSTRIPE_URL = stripe_of_the_test.url
    _assert_charged_once(statement)
