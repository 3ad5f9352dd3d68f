"""End to end over HTTP: a recipient requests service, three providers answer (one of them
through the partner agent, a process that knows only the API), the exchange plans, the
recipient accepts with a capture, and the job's segments are processed by the three planned
providers (the agent's at its site) and assembled into the right output.

The exchange is the real ASGI server on the test database with its task worker (see
conftest.py); the rows the test creates are committed so those processes see them."""

import io
import json
import uuid
from datetime import UTC, datetime, timedelta

import dpkt
import pytest

from providers.models import Service
from segmentation.capture import capture_open
from segmentation.processing import headers_length
from tests.captures import CAPTURES_DIR
from tests.factories import (
    OfferFactory,
    OrganizationFactory,
    RoutingPathFactory,
    RoutingPathHopFactory,
    SegmentationProfileFactory,
    VerifiedProviderFactory,
)
from tests.support.api import api_key_for, http_request
from tests.support.processes import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

CAPTURE = CAPTURES_DIR / "many-protocols.pcap"
JOB_SECONDS = 120


def _provider(name: str, capacity: int, *, location: str = "exchange"):
    provider = VerifiedProviderFactory(organization__name=name, work_location=location)
    for service in (Service.SEGMENTATION, Service.STRIP_PAYLOAD):
        OfferFactory(provider=provider, service=service, price_per_gb_minor=100)
    path = RoutingPathFactory(provider=provider, name=f"{name} backbone", capacity_mbps=capacity)
    RoutingPathHopFactory(path=path, position=0)
    return provider, path


def _json(method_url_key, body=None):
    url, key = method_url_key
    status, content = http_request(
        url,
        key,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json"} if body is not None else None,
    )
    return status, json.loads(content) if content else None


def _accept(url: str, key: str) -> tuple[int, dict]:
    boundary = uuid.uuid4().hex
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="{CAPTURE.name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
    ).encode()
    body += CAPTURE.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    status, content = http_request(
        url, key, data=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    return status, json.loads(content)


def test_a_request_answered_by_three_providers_is_planned_accepted_and_carried(
    exchange, agent_start
):
    url, processes = exchange
    alpha, alpha_path = _provider("Alpha Carrier", 600)
    beta, _beta_path = _provider("Beta Partner", 300, location="partner")
    gamma, gamma_path = _provider("Gamma Networks", 100)
    recipient = OrganizationFactory(name="Acme Analytics")
    profile = SegmentationProfileFactory(
        organization=recipient,
        method="packet-count",
        param="400",
        pipeline=[{"service": "strip-payload"}],
    )
    buyer_key = api_key_for(recipient)
    keys = {provider.pk: api_key_for(provider.organization) for provider in (alpha, beta, gamma)}
    deadline = datetime.now(UTC) + timedelta(hours=1)

    status, created = _json(
        (f"{url}/api/v1/service-requests/", buyer_key),
        {
            "profile": profile.pk,
            "data_bytes": CAPTURE.stat().st_size,
            "deadline": deadline.isoformat(),
        },
    )
    assert status == 201, created
    request_id = created["id"]
    assert created["services"] == ["strip-payload"]

    # two providers answer through the API, the third through its partner agent
    valid_until = (datetime.now(UTC) + timedelta(minutes=30)).isoformat()
    for provider, path in ((alpha, alpha_path), (gamma, gamma_path)):
        status, message = _json(
            (f"{url}/api/v1/service-requests/{request_id}/availability/", keys[provider.pk]),
            {
                "paths": [{"path": path.pk, "bandwidth_mbps": path.capacity_mbps}],
                "price_per_gb_minor": 100,
                "currency": "USD",
                "valid_until": valid_until,
            },
        )
        assert status == 201, message
    _agent, agent_log = agent_start(
        url, keys[beta.pk], "--poll", "0.2", "--answer-price", "100", "--answer-valid", "1800"
    )

    def answered_by_all():
        status, messages = _json(
            (f"{url}/api/v1/service-requests/{request_id}/availability/", buyer_key)
        )
        assert status == 200, messages
        return messages if len(messages) == 3 else None

    messages = wait_for(answered_by_all, what="three answers", seconds=30, watched=processes)
    by_agent = next(m for m in messages if m["provider"]["id"] == beta.pk)
    assert by_agent["paths"][0]["bandwidth_mbps"] == 300

    status, plan = _json((f"{url}/api/v1/service-requests/{request_id}/plan/", buyer_key))
    assert status == 200, plan
    assert plan["feasible"], plan["reasons"]
    shares = {line["provider"]["id"]: line["bytes"] for line in plan["lines"]}
    assert set(shares) == {alpha.pk, beta.pk, gamma.pk}
    assert sum(shares.values()) == CAPTURE.stat().st_size
    assert shares[alpha.pk] > shares[beta.pk] > shares[gamma.pk]
    assert plan["assemblage_provider"]["id"] == alpha.pk

    status, job = _accept(f"{url}/api/v1/service-requests/{request_id}/accept/", buyer_key)
    assert status == 201, job

    def ended():
        status, current = _json((f"{url}/api/v1/jobs/{job['id']}/", buyer_key))
        assert status == 200, current
        return current if current["status"] in ("succeeded", "failed") else None

    try:
        job = wait_for(ended, what="the job", seconds=JOB_SECONDS, watched=processes)
    finally:
        print(f"--- partner agent:\n{agent_log.read_text()}")  # shown if the test fails
    assert job["status"] == "succeeded", f"{job['failure_code']}: {job['failure_reason']}"

    # every packet, in order, its payload stripped
    status, output = http_request(job["output_url"], buyer_key)
    assert status == 200
    with capture_open(CAPTURE) as reader:
        originals = list(reader)
    outputs = [bytes(buf) for _ts, buf in dpkt.pcap.Reader(io.BytesIO(output))]
    assert len(outputs) == len(originals)
    for original, data in zip(originals, outputs, strict=True):
        assert len(data) == headers_length(original.data, original.linktype)
        assert data == original.data[: len(data)]

    status, manifest = _json((job["manifest_url"], buyer_key))
    carried = {}
    for segment in manifest["segments"]:
        carried[segment["provider"]["id"]] = carried.get(segment["provider"]["id"], 0) + 1
        if segment["provider"]["id"] == beta.pk:
            assert segment["location"] == "partner"
    assert set(carried) == {alpha.pk, beta.pk, gamma.pk}
    assert manifest["service_request"] == request_id
    log = agent_log.read_text()
    assert f"request {request_id}: answered" in log
    assert log.count("packets kept") == carried[beta.pk]
