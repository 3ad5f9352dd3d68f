"""The job pages: the list, the new job form with its capture upload and every way it refuses
input, a job's page (state, work items, usage, downloads), the profiles page, and isolation
between organizations. Jobs run in this process: the test calls the services the workers'
tasks call (`job_advance`, `work_item_run`)."""

from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.http.multipartparser import MultiPartParser
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from auctions.models import Lease
from providers.models import ProviderProfile, WorkLocation
from segmentation import services
from segmentation.models import Job, JobStatus, SegmentationProfile, WorkItem, WorkItemStatus
from segmentation.services import JobSpec, segmentation_profile_save
from segmentation.uploads import MULTIPART_SLACK_BYTES
from tests.captures import CAPTURES_DIR
from tests.factories import (
    PASSWORD,
    LeaseFactory,
    OfferFactory,
    OrganizationFactory,
    UserFactory,
    VerifiedProviderFactory,
    member_of,
)

pytestmark = pytest.mark.django_db

CAPTURE = CAPTURES_DIR / "tls.pcap"
NEW = reverse("job_new")


@pytest.fixture(autouse=True)
def _job_storage(settings, tmp_path):
    settings.JOB_STORAGE_DIR = tmp_path / "jobs"


@pytest.fixture
def lease():
    return LeaseFactory()


@pytest.fixture
def holder(lease, login_client):
    """A signed-in member of the lease holder."""
    return login_client(member_of(lease.winner))


def _post(client, lease, *, capture=CAPTURE, content=None, name=None, **fields):
    data = {"lease": lease.pk, "method": "packet-count", "param": "10", "pipeline": "", **fields}
    if content is not None:
        data["capture"] = SimpleUploadedFile(name or "capture.pcap", content)
        return client.post(NEW, data)
    with capture.open("rb") as file:
        data["capture"] = file
        return client.post(NEW, data)


def _run(job_id: int) -> Job:
    """Drive a job as the workers would, until it ends."""
    for _ in range(20):
        services.job_advance(job_id=job_id)
        for item_id in WorkItem.objects.filter(
            job_id=job_id, status=WorkItemStatus.PENDING, location=WorkLocation.EXCHANGE
        ).values_list("pk", flat=True):
            services.work_item_run(item_id=item_id)
        job = Job.objects.get(pk=job_id)
        if job.ended:
            return job
    pytest.fail(f"job {job_id} did not end: {Job.objects.get(pk=job_id).status}")


def _download(client, url) -> bytes:
    response = client.get(url)
    assert response.status_code == 200
    return b"".join(response.streaming_content)


def _text(response) -> str:
    return response.content.decode()


# --- The list -------------------------------------------------------------------------------


def test_the_pages_ask_an_anonymous_visitor_to_log_in(client, lease):
    for url in (reverse("job_list"), NEW, reverse("profile_list")):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))


def test_the_nav_links_jobs_for_a_signed_in_user(holder, client):
    assert f'href="{reverse("job_list")}"' in _text(holder.get(reverse("dashboard")))
    assert f'href="{reverse("job_list")}"' not in _text(client.get(reverse("home")))


def test_the_list_shows_the_organizations_jobs_with_status_lease_and_progress(holder, lease):
    response = _post(holder, lease)
    job = Job.objects.get()
    foreign = LeaseFactory()
    services.job_submit(
        organization=foreign.winner,
        user=None,
        lease_id=foreign.pk,
        chunks=[CAPTURE.read_bytes()],
        size=None,
        input_name="theirs.pcap",
        spec=JobSpec("connection"),
    )

    response = holder.get(reverse("job_list"))

    text = _text(response)
    assert [listed.pk for listed in response.context["page"]] == [job.pk]
    assert "tls.pcap" in text and "Queued" in text
    assert f"Lease {lease.pk}" in text and lease.block.provider.legal_name in text
    assert "theirs.pcap" not in text
    assert f'href="{NEW}"' in text


def test_a_user_without_organization_is_told_to_create_one(login_client):
    client = login_client(UserFactory())
    for url in (reverse("job_list"), NEW, reverse("profile_list")):
        response = client.get(url)
        assert response.status_code == 200
        assert "Create an organization" in _text(response)


# --- A job from the form to its downloads ---------------------------------------------------


def test_a_capture_uploaded_through_the_form_runs_and_its_output_equals_the_input(holder, lease):
    response = _post(holder, lease)

    job = Job.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("job_detail", args=[job.pk])
    page = holder.get(response["Location"])
    assert page.status_code == 200
    assert "Queued" in _text(page)
    assert 'data-testid="job-downloads" hidden' in _text(page)

    job = _run(job.pk)

    assert job.status == JobStatus.SUCCEEDED
    page = holder.get(reverse("job_detail", args=[job.pk]))
    text = _text(page)
    assert page.context["progress"]["status"] == "succeeded"
    assert "Succeeded" in text
    assert 'value="100"' in text
    packets = job.packets_total
    segments = job.items_total
    assert segments > 1
    assert (
        f"{segments} of {segments} segments, {packets:,} of {packets:,} packets, "
        f"{job.bytes_total:,} of {job.bytes_total:,} bytes"
    ) in text
    output_url = reverse("job_output", args=[job.pk])
    manifest_url = reverse("job_manifest", args=[job.pk])
    assert f'href="{output_url}"' in text and f'href="{manifest_url}"' in text
    assert 'data-testid="job-downloads" hidden' not in text
    items = list(page.context["items"])
    assert len(items) == segments and all(item.status == "done" for item in items)
    assert items[0].sha256_in[:12] in text
    assert lease.block.provider.legal_name in text
    usage = page.context["usage"]
    assert [(row["provider_id"], row["packets"]) for row in usage] == [
        (lease.block.provider_id, packets)
    ]
    assert _download(holder, output_url) == CAPTURE.read_bytes()
    assert b'"segments"' in _download(holder, manifest_url)


def test_a_saved_profile_chosen_on_the_form_gives_the_job_its_split(holder, lease):
    profile = segmentation_profile_save(
        organization=lease.winner,
        name="Per 25",
        spec=JobSpec("packet-count", "25", "", [{"service": "dedupe"}]),
    )
    OfferFactory(provider=lease.block.provider, service="dedupe")

    response = _post(holder, lease, profile=profile.pk, method="round-robin", param="3")

    assert response.status_code == 302
    job = Job.objects.get()
    assert (job.profile, job.method, job.param, job.pipeline) == (
        profile,
        "packet-count",
        "25",
        [{"service": "dedupe"}],
    )


def test_the_form_offers_only_leases_running_now(holder, lease):
    ended = LeaseFactory(winner=lease.winner)
    Lease.objects.filter(pk=ended.pk).update(ends_at=timezone.now() - timedelta(minutes=1))
    LeaseFactory()  # another organization's

    response = holder.get(NEW)

    choices = [value for value, _label in response.context["form"].fields["lease"].widget.choices]
    assert choices == ["", lease.pk]


def test_a_holder_without_a_running_lease_is_told_where_to_get_one(login_client):
    client = login_client(member_of(OrganizationFactory()))
    assert 'data-testid="no-lease"' in _text(client.get(NEW))


# --- Bad input through the form -------------------------------------------------------------


def _error_page(response, status=400) -> str:
    assert response.status_code == status
    return _text(response)


def test_a_file_that_is_not_a_capture_is_refused_and_the_failed_job_linked(holder, lease):
    response = _post(holder, lease, content=b"hello, this is text\n" * 10, name="notes.txt")

    text = _error_page(response)
    job = Job.objects.get()
    assert job.status == JobStatus.FAILED and job.failure_code == "not_a_capture"
    assert "notes.txt is not a packet capture (pcap or pcapng)" in text
    assert f'href="{reverse("job_detail", args=[job.pk])}"' in text
    assert response.context["form"].errors["capture"]


def test_an_empty_file_is_refused(holder, lease):
    text = _error_page(_post(holder, lease, content=b""))
    assert "The submitted file is empty." in text
    assert not Job.objects.exists()


def test_an_upload_announcing_more_than_the_limit_is_refused_before_its_body_is_read(
    holder, lease, settings, monkeypatch
):
    settings.JOB_UPLOAD_MAX_BYTES = 1000

    def parse(self):
        raise AssertionError("the body of a refused upload was parsed")

    monkeypatch.setattr(MultiPartParser, "parse", parse)
    big = b"\xd4\xc3\xb2\xa1" + b"\0" * (MULTIPART_SLACK_BYTES + 2000)

    response = _post(holder, lease, content=big)

    text = _error_page(response, 413)
    assert "over the limit of 1,000 bytes" in text
    assert not Job.objects.exists()


def test_an_upload_over_the_limit_within_the_envelope_slack_is_refused_by_size(
    holder, lease, settings
):
    settings.JOB_UPLOAD_MAX_BYTES = 1000

    text = _error_page(_post(holder, lease, content=CAPTURE.read_bytes()[:5000]))

    assert "over the upload limit of 1,000 bytes" in text
    assert Job.objects.get().failure_code == "upload_too_large"


def test_a_bad_bpf_filter_is_refused_and_everything_typed_stays(holder, lease):
    pipeline = '[{"service": "strip-payload", "keep_bytes": 0}]'

    response = _post(holder, lease, bpf_filter="tcp port", pipeline=pipeline, param="17")

    text = _error_page(response)
    form = response.context["form"]
    assert form.errors["bpf_filter"][0].startswith("BPF filter:")
    assert 'value="tcp port"' in text
    assert 'value="17"' in text
    assert "keep_bytes" in text  # the pipeline textarea keeps its text
    assert f'<option value="{lease.pk}" selected>' in text
    assert "choose the capture file again" in text


def test_a_pipeline_that_is_not_json_is_refused_without_recording_a_job(holder, lease):
    response = _post(holder, lease, pipeline='[{"service": "dedupe"')

    text = _error_page(response)
    assert "The pipeline is not valid JSON" in text
    assert "{&quot;service&quot;: &quot;dedupe&quot;" in text
    assert not Job.objects.exists()


def test_a_pipeline_that_is_not_a_list_is_refused(holder, lease):
    text = _error_page(_post(holder, lease, pipeline='{"service": "dedupe"}'))
    assert "The pipeline is a JSON list of steps" in text


def test_a_pipeline_with_an_unknown_service_is_refused_by_the_service(holder, lease):
    response = _post(holder, lease, pipeline='[{"service": "teleport"}]')

    _error_page(response)
    assert response.context["form"].errors["pipeline"][0].startswith("Processing pipeline:")
    assert Job.objects.get().failure_code == "invalid_pipeline"


def test_a_method_without_its_parameter_is_refused(holder, lease):
    response = _post(holder, lease, method="packet-count", param="")

    _error_page(response)
    assert "packet-count needs a parameter" in response.context["form"].errors["param"][0]


def test_an_ended_lease_is_refused_with_when_it_ended(holder, lease):
    Lease.objects.filter(pk=lease.pk).update(ends_at=timezone.now() - timedelta(minutes=5))

    response = _post(holder, lease)

    text = _error_page(response)
    assert f"Lease {lease.pk} ended at" in text
    assert Job.objects.get().failure_code == "lease_ended"


def test_another_organizations_lease_is_refused(holder):
    foreign = LeaseFactory()

    response = _post(holder, foreign)

    text = _error_page(response)
    message = f"Lease {foreign.pk} does not exist or does not belong to your organization"
    assert message in text
    failed = Job.objects.get()
    assert failed.lease is None
    page = holder.get(reverse("job_detail", args=[failed.pk]))
    assert page.status_code == 200 and message in _text(page) and "No lease" in _text(page)


def test_the_form_still_checks_the_csrf_token(lease):
    client = Client(enforce_csrf_checks=True)
    client.login(email=member_of(lease.winner).email, password=PASSWORD)

    response = _post(client, lease)

    assert response.status_code == 403
    assert not Job.objects.exists()


# --- A failed job's page --------------------------------------------------------------------


def test_a_failed_jobs_page_shows_the_reason_and_no_downloads(holder, lease):
    _post(holder, lease, bpf_filter="udp port 9")  # tls.pcap has no such packet
    job = _run(Job.objects.get().pk)

    text = _text(holder.get(reverse("job_detail", args=[job.pk])))

    assert job.status == JobStatus.FAILED
    assert "Failed" in text
    assert job.failure_reason in text
    assert 'data-testid="job-failure" role="alert">' in text  # not hidden
    assert 'data-testid="job-downloads" hidden' in text
    assert holder.get(reverse("job_output", args=[job.pk])).status_code == 404


# --- Isolation ------------------------------------------------------------------------------


def test_another_organizations_job_and_its_downloads_are_404(lease, login_client):
    owner = login_client(member_of(lease.winner))
    _post(owner, lease)
    job = _run(Job.objects.get().pk)
    stranger = login_client(member_of(OrganizationFactory()))

    for name in ("job_detail", "job_output", "job_manifest"):
        assert owner.get(reverse(name, args=[job.pk])).status_code == 200
        assert stranger.get(reverse(name, args=[job.pk])).status_code == 404
    assert stranger.get(reverse("job_detail", args=[job.pk + 1000])).status_code == 404


def test_a_member_acting_for_another_organization_does_not_see_the_job(lease, login_client):
    user = member_of(lease.winner)
    other = OrganizationFactory()
    member_of(other, user=user)
    client = login_client(user)
    _post(client, lease)
    job = Job.objects.get()
    client.post(reverse("organization_switch"), {"organization_id": other.pk, "next": "/"})

    assert client.get(reverse("job_detail", args=[job.pk])).status_code == 404
    assert list(client.get(reverse("job_list")).context["page"]) == []


# --- Profiles -------------------------------------------------------------------------------


def test_a_profile_created_on_the_profiles_page_is_listed_for_its_organization(holder, lease):
    preferred = VerifiedProviderFactory(legal_name="Anon Partners Ltd")
    blocked = VerifiedProviderFactory(legal_name="Blocked Carrier Ltd")
    OrganizationFactory()
    segmentation_profile_save(
        organization=LeaseFactory().winner, name="Theirs", spec=JobSpec("connection")
    )

    response = holder.post(
        reverse("profile_list"),
        {
            "name": "Web only",
            "method": "server-port",
            "param": "",
            "bpf_filter": "tcp port 443",
            "pipeline": '[{"service": "anonymize-ip"}]',
            "preferred_1": preferred.pk,
            "weight_1": "0.4",
            "blocked_providers": [blocked.pk],
            "min_provider_rating": "3.5",
            "cost_weight": "0.25",
            "billing_presentation": "per_provider",
        },
        follow=True,
    )

    profile = SegmentationProfile.objects.get(organization=lease.winner)
    assert (profile.name, profile.method, profile.bpf_filter) == (
        "Web only",
        "server-port",
        "tcp port 443",
    )
    assert profile.pipeline == [{"service": "anonymize-ip"}]
    assert profile.preferred_providers == [{"provider": preferred.pk, "weight": 0.4}]
    assert profile.blocked_providers == [blocked.pk]
    assert (profile.min_provider_rating, profile.cost_weight) == (3.5, 0.25)
    assert profile.billing_presentation == "per_provider"
    text = _text(response)
    assert "Web only" in text and "anonymize-ip" in text and "Anon Partners Ltd (0.4)" in text
    assert "Blocked Carrier Ltd" in text
    assert "Theirs" not in text
    assert profile.name in _text(holder.get(NEW))  # offered on the new job form


def test_profile_errors_are_shown_and_keep_the_input(holder, lease):
    segmentation_profile_save(organization=lease.winner, name="Taken", spec=JobSpec("connection"))
    fields = {"method": "connection", "param": "", "pipeline": ""}

    duplicate = holder.post(reverse("profile_list"), {"name": "Taken", **fields})
    bad_bpf = holder.post(
        reverse("profile_list"), {"name": "New", "bpf_filter": "port port", **fields}
    )
    bad_json = holder.post(reverse("profile_list"), {"name": "New", **fields, "pipeline": "[,"})

    assert "already has a profile of this name" in _error_page(duplicate)
    assert bad_bpf.context["form"].errors["bpf_filter"][0].startswith("BPF filter:")
    assert 'value="port port"' in _error_page(bad_bpf)
    assert "The pipeline is not valid JSON" in _error_page(bad_json)
    assert SegmentationProfile.objects.count() == 1


# --- Providers: where their work runs -------------------------------------------------------


def test_a_provider_chooses_in_the_console_where_its_processing_runs(login_client):
    provider = VerifiedProviderFactory()
    other = VerifiedProviderFactory()
    client = login_client(member_of(provider.organization))
    change = reverse("console:providers_providerprofile_change", args=[provider.pk])

    index = client.get(reverse("console:index"))
    assert "Your provider profile" in _text(index)
    listing = client.get(reverse("console:providers_providerprofile_changelist"))
    assert listing.status_code == 302 and listing["Location"] == change
    assert "work_location" in _text(client.get(change))
    response = client.post(change, {"work_location": WorkLocation.PARTNER})

    assert response.status_code == 302
    provider.refresh_from_db()
    assert provider.work_location == WorkLocation.PARTNER
    foreign = reverse("console:providers_providerprofile_change", args=[other.pk])
    assert client.post(foreign, {"work_location": WorkLocation.PARTNER}).status_code == 404
    assert ProviderProfile.objects.get(pk=other.pk).work_location == WorkLocation.EXCHANGE
