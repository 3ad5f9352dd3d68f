"""Providers whose processing runs at their own site claim work items through the API,
download the segments, and upload results or give items back, with claim tokens."""

import hashlib
import json
from datetime import datetime, timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from marketplace.models import ApiKeyScope
from providers.models import ProviderStatus, Service
from segmentation import services
from segmentation.capture import capture_open, capture_writer
from segmentation.jobfiles import ZSTD_MAGIC, job_dir
from segmentation.models import Job, JobStatus, UsageRecord, WorkItem, WorkItemStatus
from segmentation.processing import (
    compress_bytes,
    decompress_bytes,
    pipeline_build,
    recipient_key,
)
from segmentation.services import JobSpec
from tests.api.helpers import assert_problem
from tests.captures import CAPTURES_DIR
from tests.factories import (
    LeaseFactory,
    OfferFactory,
    OrganizationFactory,
    ProviderProfileFactory,
    VerifiedProviderFactory,
    member_of,
)

pytestmark = pytest.mark.django_db

WORK = "/api/v1/work/"
CLAIM = f"{WORK}claim"
CAPTURE = CAPTURES_DIR / "tls.pcap"  # 44 packets: segments of 20, 20 and 4
STRIP = [{"service": "strip-payload"}]


@pytest.fixture(autouse=True)
def _job_storage(settings, tmp_path):
    settings.JOB_STORAGE_DIR = tmp_path / "jobs"


@pytest.fixture
def partner(db):
    """A verified provider whose processing runs at its site, through a partner agent."""
    provider = VerifiedProviderFactory(
        work_location="partner", organization__name="Partner Networks"
    )
    for service in (Service.SEGMENTATION, Service.STRIP_PAYLOAD, Service.ANONYMIZE_IP):
        OfferFactory(provider=provider, service=service)
    OfferFactory(provider=provider, service=Service.COMPRESS)
    return provider


@pytest.fixture
def partner_key(partner, issue_key):
    return issue_key(partner.organization)


@pytest.fixture
def agent(partner_key, key_client):
    """The partner agent's API client."""
    return key_client(partner_key)


@pytest.fixture
def lease(partner):
    return LeaseFactory(block__provider=partner)


def job_split(lease, *, pipeline=STRIP, capture=CAPTURE) -> Job:
    """A job of the lease holder, split into work items waiting at the partner."""
    data = capture.read_bytes()
    job = services.job_submit(
        organization=lease.winner,
        user=None,
        lease_id=lease.pk,
        chunks=[data],
        size=len(data),
        input_name=capture.name,
        spec=JobSpec(method="packet-count", param="20", pipeline=pipeline),
    )
    services.job_advance(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == JobStatus.PROCESSING, job.failure_reason
    return job


def claim(client) -> dict:
    response = client.post(CLAIM)
    assert response.status_code == 200, response.content
    return response.json()


def download(client, claimed: dict, **headers) -> bytes:
    response = client.get(claimed["download_url"], headers=headers or None)
    assert response.status_code == 200, response.content
    return b"".join(response.streaming_content)


def segment_bytes(client, claimed: dict) -> bytes:
    return download(client, claimed, **{"X-Claim-Token": claimed["claim_token"]})


def processed(segment: bytes, tmp_path, *, steps=STRIP, keep=lambda position: True):
    """The result of running `steps` over a segment, keeping the positions `keep` accepts:
    (the result capture's bytes, the kept positions)."""
    source, target = tmp_path / "segment", tmp_path / "result"
    source.write_bytes(segment)
    run = pipeline_build(steps, recipient_key=bytes(32))
    kept = []
    with capture_open(source) as reader, capture_writer(target, like=reader) as writer:
        for packet in run(reader):
            if keep(packet.index):
                writer.write(packet)
                kept.append(packet.index)
    return target.read_bytes(), kept


def post_result(client, item_id, token, content: bytes, *, kept=None, kept_as_file=False):
    data = {"file": SimpleUploadedFile("result.pcap", content), "claim_token": token}
    if kept is not None:
        text = json.dumps(kept)
        data["kept"] = SimpleUploadedFile("kept.json", text.encode()) if kept_as_file else text
    return client.post(f"{WORK}{item_id}/result", data, format="multipart")


def post_fail(client, item_id, token, reason="disk full"):
    return client.post(
        f"{WORK}{item_id}/fail", {"claim_token": token, "reason": reason}, format="json"
    )


# --- claims ---------------------------------------------------------------------------------


def test_nothing_waiting_is_204(agent):
    response = agent.post(CLAIM)

    assert response.status_code == 204
    assert response.content == b""


def test_claim_gives_the_oldest_waiting_item_with_a_token_and_deadline(agent, lease, settings):
    job = job_split(lease)
    first = job.items.order_by("number").first()
    before = timezone.now()

    claimed = claim(agent)

    assert claimed["id"] == first.pk
    assert (claimed["job"], claimed["number"], claimed["kind"]) == (job.pk, 0, "segment")
    assert claimed["format"] == "pcap"
    assert claimed["steps"] == STRIP
    assert (claimed["packets"], claimed["bytes"], claimed["sha256"]) == (
        first.packets_in,
        first.bytes_in,
        first.sha256_in,
    )
    assert claimed["download_url"] == f"http://testserver{WORK}{first.pk}/input"
    assert claimed["result_url"] == f"http://testserver{WORK}{first.pk}/result"
    assert claimed["fail_url"] == f"http://testserver{WORK}{first.pk}/fail"
    assert len(claimed["claim_token"]) >= 32
    assert claimed["compressed"] is False and claimed["compression_level"] is None
    assert claimed["anonymize_key"] is None
    deadline = datetime.fromisoformat(claimed["claim_deadline"])
    assert claimed["claim_deadline"].endswith("Z")
    assert deadline >= before + timedelta(seconds=settings.WORK_CLAIM_SECONDS - 1)
    first.refresh_from_db()
    assert (first.status, first.attempts) == (WorkItemStatus.CLAIMED, 1)
    assert claim(agent)["number"] == 1  # the next claim gets the next item


def test_claim_of_an_anonymizing_pipeline_carries_a_key_of_the_job_alone(agent, lease):
    job = job_split(lease, pipeline=[{"service": "anonymize-ip"}])
    other = job_split(lease, pipeline=[{"service": "anonymize-ip"}])

    claimed = claim(agent)

    key = bytes.fromhex(claimed["anonymize_key"])
    assert len(key) == 32
    # the recipient's own key never leaves the exchange; each job's key is its own
    assert key != recipient_key(job.organization_id)
    assert key == services.job_anonymize_key(Job.objects.get(pk=job.pk))
    assert key != services.job_anonymize_key(Job.objects.get(pk=other.pk))


def test_input_download_is_the_segment(agent, lease):
    job = job_split(lease)
    claimed = claim(agent)
    item = WorkItem.objects.get(pk=claimed["id"])
    segment = (job_dir(job.pk) / item.segment_path).read_bytes()

    by_header = agent.get(
        claimed["download_url"], headers={"X-Claim-Token": claimed["claim_token"]}
    )
    by_query = agent.get(claimed["download_url"], {"claim": claimed["claim_token"]})

    assert by_header.status_code == 200
    assert by_header["Content-Type"] == "application/vnd.tcpdump.pcap"
    content = b"".join(by_header.streaming_content)
    assert content == segment
    assert hashlib.sha256(content).hexdigest() == claimed["sha256"]
    assert b"".join(by_query.streaming_content) == segment


def test_input_download_needs_the_current_claim_token(agent, lease):
    job_split(lease)
    claimed = claim(agent)

    for headers in ({}, {"X-Claim-Token": "forged"}):
        response = agent.get(claimed["download_url"], headers=headers)
        assert_problem(response, status=409, code="claim_lost")


def test_compressed_pipeline_downloads_zstd_and_accepts_a_zstd_result(agent, lease, tmp_path):
    job_split(lease, pipeline=[*STRIP, {"service": "compress", "level": 5}])
    claimed = claim(agent)

    download_body = segment_bytes(agent, claimed)

    assert (claimed["compressed"], claimed["compression_level"]) == (True, 5)
    assert download_body.startswith(ZSTD_MAGIC)
    segment = decompress_bytes(download_body)
    assert hashlib.sha256(segment).hexdigest() == claimed["sha256"]
    result, _ = processed(segment, tmp_path, steps=claimed["steps"])
    response = post_result(agent, claimed["id"], claimed["claim_token"], compress_bytes(result, 5))
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "done"


# --- results --------------------------------------------------------------------------------


def test_result_with_kept_positions_completes_the_item_and_counts_usage(agent, lease, tmp_path):
    job = job_split(lease)
    claimed = claim(agent)
    result, kept = processed(segment_bytes(agent, claimed), tmp_path, keep=lambda i: i % 2 == 0)

    response = post_result(agent, claimed["id"], claimed["claim_token"], result, kept=kept)

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "done"
    assert body["packets_out"] == len(kept) == 10
    assert body["sha256_out"] == hashlib.sha256(result).hexdigest()
    assert body["provider"]["id"] == lease.block.provider.pk
    assert body["location"] == "partner"
    usage = UsageRecord.objects.get(work_item_id=claimed["id"])
    assert (usage.provider, usage.lease, usage.packets) == (lease.block.provider, lease, 20)
    job.refresh_from_db()
    assert (job.items_done, job.packets_done) == (1, 20)


def test_retried_result_after_acceptance_is_409_work_item_done(agent, lease, tmp_path):
    job_split(lease)
    claimed = claim(agent)
    result, _ = processed(segment_bytes(agent, claimed), tmp_path)
    post_result(agent, claimed["id"], claimed["claim_token"], result)

    again = post_result(agent, claimed["id"], claimed["claim_token"], result)

    assert_problem(again, status=409, code="work_item_done")
    assert UsageRecord.objects.filter(work_item_id=claimed["id"]).count() == 1


def test_job_of_partner_results_assembles_the_kept_packets_in_order(agent, lease, tmp_path):
    job = job_split(lease)
    while (response := agent.post(CLAIM)).status_code == 200:
        claimed = response.json()
        result, kept = processed(segment_bytes(agent, claimed), tmp_path, keep=lambda i: i != 0)
        # a long list goes as a JSON file part
        response = post_result(
            agent, claimed["id"], claimed["claim_token"], result, kept=kept, kept_as_file=True
        )
        assert response.status_code == 200, response.content

    assert services.job_advance(job_id=job.pk) == JobStatus.SUCCEEDED
    job.refresh_from_db()
    assert job.output_packets == 44 - 3  # the first packet of each of the 3 segments dropped
    with capture_open(CAPTURE) as original:
        dropped = {0, 20, 40}
        expected = [(p.ts_ns, p.orig_len) for p in original if p.index not in dropped]
    with capture_open(job_dir(job.pk) / "output.pcap") as output:
        assert [(p.ts_ns, p.orig_len) for p in output] == expected


def test_result_with_a_stale_token_is_409_claim_lost_and_the_claim_stands(agent, lease, tmp_path):
    job_split(lease)
    claimed = claim(agent)
    result, _ = processed(segment_bytes(agent, claimed), tmp_path)

    response = post_result(agent, claimed["id"], "not-the-token", result)

    assert_problem(response, status=409, code="claim_lost")
    assert WorkItem.objects.get(pk=claimed["id"]).status == WorkItemStatus.CLAIMED
    assert post_result(agent, claimed["id"], claimed["claim_token"], result).status_code == 200


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("not_a_capture", "not a readable capture"),
        ("packet_missing", "say which were kept"),
        ("kept_not_increasing", "increasing positions"),
        ("kept_miscounted", "positions but the result has"),
    ],
)
def test_bad_result_is_422_invalid_result_and_the_item_stays_claimed(
    agent, lease, tmp_path, bad, message
):
    job_split(lease)
    claimed = claim(agent)
    segment = segment_bytes(agent, claimed)
    result, kept = processed(segment, tmp_path, keep=lambda i: i != 5)
    upload = {
        "not_a_capture": (b"garbage" * 100, None),
        "packet_missing": (result, None),
        "kept_not_increasing": (result, list(reversed(kept))),
        "kept_miscounted": (result, kept[:-1]),
    }[bad]

    response = post_result(agent, claimed["id"], claimed["claim_token"], upload[0], kept=upload[1])

    body = assert_problem(response, status=422, code="invalid_result")
    assert message in body["detail"]
    item = WorkItem.objects.get(pk=claimed["id"])
    assert item.status == WorkItemStatus.CLAIMED
    assert not UsageRecord.objects.exists()
    good = post_result(agent, claimed["id"], claimed["claim_token"], result, kept=kept)
    assert good.status_code == 200, good.content


def test_kept_that_is_not_a_json_list_is_400(agent, lease, tmp_path):
    job_split(lease)
    claimed = claim(agent)
    result, _ = processed(segment_bytes(agent, claimed), tmp_path)

    response = agent.post(
        f"{WORK}{claimed['id']}/result",
        {
            "file": SimpleUploadedFile("r.pcap", result),
            "claim_token": claimed["claim_token"],
            "kept": "{1, 2}",
        },
        format="multipart",
    )

    body = assert_problem(response, status=400, code="validation_failed")
    assert "kept" in body["errors"]


def test_result_over_the_upload_limit_is_413(agent, lease, tmp_path, settings):
    job_split(lease)
    claimed = claim(agent)
    result, _ = processed(segment_bytes(agent, claimed), tmp_path)
    settings.JOB_UPLOAD_MAX_BYTES = 100

    response = post_result(agent, claimed["id"], claimed["claim_token"], result)
    announced = post_result(agent, claimed["id"], claimed["claim_token"], b"\0" * 70_000)

    assert_problem(response, status=413, code="upload_too_large")
    assert_problem(announced, status=413, code="upload_too_large")
    assert WorkItem.objects.get(pk=claimed["id"]).status == WorkItemStatus.CLAIMED


# --- expiry and give-back -------------------------------------------------------------------


def test_expired_claim_goes_to_the_next_claimer_and_the_old_token_is_refused(
    agent, lease, partner, issue_key, key_client, tmp_path
):
    job_split(lease)
    first = claim(agent)
    WorkItem.objects.filter(pk=first["id"]).update(
        claim_deadline=timezone.now() - timedelta(seconds=1)
    )
    second_agent = key_client(issue_key(partner.organization))

    second = claim(second_agent)

    assert second["id"] == first["id"]
    assert second["claim_token"] != first["claim_token"]
    assert second["attempts"] == 2
    result, _ = processed(segment_bytes(second_agent, second), tmp_path)
    stale = post_result(agent, first["id"], first["claim_token"], result)
    assert_problem(stale, status=409, code="claim_lost")
    assert_problem(
        agent.get(first["download_url"], headers={"X-Claim-Token": first["claim_token"]}),
        status=409,
        code="claim_lost",
    )
    assert post_result(second_agent, second["id"], second["claim_token"], result).status_code == 200


def test_given_back_item_waits_for_the_next_claim(agent, lease):
    job_split(lease)
    claimed = claim(agent)

    response = post_fail(agent, claimed["id"], claimed["claim_token"], reason="disk full")

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["status"], body["last_error"]) == ("pending", "disk full")
    again = claim(agent)
    assert (again["id"], again["attempts"]) == (claimed["id"], 2)
    # a retried give-back with the old claim changes nothing
    assert_problem(
        post_fail(agent, claimed["id"], claimed["claim_token"]), status=409, code="claim_lost"
    )
    assert WorkItem.objects.get(pk=claimed["id"]).status == WorkItemStatus.CLAIMED


def test_item_given_back_too_often_fails_the_job(
    agent, lease, settings, django_capture_on_commit_callbacks
):
    settings.WORK_MAX_ATTEMPTS = 1
    job = job_split(lease)
    claimed = claim(agent)

    with django_capture_on_commit_callbacks(execute=True):
        post_fail(agent, claimed["id"], claimed["claim_token"], reason="cannot parse")

    job.refresh_from_db()
    assert (job.status, job.failure_code) == (JobStatus.FAILED, "work_item_failed")
    assert "cannot parse" in job.failure_reason


def test_download_for_a_job_that_failed_meanwhile_is_409_claim_lost(
    agent, lease, django_capture_on_commit_callbacks
):
    job = job_split(lease)
    claimed = claim(agent)
    with django_capture_on_commit_callbacks(execute=True):
        services.job_fail(job_id=job.pk, code="cancelled", reason="The buyer gave up.")

    download = agent.get(claimed["download_url"], headers={"X-Claim-Token": claimed["claim_token"]})

    body = assert_problem(download, status=409, code="claim_lost")
    assert "has ended" in body["detail"]


def test_result_for_a_job_that_failed_meanwhile_is_409_claim_lost(
    agent, lease, tmp_path, django_capture_on_commit_callbacks
):
    job = job_split(lease)
    claimed = claim(agent)
    result, _ = processed(segment_bytes(agent, claimed), tmp_path)
    with django_capture_on_commit_callbacks(execute=True):
        services.job_fail(job_id=job.pk, code="cancelled", reason="The buyer gave up.")

    response = post_result(agent, claimed["id"], claimed["claim_token"], result)

    assert_problem(response, status=409, code="claim_lost")
    assert not job_dir(job.pk).exists()


# --- who may claim --------------------------------------------------------------------------


def test_another_providers_key_cannot_touch_the_items(
    agent, lease, issue_key, key_client, tmp_path
):
    job_split(lease)
    claimed = claim(agent)
    result, _ = processed(segment_bytes(agent, claimed), tmp_path)
    other_partner = VerifiedProviderFactory(work_location="partner")
    exchange_provider = VerifiedProviderFactory()
    token = claimed["claim_token"]

    for provider in (other_partner, exchange_provider):
        client = key_client(issue_key(provider.organization))
        assert client.post(CLAIM).status_code == 204
        url = f"{WORK}{claimed['id']}"
        for response in (
            client.get(f"{url}/input", headers={"X-Claim-Token": token}),
            post_result(client, claimed["id"], token, result),
            post_fail(client, claimed["id"], token),
        ):
            assert_problem(response, status=404, code="work_item_not_found")
    assert WorkItem.objects.get(pk=claimed["id"]).status == WorkItemStatus.CLAIMED


def test_unknown_item_is_404(agent):
    assert_problem(post_fail(agent, 999999, "x"), status=404, code="work_item_not_found")
    assert_problem(post_fail(agent, "abc", "x"), status=404, code="work_item_not_found")


def test_buyer_organization_key_is_403_not_a_provider(lease, issue_key, key_client):
    job_split(lease)
    buyer = key_client(issue_key(lease.winner))

    assert_problem(buyer.post(CLAIM), status=403, code="not_a_provider")


def test_unverified_provider_is_403_not_a_provider(issue_key, key_client, lease):
    job_split(lease)
    pending = ProviderProfileFactory(work_location="partner", status=ProviderStatus.PENDING)

    response = key_client(issue_key(pending.organization)).post(CLAIM)

    assert_problem(response, status=403, code="not_a_provider")


def test_read_only_key_cannot_claim(partner, issue_key, key_client, lease):
    job_split(lease)
    reader = key_client(issue_key(partner.organization, scope=ApiKeyScope.READ))

    assert_problem(reader.post(CLAIM), status=403, code="insufficient_scope")
    assert not WorkItem.objects.filter(status=WorkItemStatus.CLAIMED).exists()


def test_browser_session_cannot_claim(partner, login_client, lease):
    job_split(lease)
    browser = login_client(member_of(partner.organization))

    assert_problem(browser.post(CLAIM), status=403, code="api_key_required")


def test_claims_need_authentication(client):
    assert_problem(client.post(CLAIM), status=401, code="not_authenticated")


def test_foreign_organization_key_sees_nothing_to_claim(lease, issue_key, key_client):
    job_split(lease)
    stranger = key_client(issue_key(OrganizationFactory()))

    assert_problem(stranger.post(CLAIM), status=403, code="not_a_provider")


def test_a_compressed_result_that_expands_past_its_segment_is_refused(agent, lease):
    import zstandard

    job_split(lease)
    claimed = claim(agent)
    # 64 MB of zeros compress to a few kilobytes: a "zip bomb" against the exchange's disk
    bomb = zstandard.ZstdCompressor(level=19).compress(bytes(64 << 20))
    assert len(bomb) < 64 << 10

    response = post_result(agent, claimed["id"], claimed["claim_token"], bomb)

    body = assert_problem(response, status=422, code="invalid_result")
    assert "decompresses to more than" in body["detail"]
    item = WorkItem.objects.get(pk=claimed["id"])
    assert item.status == WorkItemStatus.CLAIMED
    assert not list((job_dir(item.job_id) / "results").glob("*"))
