"""End to end with two providers: a job's UDP packets need IP anonymization, which the lease's
provider (its processing in the exchange's workers) does not offer, so they are subcontracted
to a provider whose processing runs at its site; the partner agent (examples/partner_agent.py,
a process of its own that knows only the HTTP API) processes them there.

The exchange is the real ASGI server (`manage.py serve`) on the test database, with its task
worker (embedded, or a `manage.py worker` process on Redis) on a private queue; the rows the
test creates are committed (`transaction=True`) so those processes see them.
"""

import itertools
import json
import uuid
from pathlib import Path

import pytest
from django.conf import settings

from providers.models import Service
from segmentation import bpf, decode
from segmentation.capture import capture_open
from segmentation.processing import headers_length
from tests.captures import CAPTURES_DIR
from tests.factories import LeaseFactory, OfferFactory, VerifiedProviderFactory
from tests.support.api import api_key_for, http_request
from tests.support.processes import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

ON_REDIS_QUEUE = settings.TASK_BACKEND == "rq"
JOB_SECONDS = 120
AGENT = Path(settings.BASE_DIR) / "examples" / "partner_agent.py"
CAPTURE = CAPTURES_DIR / "many-protocols.pcap"  # 4709 packets: 269 UDP, 4321 TCP, others
PIPELINE = [{"service": "anonymize-ip", "where": "udp"}, {"service": "strip-payload"}]


# --- the marketplace ------------------------------------------------------------------------


@pytest.fixture
def market():
    """The lease's provider A runs in the exchange and lacks anonymize-ip; partner B offers it
    at its site and is the cheapest of those who offer it (C, in the exchange, is dearer)."""
    provider_a = VerifiedProviderFactory(organization__name="Alpha Segmentation")
    for service in (Service.SEGMENTATION, Service.STRIP_PAYLOAD):
        OfferFactory(provider=provider_a, service=service)
    provider_b = VerifiedProviderFactory(organization__name="Beta Partner", work_location="partner")
    provider_c = VerifiedProviderFactory(organization__name="Gamma Dear")
    for provider, price in ((provider_b, 100), (provider_c, 900)):
        for service in (Service.ANONYMIZE_IP, Service.STRIP_PAYLOAD):
            OfferFactory(provider=provider, service=service, price_per_gb_minor=price)
    lease = LeaseFactory(block__provider=provider_a)
    return {
        "lease": lease,
        "provider_a": provider_a,
        "provider_b": provider_b,
        "buyer_key": api_key_for(lease.winner),
        "partner_key": api_key_for(provider_b.organization),
    }


# --- HTTP as a client sees it -----------------------------------------------------------------


def _job_submit(url: str, key: str, lease_id: int) -> dict:
    boundary = uuid.uuid4().hex
    fields = {
        "lease": str(lease_id),
        "method": "packet-count",
        "param": "2000",
        "pipeline": json.dumps(PIPELINE),
    }
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    )
    body += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="{CAPTURE.name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
    ).encode()
    body += CAPTURE.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    status, content = http_request(
        f"{url}/api/v1/jobs/",
        key,
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert status == 201, content
    return json.loads(content)


def _job_finished(url: str, key: str, job_id: int, processes: dict, agent_log: Path) -> dict:
    def ended():
        status, content = http_request(f"{url}/api/v1/jobs/{job_id}/", key)
        assert status == 200, content
        job = json.loads(content)
        return job if job["status"] in ("succeeded", "failed") else None

    try:
        job = wait_for(
            ended, what=f"the end of job {job_id}", seconds=JOB_SECONDS, watched=processes
        )
    finally:
        print(f"--- partner agent:\n{agent_log.read_text()}")  # shown if the test fails
    logs = "\n".join(f"--- {name}:\n{log.read_text()}" for name, (_, log) in processes.items())
    assert job["status"] == "succeeded", f"{job['failure_code']}: {job['failure_reason']}\n{logs}"
    return job


# --- checks on the output -------------------------------------------------------------------


def _packets(path: Path) -> list:
    with capture_open(path) as reader:
        return list(reader)


def _common_prefix_bits(a: bytes, b: bytes) -> int:
    bits = 0
    for x, y in zip(a, b, strict=True):
        if x == y:
            bits += 8
            continue
        return bits + 8 - (x ^ y).bit_length()
    return bits


def _assert_output_processed(output: Path) -> int:
    """The output holds the input's packets, in order; UDP ones anonymized (prefix-preserving)
    and every payload stripped; TCP addresses unchanged. Returns how many UDP packets."""
    originals, results = _packets(CAPTURE), _packets(output)
    assert len(results) == len(originals)
    assert [(p.ts_ns, p.orig_len) for p in results] == [(p.ts_ns, p.orig_len) for p in originals]
    udp = bpf.bpf_compile("udp", decode.LINKTYPE_ETHERNET)
    anonymized: dict[bytes, bytes] = {}
    udp_packets = tcp_packets = 0
    for original, result in zip(originals, results, strict=True):
        assert len(result.data) == headers_length(original.data, original.linktype)
        before = decode.ip_summary(original.data, original.linktype)
        after = decode.ip_summary(result.data, result.linktype)
        if udp.matches(original.data):
            udp_packets += 1
            assert after is not None
            for address, changed in ((before.src_ip, after.src_ip), (before.dst_ip, after.dst_ip)):
                assert changed != address
                assert anonymized.setdefault(address, changed) == changed
        elif before is not None and before.proto == decode.TCP:
            tcp_packets += 1
            assert (after.src_ip, after.dst_ip) == (before.src_ip, before.dst_ip)
    assert udp_packets > 100 and tcp_packets > 1000
    for (a, a_anonymized), (b, b_anonymized) in itertools.combinations(anonymized.items(), 2):
        if len(a) == len(b):
            assert _common_prefix_bits(a, b) == _common_prefix_bits(a_anonymized, b_anonymized)
    return udp_packets


def _assert_manifest(manifest: dict, market: dict, udp_packets: int) -> dict:
    """A subcontracted segment of the UDP packets by B at its site, the rest by A in the
    exchange; returns the subcontracted segment."""
    segments = manifest["segments"]
    subcontracted = [s for s in segments if s["kind"] == "subcontract"]
    assert len(subcontracted) == 1, segments
    (partner_segment,) = subcontracted
    assert partner_segment["provider"]["id"] == market["provider_b"].pk
    assert partner_segment["location"] == "partner"
    assert partner_segment["packets_in"] == partner_segment["packets"] == udp_packets
    others = [s for s in segments if s["kind"] == "segment"]
    assert len(others) == 3  # 4709 - 269 packets in segments of 2000
    for segment in others:
        assert segment["provider"]["id"] == market["provider_a"].pk
        assert segment["location"] == "exchange"
    assert sum(s["packets"] for s in segments) == manifest["output"]["packets"] == 4709
    return partner_segment


# --- the tests ------------------------------------------------------------------------------


def _job_through_the_agent(exchange, market, agent_start, tmp_path, *agent_options) -> tuple:
    """Run the agent for B and a job through the API to its end; the job, its output file,
    its manifest and the agent's log."""
    url, processes = exchange
    agent, agent_log = agent_start(
        url, market["partner_key"], "--poll", "0.2", "--max-items", "1", *agent_options
    )
    submitted = _job_submit(url, market["buyer_key"], market["lease"].pk)

    # the agent stops by itself once it has delivered its one item (--max-items 1)
    job = _job_finished(url, market["buyer_key"], submitted["id"], processes, agent_log)
    wait_for(lambda: agent.poll() is not None, what="the agent's exit", seconds=30)
    assert agent.returncode == 0, agent_log.read_text()
    status, content = http_request(job["output_url"], market["buyer_key"])
    assert status == 200, content
    output = tmp_path / "output.pcap"
    output.write_bytes(content)
    status, content = http_request(job["manifest_url"], market["buyer_key"])
    assert status == 200, content
    return job, output, json.loads(content), agent_log.read_text()


def test_udp_packets_are_processed_by_the_partner_agent_and_assembled_in_order(
    exchange, market, agent_start, tmp_path
):
    job, output, manifest, agent_log = _job_through_the_agent(
        exchange, market, agent_start, tmp_path
    )

    udp_packets = _assert_output_processed(output)
    partner_segment = _assert_manifest(manifest, market, udp_packets)
    assert partner_segment["attempts"] == 1
    item_lines = [line for line in agent_log.splitlines() if f"job {job['id']}," in line]
    assert len(item_lines) == 1, agent_log
    assert f"{udp_packets} of {udp_packets} packets kept" in item_lines[0]
    usage = {(u["provider"]["id"], u["kind"]): u["packets"] for u in job["usage"]}
    assert usage[market["provider_b"].pk, "subcontract"] == udp_packets
    assert usage[market["provider_a"].pk, "segment"] == 4709 - udp_packets


def test_item_the_agent_gives_back_is_claimed_again_and_completed(
    exchange, market, agent_start, tmp_path
):
    job, output, manifest, agent_log = _job_through_the_agent(
        exchange, market, agent_start, tmp_path, "--fail-first"
    )

    udp_packets = _assert_output_processed(output)
    partner_segment = _assert_manifest(manifest, market, udp_packets)
    assert partner_segment["attempts"] == 2
    assert "given back: given back on purpose (--fail-first)" in agent_log
    (item,) = [i for i in job["items"] if i["kind"] == "subcontract"]
    assert (item["status"], item["attempts"]) == ("done", 2)


def test_agent_with_a_key_the_exchange_refuses_stops_with_the_reason(exchange, market, agent_start):
    url, _ = exchange

    unknown, unknown_log = agent_start(url, "sx_not-a-key", "--poll", "0.2")
    buyer, buyer_log = agent_start(url, market["buyer_key"], "--poll", "0.2")

    assert unknown.wait(timeout=30) == 2
    assert "The exchange refuses this key: HTTP 401 invalid_api_key" in unknown_log.read_text()
    assert buyer.wait(timeout=30) == 2
    assert "HTTP 403 not_a_provider: Only a verified provider" in buyer_log.read_text()
