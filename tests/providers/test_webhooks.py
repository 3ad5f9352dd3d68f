"""Outbound webhooks to providers (SPEC §5.1), sent to a real HTTP receiver on loopback.

Attempts are driven by calling the service with the time it acts at (`now`), never by waiting,
and the receiver answers before the service returns, so nothing here depends on timing."""

import json
import logging
import socket
import threading
from dataclasses import dataclass
from datetime import timedelta
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connections
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from marketplace.models import Role
from providers import services
from providers.models import WebhookAttempt, WebhookDelivery, WebhookDeliveryStatus, WebhookEndpoint
from providers.selectors import webhook_deliveries_of
from providers.services import (
    WebhookAttemptOutcome,
    webhook_broadcast,
    webhook_deliveries_enqueue_due,
    webhook_delivery_attempt,
    webhook_endpoint_create,
    webhook_endpoint_deactivate,
    webhook_endpoint_secret_rotate,
)
from providers.tasks import webhook_deliver
from providers.webhooks import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    webhook_signature,
    webhook_signature_verify,
)
from tests.factories import (
    VerifiedProviderFactory,
    WebhookDeliveryFactory,
    WebhookEndpointFactory,
    member_of,
)

EVENT = "service_request.created"


@pytest.fixture(autouse=True)
def _short_webhook_settings(settings):
    settings.WEBHOOK_TIMEOUT_SECONDS = 5
    settings.WEBHOOK_RETRY_BASE_SECONDS = 0.5
    settings.WEBHOOK_MAX_ATTEMPTS = 6


@pytest.fixture
def queued(monkeypatch):
    """Delivery ids the services queue a task for, instead of queueing it."""
    ids: list[int] = []
    monkeypatch.setattr(services, "_webhook_deliver_enqueue", ids.append)
    return ids


# --- a real receiver --------------------------------------------------------------------------


@dataclass
class Received:
    headers: Message
    body: bytes


class Receiver:
    """An HTTP server on 127.0.0.1 answering each POST with the next of `statuses` (then
    `default_status`). `hold` makes it wait, after recording a request, until released."""

    def __init__(self):
        self.requests: list[Received] = []
        self.statuses: list[int] = []
        self.default_status = 200
        self.hold = False
        self.request_arrived = threading.Event()
        self.release = threading.Event()
        self.url = ""

    def answer(self, *statuses: int) -> None:
        self.statuses.extend(statuses)


@pytest.fixture
def receiver():
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            state.requests.append(Received(headers=self.headers, body=body))
            state.request_arrived.set()
            if state.hold:
                state.release.wait(timeout=30)
            status = state.statuses.pop(0) if state.statuses else state.default_status
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/segment-exchange"
    yield state
    state.release.set()
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest.fixture
def closed_port_url():
    """A loopback URL nobody listens on: the port was free a moment ago and is closed."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/hooks"


def _delivery_to(url, **kwargs) -> WebhookDelivery:
    return WebhookDeliveryFactory(endpoint=WebhookEndpointFactory(url=url), **kwargs)


def _attempt_when_due(delivery) -> str:
    delivery.refresh_from_db()
    return webhook_delivery_attempt(delivery_id=delivery.pk, now=delivery.next_attempt_at)


# --- signing ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_broadcast_webhook_is_signed_with_the_endpoints_secret(receiver, queued):
    endpoint = WebhookEndpointFactory(url=receiver.url)
    with_date = {"service_request": 7, "deadline": timezone.now()}

    (delivery,) = webhook_broadcast(providers=[endpoint.provider], event=EVENT, payload=with_date)
    assert webhook_delivery_attempt(delivery_id=delivery.pk) == WebhookAttemptOutcome.DELIVERED

    (request,) = receiver.requests
    header = request.headers[SIGNATURE_HEADER]
    assert header.startswith("t=") and ",v1=" in header
    assert webhook_signature_verify(secret=endpoint.secret, header=header, body=request.body)
    assert request.headers[EVENT_HEADER] == EVENT
    assert request.headers[DELIVERY_HEADER] == str(delivery.event_id)
    assert request.headers["Content-Type"] == "application/json"
    document = json.loads(request.body)
    assert document["id"] == str(delivery.event_id)
    assert document["type"] == EVENT
    assert document["created"].endswith("Z")
    assert document["data"]["service_request"] == 7
    # Dates in the payload travel as Django's JSON encoder writes them (ISO 8601).
    assert document["data"]["deadline"] == DjangoJSONEncoder().default(with_date["deadline"])


@pytest.mark.django_db
def test_a_signature_fails_with_a_wrong_secret_a_tampered_body_or_an_old_timestamp(
    receiver, queued
):
    endpoint = WebhookEndpointFactory(url=receiver.url)
    (delivery,) = webhook_broadcast(providers=[endpoint.provider], event=EVENT, payload={"a": 1})
    webhook_delivery_attempt(delivery_id=delivery.pk)
    (request,) = receiver.requests
    header, body = request.headers[SIGNATURE_HEADER], request.body
    signed_at = int(header.split(",")[0].removeprefix("t="))

    assert webhook_signature_verify(secret=endpoint.secret, header=header, body=body)
    assert not webhook_signature_verify(secret="whsec_not-the-secret", header=header, body=body)
    tampered = body.replace(b'"a":1', b'"a":2')
    assert tampered != body
    assert not webhook_signature_verify(secret=endpoint.secret, header=header, body=tampered)
    assert not webhook_signature_verify(
        secret=endpoint.secret, header=header, body=body, now=signed_at + 301
    )
    assert webhook_signature_verify(
        secret=endpoint.secret, header=header, body=body, now=signed_at + 299
    )
    # A replay of an old capture with a fresh timestamp but the old digest is refused too.
    digest = header.split("v1=")[1]
    forged = f"t={signed_at + 1000},v1={digest}"
    assert not webhook_signature_verify(
        secret=endpoint.secret, header=forged, body=body, now=signed_at + 1000
    )


@pytest.mark.parametrize(
    "header",
    [None, "", "v1=abc", "t=123", "t=notanumber,v1=abc", "garbage", "t=1,v1=é"],
)
def test_a_malformed_signature_header_is_refused(header):
    assert not webhook_signature_verify(secret="whsec_x", header=header, body=b"{}", now=1)


def test_any_of_several_signatures_may_match_and_a_str_body_is_accepted():
    body = '{"id":"1"}'
    good = webhook_signature(secret="whsec_new", body=body.encode(), timestamp=1_000)
    other = webhook_signature(secret="whsec_old", body=body.encode(), timestamp=1_000)
    header = f"{other},v1={good.split('v1=')[1]}"
    assert webhook_signature_verify(secret="whsec_new", header=header, body=body, now=1_010)
    assert webhook_signature_verify(secret="whsec_old", header=header, body=body, now=1_010)
    assert not webhook_signature_verify(secret="whsec_third", header=header, body=body, now=1_010)


# --- retries ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_two_500s_then_200_is_delivered_on_the_third_attempt(receiver, settings):
    receiver.answer(500, 500, 200)
    delivery = _delivery_to(receiver.url)

    assert _attempt_when_due(delivery) == WebhookAttemptOutcome.RETRY_SCHEDULED
    # Not due yet: nothing is sent early.
    assert webhook_delivery_attempt(delivery_id=delivery.pk) == WebhookAttemptOutcome.NOT_DUE
    assert len(receiver.requests) == 1
    assert _attempt_when_due(delivery) == WebhookAttemptOutcome.RETRY_SCHEDULED
    assert _attempt_when_due(delivery) == WebhookAttemptOutcome.DELIVERED

    delivery.refresh_from_db()
    assert delivery.status == WebhookDeliveryStatus.DELIVERED
    assert delivery.attempts == 3
    assert delivery.last_status_code == 200
    assert delivery.last_error == ""
    assert delivery.delivered_at is not None
    assert delivery.next_attempt_at is None
    attempts = list(delivery.attempt_log.order_by("number"))
    assert [(a.number, a.status_code) for a in attempts] == [(1, 500), (2, 500), (3, 200)]
    assert "HTTP 500" in attempts[0].error
    assert all(a.duration_ms is not None for a in attempts)
    # Exponential back-off: base after the first failure, twice the base after the second.
    base = settings.WEBHOOK_RETRY_BASE_SECONDS
    for failed, following, factor in ((attempts[0], attempts[1], 1), (attempts[1], attempts[2], 2)):
        gap = following.at - failed.at
        assert gap == timedelta(milliseconds=failed.duration_ms, seconds=base * factor)
    # Every attempt is the same event, signed, with the same body.
    assert len({r.body for r in receiver.requests}) == 1
    assert {r.headers[DELIVERY_HEADER] for r in receiver.requests} == {str(delivery.event_id)}


@pytest.mark.django_db
def test_a_receiver_always_failing_is_given_up_after_the_last_attempt_and_logged(
    receiver, settings, caplog
):
    settings.WEBHOOK_MAX_ATTEMPTS = 4
    receiver.default_status = 500
    delivery = _delivery_to(receiver.url)

    with caplog.at_level(logging.WARNING, logger="providers.services"):
        outcomes = [_attempt_when_due(delivery) for _ in range(4)]

    assert outcomes == [WebhookAttemptOutcome.RETRY_SCHEDULED] * 3 + [WebhookAttemptOutcome.FAILED]
    delivery.refresh_from_db()
    assert delivery.status == WebhookDeliveryStatus.FAILED
    assert delivery.attempts == 4
    assert delivery.next_attempt_at is None
    assert delivery.last_status_code == 500
    assert list(delivery.attempt_log.values_list("status_code", flat=True)) == [500] * 4
    (record,) = [r for r in caplog.records if "given up" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert str(delivery.event_id) in record.getMessage()
    assert "after 4 attempt(s)" in record.getMessage()
    # Given up is final: a later run sends nothing.
    far_later = timezone.now() + timedelta(days=1)
    outcome = webhook_delivery_attempt(delivery_id=delivery.pk, now=far_later)
    assert outcome == WebhookAttemptOutcome.ALREADY_DONE
    assert len(receiver.requests) == 4


@pytest.mark.django_db
def test_an_unreachable_endpoint_records_the_error_and_is_retried(closed_port_url, settings):
    delivery = _delivery_to(closed_port_url)

    assert _attempt_when_due(delivery) == WebhookAttemptOutcome.RETRY_SCHEDULED
    assert _attempt_when_due(delivery) == WebhookAttemptOutcome.RETRY_SCHEDULED

    delivery.refresh_from_db()
    assert delivery.status == WebhookDeliveryStatus.PENDING
    assert delivery.attempts == 2
    assert delivery.last_status_code is None
    assert "Could not connect" in delivery.last_error
    attempts = list(delivery.attempt_log.order_by("number"))
    assert [a.status_code for a in attempts] == [None, None]
    assert all("Could not connect" in a.error for a in attempts)
    assert delivery.next_attempt_at > attempts[1].at


@pytest.mark.django_db
def test_a_receiver_that_does_not_answer_in_time_is_recorded_and_retried(receiver, settings):
    settings.WEBHOOK_TIMEOUT_SECONDS = 0.2
    receiver.hold = True  # it takes the request and answers only when the test ends
    delivery = _delivery_to(receiver.url)

    assert _attempt_when_due(delivery) == WebhookAttemptOutcome.RETRY_SCHEDULED
    delivery.refresh_from_db()
    assert delivery.last_error == "No answer within 0.2 s"
    assert delivery.last_status_code is None
    assert delivery.attempt_log.get().error == "No answer within 0.2 s"


@pytest.mark.django_db
def test_a_redirect_is_not_followed_and_counts_as_a_failure(receiver):
    receiver.answer(301)
    delivery = _delivery_to(receiver.url)

    assert _attempt_when_due(delivery) == WebhookAttemptOutcome.RETRY_SCHEDULED
    delivery.refresh_from_db()
    assert delivery.last_status_code == 301
    assert "not followed" in delivery.last_error
    assert len(receiver.requests) == 1


@pytest.mark.django_db
def test_a_second_run_on_a_delivered_delivery_sends_nothing(receiver):
    delivery = _delivery_to(receiver.url)
    assert webhook_deliver.call(delivery.pk) == WebhookAttemptOutcome.DELIVERED

    far_later = timezone.now() + timedelta(days=1)
    outcome = webhook_delivery_attempt(delivery_id=delivery.pk, now=far_later)
    assert outcome == WebhookAttemptOutcome.ALREADY_DONE
    assert webhook_deliver.call(delivery.pk) == WebhookAttemptOutcome.ALREADY_DONE
    assert len(receiver.requests) == 1
    assert delivery.attempt_log.count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_second_run_during_an_attempt_sends_nothing_and_waits_for_no_lock(receiver):
    """The first run is inside its POST (the receiver holds the answer): the row is not
    locked meanwhile, and a second run finds the delivery taken and sends nothing."""
    delivery = _delivery_to(receiver.url)
    receiver.hold = True
    outcomes = []

    def first_run():
        try:
            outcomes.append(webhook_delivery_attempt(delivery_id=delivery.pk))
        finally:
            connections.close_all()

    thread = threading.Thread(target=first_run)
    thread.start()
    try:
        assert receiver.request_arrived.wait(timeout=30)
        second = webhook_delivery_attempt(delivery_id=delivery.pk)
        in_flight = WebhookAttempt.objects.get(delivery=delivery)
    finally:
        receiver.release.set()
        thread.join(timeout=30)

    assert second == WebhookAttemptOutcome.NOT_DUE
    assert in_flight.number == 1 and in_flight.duration_ms is None
    assert outcomes == [WebhookAttemptOutcome.DELIVERED]
    assert len(receiver.requests) == 1
    delivery.refresh_from_db()
    assert delivery.status == WebhookDeliveryStatus.DELIVERED
    assert delivery.attempts == 1


@pytest.mark.django_db
def test_an_attempt_whose_worker_died_is_tried_again_after_its_time_out(receiver, queued):
    delivery = _delivery_to(receiver.url)
    started = timezone.now()
    # What a worker killed during the POST leaves behind: the attempt taken, no result.
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        attempts=1, next_attempt_at=started + timedelta(seconds=35), enqueued_at=started
    )
    WebhookAttempt.objects.create(delivery=delivery, number=1, at=started)

    assert webhook_deliveries_enqueue_due(now=started + timedelta(seconds=10)) == 0
    outcome = webhook_delivery_attempt(delivery_id=delivery.pk, now=started + timedelta(seconds=10))
    assert outcome == WebhookAttemptOutcome.NOT_DUE
    assert receiver.requests == []
    assert webhook_deliveries_enqueue_due(now=started + timedelta(seconds=36)) == 1
    outcome = webhook_delivery_attempt(delivery_id=delivery.pk, now=started + timedelta(seconds=36))
    assert outcome == WebhookAttemptOutcome.DELIVERED
    assert list(delivery.attempt_log.values_list("number", "status_code")) == [
        (1, None),
        (2, 200),
    ]


# --- broadcast ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_broadcast_skips_inactive_endpoints_and_providers_without_endpoints(
    queued, django_capture_on_commit_callbacks
):
    with_two = VerifiedProviderFactory()
    first, second = WebhookEndpointFactory.create_batch(2, provider=with_two)
    WebhookEndpointFactory(provider=with_two, is_active=False)
    only_inactive = WebhookEndpointFactory(is_active=False).provider
    without_endpoints = VerifiedProviderFactory()
    not_addressed = WebhookEndpointFactory()

    with django_capture_on_commit_callbacks(execute=True):
        deliveries = webhook_broadcast(
            providers=[with_two, only_inactive, without_endpoints.pk],
            event=EVENT,
            payload={"service_request": 1},
        )
        assert queued == []  # not before the commit

    assert {d.endpoint_id for d in deliveries} == {first.pk, second.pk}
    assert sorted(queued) == sorted(d.pk for d in deliveries)
    assert not WebhookDelivery.objects.filter(endpoint=not_addressed).exists()
    assert len({d.event_id for d in deliveries}) == 2
    assert all(
        d.status == WebhookDeliveryStatus.PENDING and d.attempts == 0
        for d in WebhookDelivery.objects.all()
    )
    assert webhook_broadcast(providers=[without_endpoints], event=EVENT, payload={}) == []


@pytest.mark.django_db
@pytest.mark.parametrize("event", ["", "created", "Service.Created", "a..b", "x" * 101 + ".y"])
def test_broadcast_refuses_a_bad_event_name(event, queued):
    with pytest.raises(ValidationError):
        webhook_broadcast(providers=[WebhookEndpointFactory().provider], event=event, payload={})
    assert not WebhookDelivery.objects.exists()


@pytest.mark.django_db
def test_broadcast_refuses_a_payload_that_is_not_json(queued):
    provider = WebhookEndpointFactory().provider
    with pytest.raises(ValidationError):
        webhook_broadcast(providers=[provider], event=EVENT, payload={"x": object()})
    with pytest.raises(ValidationError):
        webhook_broadcast(providers=[provider], event=EVENT, payload=["not", "a", "dict"])


@pytest.mark.django_db
def test_a_pending_delivery_of_a_deactivated_endpoint_gives_up_without_sending(receiver):
    delivery = _delivery_to(receiver.url)
    webhook_endpoint_deactivate(endpoint=delivery.endpoint)

    assert _attempt_when_due(delivery) == WebhookAttemptOutcome.FAILED
    delivery.refresh_from_db()
    assert delivery.status == WebhookDeliveryStatus.FAILED
    assert "deactivated" in delivery.last_error
    assert receiver.requests == []
    assert webhook_broadcast(providers=[delivery.endpoint.provider], event=EVENT, payload={}) == []


@pytest.mark.django_db
def test_a_rotated_secret_signs_the_next_attempts(receiver):
    receiver.answer(500, 200)
    delivery = _delivery_to(receiver.url)
    old_secret = delivery.endpoint.secret
    _attempt_when_due(delivery)

    endpoint = webhook_endpoint_secret_rotate(endpoint=delivery.endpoint)
    _attempt_when_due(delivery)

    assert endpoint.secret != old_secret and len(endpoint.secret) >= 43
    first, second = receiver.requests
    assert webhook_signature_verify(
        secret=old_secret, header=first.headers[SIGNATURE_HEADER], body=first.body
    )
    assert webhook_signature_verify(
        secret=endpoint.secret, header=second.headers[SIGNATURE_HEADER], body=second.body
    )
    assert not webhook_signature_verify(
        secret=old_secret, header=second.headers[SIGNATURE_HEADER], body=second.body
    )


# --- endpoints ----------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.provider.example/in",
        "http://127.0.0.1:8080/hooks",
        "http://localhost:9000/hooks",
        "http://10.1.2.3/hooks",
        "http://192.168.0.10/hooks",
        "http://[::1]:8000/hooks",
    ],
)
def test_an_endpoint_takes_https_anywhere_and_http_on_loopback_or_a_private_network(url):
    provider = VerifiedProviderFactory()
    endpoint = webhook_endpoint_create(provider=provider, url=url, description=" NOC ")
    assert endpoint.is_active and endpoint.description == "NOC"
    assert endpoint.secret.startswith("whsec_") and len(endpoint.secret) >= 43


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.provider.example/in",
        "http://8.8.8.8/hooks",
        "http://169.254.169.254/latest/meta-data",
        "http://0.0.0.0/hooks",
        "ftp://hooks.provider.example/in",
        "not a url",
    ],
)
def test_an_endpoint_refuses_plain_http_across_the_internet_and_other_schemes(url):
    with pytest.raises(ValidationError):
        webhook_endpoint_create(provider=VerifiedProviderFactory(), url=url)
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.django_db
def test_an_endpoint_url_is_unique_per_provider():
    endpoint = WebhookEndpointFactory()
    with pytest.raises(ValidationError, match="already have a webhook endpoint with this URL"):
        webhook_endpoint_create(provider=endpoint.provider, url=endpoint.url)
    assert webhook_endpoint_create(provider=VerifiedProviderFactory(), url=endpoint.url)


@pytest.mark.django_db
def test_each_endpoint_gets_its_own_secret():
    provider = VerifiedProviderFactory()
    secrets = {
        webhook_endpoint_create(provider=provider, url=f"https://h{i}.example/in").secret
        for i in range(5)
    }
    assert len(secrets) == 5


# --- tasks and the sweep ------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_sweep_queues_each_due_retry_once_and_a_lost_one_again(queued):
    now = timezone.now()
    due = WebhookDeliveryFactory(next_attempt_at=now, enqueued_at=now - timedelta(seconds=10))
    soon = WebhookDeliveryFactory(next_attempt_at=now + timedelta(seconds=5))
    WebhookDeliveryFactory(
        status=WebhookDeliveryStatus.DELIVERED, delivered_at=now, next_attempt_at=None
    )
    WebhookDeliveryFactory(status=WebhookDeliveryStatus.FAILED, next_attempt_at=None)

    assert webhook_deliveries_enqueue_due(now=now) == 1
    assert queued == [due.pk]
    assert webhook_deliveries_enqueue_due(now=now + timedelta(seconds=1)) == 0
    # The task never ran (its worker or Redis lost it): queued again later.
    later = now + timedelta(seconds=services.WEBHOOK_REQUEUE_SECONDS + 1)
    assert webhook_deliveries_enqueue_due(now=later) == 2
    assert sorted(queued) == sorted([due.pk, due.pk, soon.pk])


@pytest.mark.django_db
def test_through_the_task_backend_the_first_attempt_runs_after_commit_and_the_sweep_retries(
    receiver, settings, django_capture_on_commit_callbacks
):
    settings.TASKS = {"default": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"}}
    receiver.answer(503)
    endpoint = WebhookEndpointFactory(url=receiver.url)

    with django_capture_on_commit_callbacks(execute=True):
        (delivery,) = webhook_broadcast(providers=[endpoint.provider], event=EVENT, payload={})
        assert receiver.requests == []

    assert len(receiver.requests) == 1
    delivery.refresh_from_db()
    assert delivery.status == WebhookDeliveryStatus.PENDING
    assert delivery.last_status_code == 503
    assert (
        webhook_deliveries_enqueue_due(now=delivery.next_attempt_at - timedelta(seconds=0.1)) == 0
    )
    # Once due, the sweep (at the clock's time, as in a worker) queues the retry.
    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    assert webhook_deliveries_enqueue_due() == 1

    assert len(receiver.requests) == 2
    delivery.refresh_from_db()
    assert delivery.status == WebhookDeliveryStatus.DELIVERED
    assert delivery.attempts == 2


# --- the console --------------------------------------------------------------------------------


@pytest.fixture
def two_providers_with_webhooks():
    """Provider A (whose owner is signed in) and provider B, each with an endpoint and a
    delivery that took two attempts."""
    a, b = VerifiedProviderFactory(), VerifiedProviderFactory()
    objects = {}
    for provider in (a, b):
        endpoint = WebhookEndpointFactory(provider=provider)
        delivery = WebhookDeliveryFactory(
            endpoint=endpoint, attempts=2, last_status_code=500, last_error="HTTP 500 Boom"
        )
        for number in (1, 2):
            WebhookAttempt.objects.create(
                delivery=delivery,
                number=number,
                at=timezone.now(),
                status_code=500,
                error=f"HTTP 500 attempt-{number}-of-{provider.pk}",
                duration_ms=3,
            )
        objects[provider.pk] = {"endpoint": endpoint, "delivery": delivery}
    client = Client()
    client.force_login(member_of(a.organization))
    return client, a, b, objects


@pytest.mark.django_db
@pytest.mark.parametrize("model_name", ["webhookendpoint", "webhookdelivery"])
def test_the_console_lists_only_the_providers_own_webhooks(two_providers_with_webhooks, model_name):
    client, a, _b, objects = two_providers_with_webhooks
    key = model_name.removeprefix("webhook")
    response = client.get(reverse(f"console:providers_{model_name}_changelist"))
    assert response.status_code == 200
    assert {obj.pk for obj in response.context["cl"].result_list} == {objects[a.pk][key].pk}


@pytest.mark.django_db
def test_another_providers_webhooks_are_404_in_the_console(two_providers_with_webhooks):
    client, _a, b, objects = two_providers_with_webhooks
    endpoint, delivery = objects[b.pk]["endpoint"], objects[b.pk]["delivery"]
    urls = [
        ("get", reverse("console:providers_webhookendpoint_change", args=[endpoint.pk])),
        ("get", reverse("console:providers_webhookdelivery_change", args=[delivery.pk])),
        ("post", reverse("console:providers_webhookendpoint_rotate_secret", args=[endpoint.pk])),
        ("post", reverse("console:providers_webhookendpoint_deactivate", args=[endpoint.pk])),
    ]
    for method, url in urls:
        assert getattr(client, method)(url).status_code == 404, url
    endpoint.refresh_from_db()
    assert endpoint.is_active
    assert endpoint.secret == objects[b.pk]["endpoint"].secret


@pytest.mark.django_db
def test_the_delivery_log_shows_every_attempt_read_only(two_providers_with_webhooks):
    client, a, b, objects = two_providers_with_webhooks
    delivery = objects[a.pk]["delivery"]
    url = reverse("console:providers_webhookdelivery_change", args=[delivery.pk])
    page = client.get(url).content.decode()
    assert f"HTTP 500 attempt-1-of-{a.pk}" in page
    assert f"HTTP 500 attempt-2-of-{a.pk}" in page
    assert f"of-{b.pk}" not in page
    assert str(delivery.event_id) in page
    response = client.post(url, {"status": "delivered"})
    assert response.status_code == 403
    delivery.refresh_from_db()
    assert delivery.status == WebhookDeliveryStatus.PENDING
    assert client.get(reverse("console:providers_webhookdelivery_add")).status_code == 403
    delete = reverse("console:providers_webhookdelivery_delete", args=[delivery.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403
    assert webhook_deliveries_of(provider=a).get() == delivery


@pytest.mark.django_db
def test_an_owner_adds_an_endpoint_sees_its_secret_rotates_it_and_deactivates_it(
    two_providers_with_webhooks,
):
    client, a, b, _objects = two_providers_with_webhooks
    response = client.post(
        reverse("console:providers_webhookendpoint_add"),
        {"url": "https://noc.provider.example/hooks", "description": "NOC", "provider": b.pk},
    )
    endpoint = WebhookEndpoint.objects.get(url="https://noc.provider.example/hooks")
    page_url = reverse("console:providers_webhookendpoint_change", args=[endpoint.pk])
    assert response.status_code == 302 and response["Location"] == page_url
    assert endpoint.provider == a
    page = client.get(page_url).content.decode()
    assert endpoint.secret in page
    assert "Rotate the signing secret" in page and "Deactivate this endpoint" in page

    client.post(reverse("console:providers_webhookendpoint_rotate_secret", args=[endpoint.pk]))
    old_secret = endpoint.secret
    endpoint.refresh_from_db()
    assert endpoint.secret != old_secret
    assert endpoint.secret in client.get(page_url).content.decode()

    response = client.post(
        reverse("console:providers_webhookendpoint_deactivate", args=[endpoint.pk])
    )
    assert response.status_code == 302
    endpoint.refresh_from_db()
    assert not endpoint.is_active
    # The actions only answer POST.
    rotate = reverse("console:providers_webhookendpoint_rotate_secret", args=[endpoint.pk])
    assert client.get(rotate).status_code == 405


@pytest.mark.django_db
def test_a_bad_or_duplicate_endpoint_url_is_a_form_error_in_the_console(
    two_providers_with_webhooks,
):
    client, a, _b, objects = two_providers_with_webhooks
    add = reverse("console:providers_webhookendpoint_add")
    response = client.post(add, {"url": objects[a.pk]["endpoint"].url})
    assert response.status_code == 200
    assert "already have a webhook endpoint with this URL" in response.content.decode()
    response = client.post(add, {"url": "http://hooks.provider.example/in"})
    assert response.status_code == 200
    assert "Plain http:// is only for" in response.content.decode()
    assert WebhookEndpoint.objects.filter(provider=a).count() == 1


@pytest.mark.django_db
def test_a_plain_member_sees_endpoints_but_not_their_secret_and_cannot_change_them(
    two_providers_with_webhooks,
):
    _client, a, _b, objects = two_providers_with_webhooks
    endpoint = objects[a.pk]["endpoint"]
    client = Client()
    client.force_login(member_of(a.organization, role=Role.MEMBER))

    page = client.get(reverse("console:providers_webhookendpoint_change", args=[endpoint.pk]))
    assert page.status_code == 200
    assert endpoint.url in page.content.decode()
    assert endpoint.secret not in page.content.decode()
    assert "Rotate the signing secret" not in page.content.decode()
    for action in ("rotate_secret", "deactivate"):
        url = reverse(f"console:providers_webhookendpoint_{action}", args=[endpoint.pk])
        assert client.post(url).status_code == 403
    add = client.post(
        reverse("console:providers_webhookendpoint_add"), {"url": "https://x.example/in"}
    )
    assert add.status_code == 403
    endpoint.refresh_from_db()
    assert endpoint.is_active and endpoint.secret == objects[a.pk]["endpoint"].secret


# --- production: receivers on public addresses only ----------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hooks",
        "http://10.1.2.3/hooks",
        "https://127.0.0.1/hooks",
        "https://10.0.0.8/hooks",
        "https://169.254.169.254/latest/meta-data",
        "https://localhost/hooks",
        "http://hooks.provider.example/in",
    ],
)
def test_in_production_an_endpoint_must_be_https_on_a_public_address(url, settings):
    settings.WEBHOOK_PRIVATE_TARGETS = False
    with pytest.raises(ValidationError):
        webhook_endpoint_create(provider=VerifiedProviderFactory(), url=url)
    assert not WebhookEndpoint.objects.exists()
    endpoint = webhook_endpoint_create(
        provider=VerifiedProviderFactory(), url="https://hooks.provider.example/in"
    )
    assert endpoint.is_active


@pytest.mark.django_db
def test_in_production_a_receiver_resolving_to_a_private_address_is_never_contacted(
    receiver, settings
):
    # an endpoint saved while development receivers were allowed (or a public name that
    # resolves to a private address now): the sender checks what the host resolves to
    delivery = _delivery_to(receiver.url.replace("127.0.0.1", "localhost"))
    settings.WEBHOOK_PRIVATE_TARGETS = False

    outcome = webhook_delivery_attempt(delivery_id=delivery.pk)

    assert outcome == WebhookAttemptOutcome.RETRY_SCHEDULED
    delivery.refresh_from_db()
    assert "resolves to" in delivery.last_error and "not a public address" in delivery.last_error
    assert receiver.requests == []
