"""Fixtures for the billing tests: a real localstripe process for the session, the gateway's
settings pointed at it for each test, and a loopback receiver for its webhooks."""

import queue
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from billing import payments
from billing.localstripe import LocalStripe, localstripe_webhook_register
from tests.conftest import WEBHOOK_SECRET

TEST_WEBHOOK_NAME = "billing-tests"


@pytest.fixture(autouse=True)
def _billing_on_localstripe(stripe_on_localstripe) -> LocalStripe:
    """Every billing test talks to the session's localstripe (tests/conftest.py)."""
    return stripe_on_localstripe


class _Committed:
    """The payment services, each call's on-commit effects (e-mails, notices, ratings) run
    as after its commit."""

    def __init__(self, capture):
        self.capture = capture

    def __getattr__(self, name):
        service = getattr(payments, name)

        def call(**kwargs):
            with self.capture(execute=True):
                return service(**kwargs)

        return call


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    return _Committed(django_capture_on_commit_callbacks)


@dataclass
class ReceivedWebhook:
    headers: dict[str, str]
    body: bytes


@dataclass
class WebhookReceiver:
    url: str = ""
    received: queue.Queue = field(default_factory=queue.Queue)

    def next_of_type(self, event_type: str, *, seconds: float = 15) -> ReceivedWebhook:
        """The next webhook received whose event has `event_type` (localstripe sends each
        event about a second after it happened)."""
        while True:
            try:
                webhook = self.received.get(timeout=seconds)
            except queue.Empty:
                pytest.fail(f"No {event_type} webhook within {seconds} s")
            if f'"type": "{event_type}"'.encode() in webhook.body:
                return webhook


@pytest.fixture
def webhook_receiver(stripe_on_localstripe):
    """An HTTP receiver on loopback, registered with localstripe as its webhook endpoint
    (signed with WEBHOOK_SECRET) for the test, silenced afterwards."""
    receiver = WebhookReceiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            receiver.received.put(ReceivedWebhook(headers=dict(self.headers), body=body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/stripe/webhook/"
    localstripe_webhook_register(
        url_base=stripe_on_localstripe.url,
        endpoint_url=receiver.url,
        secret=WEBHOOK_SECRET,
        name=TEST_WEBHOOK_NAME,
    )
    yield receiver
    # localstripe cannot forget an endpoint: an empty list of event types silences it
    localstripe_webhook_register(
        url_base=stripe_on_localstripe.url,
        endpoint_url=receiver.url,
        secret=WEBHOOK_SECRET,
        name=TEST_WEBHOOK_NAME,
        events=[],
    )
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)
