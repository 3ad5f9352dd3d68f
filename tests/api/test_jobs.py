"""Lease holders submit captures through the API, follow their jobs and download the output;
refused submissions answer with a stable code and are recorded as failed jobs."""

import hashlib
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from marketplace.models import ApiKeyScope
from providers.models import ProviderStatus, Service
from segmentation import services
from segmentation.capture import capture_open
from segmentation.jobfiles import job_dir
from segmentation.models import Job, JobStatus, SegmentationProfile, WorkItem
from tests.api.helpers import assert_problem
from tests.captures import CAPTURES_DIR
from tests.factories import (
    LeaseFactory,
    OfferFactory,
    OrganizationFactory,
    member_of,
)

pytestmark = pytest.mark.django_db

JOBS = "/api/v1/jobs/"
PROFILES = "/api/v1/segmentation-profiles/"
CAPTURE = CAPTURES_DIR / "tls.pcap"  # 44 TCP packets
SPLIT = {"method": "packet-count", "param": "20"}


@pytest.fixture(autouse=True)
def _job_storage(settings, tmp_path):
    settings.JOB_STORAGE_DIR = tmp_path / "jobs"


@pytest.fixture
def lease(db):
    """A lease running now, of a verified provider offering segmentation and strip-payload."""
    lease = LeaseFactory()
    OfferFactory(provider=lease.block.provider, service=Service.SEGMENTATION)
    OfferFactory(provider=lease.block.provider, service=Service.STRIP_PAYLOAD)
    return lease


@pytest.fixture
def buyer_client(lease, issue_key, key_client):
    """A write-scoped API client of the lease holder."""
    return key_client(issue_key(lease.winner))


def capture_upload(path=CAPTURE, *, name=None, content=None) -> SimpleUploadedFile:
    data = path.read_bytes() if content is None else content
    return SimpleUploadedFile(name or path.name, data, content_type="application/octet-stream")


def submit(client, lease, *, upload=None, headers=None, **fields):
    data = {"file": upload or capture_upload(), "lease": lease.pk, **SPLIT, **fields}
    return client.post(JOBS, data, format="multipart", headers=headers or {})


def job_run_to_end(job_id: int) -> Job:
    """Run a job in this process as the workers would: split, the exchange's items, assemble."""
    for _ in range(50):
        job = Job.objects.get(pk=job_id)
        if job.ended:
            return job
        waiting = WorkItem.objects.filter(job_id=job_id, location="exchange", status="pending")
        if waiting.exists():
            for item in waiting:
                services.work_item_run(item_id=item.pk)
        else:
            services.job_advance(job_id=job_id)
    pytest.fail(f"Job {job_id} did not end: {Job.objects.get(pk=job_id).status}")


def packets_of(path) -> list:
    with capture_open(path) as reader:
        return [(packet.ts_ns, packet.orig_len, packet.data) for packet in reader]


# --- submission -----------------------------------------------------------------------------


def test_lease_holder_submits_a_capture_and_gets_a_queued_job(buyer_client, lease):
    pipeline = '[{"service": "strip-payload"}]'

    response = submit(buyer_client, lease, pipeline=pipeline)

    assert response.status_code == 201, response.content
    body = response.json()
    job = Job.objects.get(pk=body["id"])
    assert body["status"] == "queued" == job.status
    assert response["Location"] == body["url"] == f"http://testserver{JOBS}{job.pk}/"
    assert (body["lease"], body["method"], body["param"]) == (lease.pk, "packet-count", "20")
    assert body["pipeline"] == [{"service": "strip-payload"}]
    capture = CAPTURE.read_bytes()
    assert body["input"] == {
        "name": "tls.pcap",
        "format": "pcap",
        "bytes": len(capture),
        "sha256": hashlib.sha256(capture).hexdigest(),
    }
    assert body["progress"]["status"] == "queued"
    assert body["progress"]["percent"] == 0
    assert body["output_url"] is None and body["manifest_url"] is None
    assert body["created_at"].endswith("Z")
    assert body["items"] == [] and body["usage"] == [] and body["sla_breach"] is None
    assert (job.organization, job.lease) == (lease.winner, lease)
    assert (job_dir(job.pk) / "input.pcap").read_bytes() == capture


def test_job_submitted_with_a_profile_takes_its_split_and_pipeline(buyer_client, lease):
    profile = buyer_client.post(
        PROFILES,
        {
            "name": "Strip",
            "method": "round-robin",
            "param": "3",
            "pipeline": [{"service": "strip-payload"}],
        },
        format="json",
    ).json()

    response = buyer_client.post(
        JOBS,
        {"file": capture_upload(), "lease": lease.pk, "profile": profile["id"]},
        format="multipart",
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["profile"], body["method"], body["param"]) == (profile["id"], "round-robin", "3")
    assert body["pipeline"] == [{"service": "strip-payload"}]


def test_pcapng_capture_is_accepted(buyer_client, lease):
    upload = capture_upload(CAPTURES_DIR / "pcapng-example.pcapng")

    response = submit(buyer_client, lease, upload=upload)

    assert response.status_code == 201, response.content
    assert response.json()["input"]["format"] == "pcapng"


def assert_refused(response, *, status: int, code: str, organization) -> Job:
    """The problem names the failed job recorded for the submission; returns that job."""
    body = assert_problem(response, status=status, code=code)
    job = Job.objects.get(pk=body["job"])
    assert body["job_url"] == f"http://testserver{JOBS}{job.pk}/"
    assert job.organization == organization
    assert job.status == JobStatus.FAILED
    assert job.failure_code == code
    assert job.failure_reason == body["detail"]
    assert job.finished_at is not None
    return job


def test_file_that_is_not_a_capture_is_422_and_recorded_as_a_failed_job(buyer_client, lease):
    upload = capture_upload(name="notes.pcap", content=b"these are my notes, not packets\n" * 4)

    response = submit(buyer_client, lease, upload=upload)

    job = assert_refused(response, status=422, code="not_a_capture", organization=lease.winner)
    assert "notes.pcap is not a packet capture" in job.failure_reason
    assert not job_dir(job.pk).exists()


def test_zero_byte_file_is_422_not_a_capture(buyer_client, lease):
    response = submit(buyer_client, lease, upload=capture_upload(name="empty.pcap", content=b""))

    job = assert_refused(response, status=422, code="not_a_capture", organization=lease.winner)
    assert job.input_name == "empty.pcap"


def test_capture_over_the_upload_limit_is_413_and_recorded(buyer_client, lease, settings):
    settings.JOB_UPLOAD_MAX_BYTES = 1000  # the capture is 12 KB: within the envelope's slack

    response = submit(buyer_client, lease)

    job = assert_refused(response, status=413, code="upload_too_large", organization=lease.winner)
    assert "over the upload limit of 1,000 bytes" in job.failure_reason


def test_upload_announced_over_the_limit_is_413_before_it_is_read(buyer_client, lease, settings):
    settings.JOB_UPLOAD_MAX_BYTES = 1000
    big = capture_upload(CAPTURES_DIR / "http-packets.pcap")  # 2.6 MB

    response = submit(buyer_client, lease, upload=big)

    body = assert_problem(response, status=413, code="upload_too_large")
    assert "job" not in body
    assert not Job.objects.exists()


def test_bad_bpf_filter_is_422_bad_bpf(buyer_client, lease):
    response = submit(buyer_client, lease, bpf_filter="tcp and (")

    job = assert_refused(response, status=422, code="bad_bpf", organization=lease.winner)
    assert job.bpf_filter == "tcp and ("


def test_split_parameter_the_method_cannot_take_is_422_invalid_split(buyer_client, lease):
    response = submit(buyer_client, lease, param="twenty")

    assert_refused(response, status=422, code="invalid_split", organization=lease.winner)


def test_unknown_processing_service_is_422_invalid_pipeline(buyer_client, lease):
    response = submit(buyer_client, lease, pipeline='[{"service": "teleport"}]')

    job = assert_refused(response, status=422, code="invalid_pipeline", organization=lease.winner)
    assert "teleport" in job.failure_reason


def test_pipeline_that_is_not_json_is_400_validation_failed(buyer_client, lease):
    response = submit(buyer_client, lease, pipeline="[{service: strip-payload}]")

    body = assert_problem(response, status=400, code="validation_failed")
    assert "pipeline" in body["errors"]
    assert not Job.objects.exists()


def test_lease_that_has_ended_is_409_lease_ended(buyer_client, lease):
    lease.ends_at = timezone.now() - timedelta(minutes=5)
    lease.save(update_fields=["ends_at"])

    response = submit(buyer_client, lease)

    job = assert_refused(response, status=409, code="lease_ended", organization=lease.winner)
    assert job.lease == lease


def test_lease_not_started_yet_is_409_lease_not_started(buyer_client, lease):
    lease.starts_at = timezone.now() + timedelta(hours=1)
    lease.save(update_fields=["starts_at"])

    response = submit(buyer_client, lease)

    assert_refused(response, status=409, code="lease_not_started", organization=lease.winner)


def test_lease_of_a_suspended_provider_is_409_provider_suspended(buyer_client, lease):
    provider = lease.block.provider
    provider.status = ProviderStatus.SUSPENDED
    provider.save(update_fields=["status"])

    response = submit(buyer_client, lease)

    assert_refused(response, status=409, code="provider_suspended", organization=lease.winner)


def test_someone_elses_lease_is_404_lease_not_found(lease, issue_key, key_client):
    stranger = OrganizationFactory()
    client = key_client(issue_key(stranger))

    response = submit(client, lease)

    job = assert_refused(response, status=404, code="lease_not_found", organization=stranger)
    assert job.lease is None
    assert not Job.objects.filter(organization=lease.winner).exists()


def test_unknown_profile_is_404_profile_not_found(buyer_client, lease):
    response = buyer_client.post(
        JOBS, {"file": capture_upload(), "lease": lease.pk, "profile": 999999}, format="multipart"
    )

    assert_problem(response, status=404, code="profile_not_found")
    assert not Job.objects.exists()


def test_another_organizations_profile_is_404_profile_not_found(buyer_client, lease):
    theirs = SegmentationProfile.objects.create(
        organization=OrganizationFactory(), name="Theirs", method="connection"
    )

    response = buyer_client.post(
        JOBS,
        {"file": capture_upload(), "lease": lease.pk, "profile": theirs.pk},
        format="multipart",
    )

    assert_problem(response, status=404, code="profile_not_found")
    assert not Job.objects.exists()


def test_neither_profile_nor_method_is_422(buyer_client, lease):
    response = buyer_client.post(
        JOBS, {"file": capture_upload(), "lease": lease.pk}, format="multipart"
    )

    body = assert_problem(response, status=422, code="validation_failed")
    assert "method" in body["errors"]


def test_both_profile_and_method_is_422(buyer_client, lease):
    response = submit(buyer_client, lease, profile=1)

    body = assert_problem(response, status=422, code="validation_failed")
    assert "profile" in body["errors"]


def test_file_and_lease_are_required(buyer_client):
    response = buyer_client.post(JOBS, {"method": "connection"}, format="multipart")

    body = assert_problem(response, status=400, code="validation_failed")
    assert {"file", "lease"} <= set(body["errors"])


def test_read_only_key_cannot_submit(lease, issue_key, key_client):
    client = key_client(issue_key(lease.winner, scope=ApiKeyScope.READ))

    assert_problem(submit(client, lease), status=403, code="insufficient_scope")
    assert client.get(JOBS).status_code == 200
    assert not Job.objects.exists()


def test_jobs_need_authentication(client, lease):
    assert_problem(client.get(JOBS), status=401, code="not_authenticated")
    assert_problem(submit(client, lease), status=401, code="not_authenticated")


def test_signed_in_member_submits_through_the_session(lease, login_client):
    member = member_of(lease.winner)
    browser = login_client(member)

    response = browser.post(JOBS, {"file": capture_upload(), "lease": lease.pk, **SPLIT})

    assert response.status_code == 201, response.content
    job = Job.objects.get(pk=response.json()["id"])
    assert (job.organization, job.created_by) == (lease.winner, member)


def test_api_key_submission_is_recorded_as_by_the_keys_creator(buyer_client, lease):
    job = Job.objects.get(pk=submit(buyer_client, lease).json()["id"])

    assert job.created_by.memberships.filter(organization=lease.winner).exists()


# --- idempotency ----------------------------------------------------------------------------


def test_replayed_submission_returns_the_first_job_and_creates_no_other(buyer_client, lease):
    first = submit(buyer_client, lease, headers={"Idempotency-Key": "capture-1"})
    second = submit(buyer_client, lease, headers={"Idempotency-Key": "capture-1"})

    assert first.status_code == second.status_code == 201, second.content
    assert second.json() == first.json()
    assert second["Idempotent-Replayed"] == "true"
    assert Job.objects.count() == 1


def test_replayed_refused_submission_returns_the_same_failed_job(buyer_client, lease):
    upload = {"content": b"not a capture", "name": "x.pcap"}

    first = submit(
        buyer_client, lease, upload=capture_upload(**upload), headers={"Idempotency-Key": "k"}
    )
    second = submit(
        buyer_client, lease, upload=capture_upload(**upload), headers={"Idempotency-Key": "k"}
    )

    job = assert_refused(first, status=422, code="not_a_capture", organization=lease.winner)
    body = assert_problem(second, status=422, code="not_a_capture")
    assert body["job"] == job.pk
    assert second["Idempotent-Replayed"] == "true"
    assert Job.objects.count() == 1


def test_same_key_for_another_submission_is_422_idempotency_key_reused(buyer_client, lease):
    submit(buyer_client, lease, headers={"Idempotency-Key": "k1"})

    response = submit(buyer_client, lease, param="30", headers={"Idempotency-Key": "k1"})

    assert_problem(response, status=422, code="idempotency_key_reused")
    assert Job.objects.count() == 1


def test_same_key_with_another_file_of_the_same_name_is_422_idempotency_key_reused(
    buyer_client, lease
):
    first = capture_upload(content=(CAPTURES_DIR / "DnsPackets.pcap").read_bytes(), name="c.pcap")
    other = capture_upload(content=(CAPTURES_DIR / "tls.pcap").read_bytes(), name="c.pcap")
    submit(buyer_client, lease, upload=first, headers={"Idempotency-Key": "same-name"})

    response = submit(buyer_client, lease, upload=other, headers={"Idempotency-Key": "same-name"})

    assert_problem(response, status=422, code="idempotency_key_reused")
    assert Job.objects.count() == 1


# --- reading jobs ---------------------------------------------------------------------------


def test_list_shows_only_the_organizations_own_jobs_newest_first(buyer_client, lease):
    first = submit(buyer_client, lease).json()
    second = submit(buyer_client, lease).json()
    other_lease = LeaseFactory()
    Job.objects.create(
        organization=other_lease.winner, lease=other_lease, method="connection", input_name="x"
    )

    body = buyer_client.get(JOBS).json()

    assert body["count"] == 2
    assert [job["id"] for job in body["results"]] == [second["id"], first["id"]]
    assert "items" not in body["results"][0]


def test_list_filters_by_status(buyer_client, lease):
    queued = submit(buyer_client, lease).json()
    refused = submit(buyer_client, lease, bpf_filter="(").json()

    assert [j["id"] for j in buyer_client.get(JOBS, {"status": "failed"}).json()["results"]] == [
        refused["job"]
    ]
    assert [j["id"] for j in buyer_client.get(JOBS, {"status": "queued"}).json()["results"]] == [
        queued["id"]
    ]
    body = assert_problem(
        buyer_client.get(JOBS, {"status": "lost"}), status=400, code="validation_failed"
    )
    assert "status" in body["errors"]


def test_another_organizations_job_is_404_everywhere(lease, buyer_client, issue_key, key_client):
    job_id = submit(buyer_client, lease).json()["id"]
    job_run_to_end(job_id)
    stranger = key_client(issue_key(OrganizationFactory()))

    for path in ("", "output", "manifest"):
        url = f"{JOBS}{job_id}/{path}"
        assert_problem(stranger.get(url), status=404, code="job_not_found")
    assert stranger.get(JOBS).json()["count"] == 0
    assert_problem(buyer_client.get(f"{JOBS}abc/"), status=404, code="job_not_found")


def test_refused_job_shows_its_failure(buyer_client, lease):
    job_id = submit(buyer_client, lease, bpf_filter="(").json()["job"]

    body = buyer_client.get(f"{JOBS}{job_id}/").json()

    assert body["status"] == "failed"
    assert body["failure_code"] == "bad_bpf"
    assert body["failure_reason"].startswith("BPF filter:")
    assert body["progress"]["failure_code"] == "bad_bpf"
    assert body["output_url"] is None


def test_output_and_manifest_are_404_until_the_job_has_succeeded(buyer_client, lease):
    job_id = submit(buyer_client, lease).json()["id"]

    for path in ("output", "manifest"):
        body = assert_problem(
            buyer_client.get(f"{JOBS}{job_id}/{path}"), status=404, code="output_not_ready"
        )
        assert "queued" in body["detail"]


def test_finished_job_shows_items_usage_output_and_manifest(buyer_client, lease):
    job_id = submit(buyer_client, lease, pipeline='[{"service": "strip-payload"}]').json()["id"]

    job = job_run_to_end(job_id)
    body = buyer_client.get(f"{JOBS}{job_id}/").json()

    assert job.status == JobStatus.SUCCEEDED, job.failure_reason
    assert body["status"] == "succeeded"
    progress = body["progress"]
    assert progress["percent"] == 100
    assert progress["items_total"] == progress["items_done"] == 3  # 44 packets by 20
    assert progress["packets_total"] == progress["output_packets"] == 44
    base = f"http://testserver{JOBS}{job_id}"
    assert body["output_url"] == progress["output_url"] == f"{base}/output"
    assert body["manifest_url"] == progress["manifest_url"] == f"{base}/manifest"
    provider = lease.block.provider
    assert [item["number"] for item in body["items"]] == [0, 1, 2]
    for item in body["items"]:
        assert item["provider"] == {"id": provider.pk, "name": provider.legal_name}
        assert (item["kind"], item["location"], item["status"]) == ("segment", "exchange", "done")
        assert len(item["sha256_out"]) == 64
    assert sum(item["packets_out"] for item in body["items"]) == 44
    assert body["usage"] == [
        {
            "provider": {"id": provider.pk, "name": provider.legal_name},
            "lease": lease.pk,
            "kind": "segment",
            "packets": 44,
            "bytes": sum(item["bytes_in"] for item in body["items"]),
            "items": 3,
        }
    ]
    assert body["started_at"].endswith("Z") and body["finished_at"].endswith("Z")

    output = buyer_client.get(body["output_url"])
    assert output.status_code == 200
    assert output["Content-Type"] == "application/vnd.tcpdump.pcap"
    assert 'filename="tls-segmented.pcap"' in output["Content-Disposition"]
    content = b"".join(output.streaming_content)
    assert hashlib.sha256(content).hexdigest() == job.output_sha256
    assert output["Repr-Digest"].startswith("sha-256=:")
    stored = job_dir(job_id) / "output.pcap"
    original = packets_of(CAPTURE)
    assembled = packets_of(stored)
    assert [(ts, length) for ts, length, _ in assembled] == [(t, n) for t, n, _ in original]
    assert all(len(out) <= len(data) for (_, _, out), (_, _, data) in zip(assembled, original))

    manifest = buyer_client.get(body["manifest_url"])
    assert manifest.status_code == 200
    assert manifest.json() == job.manifest
    assert [segment["provider"]["id"] for segment in manifest.json()["segments"]] == [
        provider.pk
    ] * 3
    assert manifest.json()["output"]["sha256"] == job.output_sha256


def test_output_download_ignores_a_capture_accept_header(buyer_client, lease):
    job_id = submit(buyer_client, lease).json()["id"]
    job_run_to_end(job_id)

    response = buyer_client.get(
        f"{JOBS}{job_id}/output", headers={"Accept": "application/vnd.tcpdump.pcap"}
    )

    assert response.status_code == 200
    # nothing to process: the assembled capture is the input, byte for byte
    assert b"".join(response.streaming_content) == CAPTURE.read_bytes()


def test_job_slower_than_the_guaranteed_rate_shows_its_sla_breach(buyer_client, lease, settings):
    settings.SLA_GRACE_SECONDS = 0
    lease.block.min_rate_mbps = lease.block.max_rate_mbps
    lease.block.save(update_fields=["min_rate_mbps"])
    job_id = submit(buyer_client, lease).json()["id"]
    job_run_to_end(job_id)

    breach = buyer_client.get(f"{JOBS}{job_id}/").json()["sla_breach"]

    assert breach["guaranteed_mbps"] == lease.block.max_rate_mbps
    assert breach["measured_mbps"] < breach["guaranteed_mbps"]
    assert breach["seconds"] > breach["allowed_seconds"]


# --- segmentation profiles ------------------------------------------------------------------


def test_organization_saves_and_reads_a_profile(buyer_client, lease):
    response = buyer_client.post(
        PROFILES,
        {
            "name": "Anonymized UDP",
            "method": "connection",
            "pipeline": [{"service": "anonymize-ip", "where": "udp"}],
            "preferred_providers": [lease.block.provider.pk],
        },
        format="json",
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert response["Location"] == body["url"]
    profile = SegmentationProfile.objects.get(pk=body["id"])
    assert profile.organization == lease.winner
    assert profile.pipeline == [{"service": "anonymize-ip", "where": "udp"}]
    assert buyer_client.get(body["url"]).json() == body
    assert [p["id"] for p in buyer_client.get(PROFILES).json()["results"]] == [profile.pk]


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"pipeline": [{"service": "teleport"}]}, "invalid_pipeline"),
        ({"bpf_filter": "port and"}, "bad_bpf"),
        ({"method": "packet-count", "param": "-3"}, "invalid_split"),
    ],
)
def test_profile_with_a_bad_spec_is_422(buyer_client, changes, code):
    data = {"name": "Bad", "method": "connection", **changes}

    assert_problem(buyer_client.post(PROFILES, data, format="json"), status=422, code=code)
    assert not SegmentationProfile.objects.exists()


def test_profile_name_taken_is_409(buyer_client):
    data = {"name": "Same", "method": "connection"}
    buyer_client.post(PROFILES, data, format="json")

    body = assert_problem(
        buyer_client.post(PROFILES, data, format="json"), status=409, code="already_exists"
    )
    assert "already has a profile of this name" in body["detail"]


def test_another_organizations_profile_is_404_and_not_listed(buyer_client):
    theirs = SegmentationProfile.objects.create(
        organization=OrganizationFactory(), name="Theirs", method="connection"
    )

    assert_problem(
        buyer_client.get(f"{PROFILES}{theirs.pk}/"), status=404, code="profile_not_found"
    )
    assert buyer_client.get(PROFILES).json()["count"] == 0


def test_profile_create_replays_with_its_idempotency_key(buyer_client):
    data = {"name": "Once", "method": "connection"}
    headers = {"Idempotency-Key": "profile-once"}

    first = buyer_client.post(PROFILES, data, format="json", headers=headers)
    second = buyer_client.post(PROFILES, data, format="json", headers=headers)

    assert first.status_code == second.status_code == 201
    assert second["Idempotent-Replayed"] == "true"
    assert SegmentationProfile.objects.count() == 1
