"""A job's live progress in Chromium: a buyer uploads a capture on the new job form, and the
job page's bar, figures and status follow the job over the websocket, without a reload, to
Succeeded, when the download links appear; the downloaded output is the input (no pipeline).

The real server runs in a process of its own (`manage.py serve`, daphne) on the test
database, with the test's private task queue (tests.support.settings): its embedded worker
runs the job on SQLite; with Redis a `manage.py worker` on that queue does. The lease's block
allows 1 Mbit/s, so the job is paced over a few seconds and the bar visibly moves."""

import time
import uuid

import pytest
from django.conf import settings as django_settings
from playwright.sync_api import expect

from segmentation.models import Job, JobStatus
from tests.captures import CAPTURES_DIR
from tests.factories import LeaseFactory, member_of
from tests.support.browser import page_signed_in
from tests.support.processes import manage_start, serve_start, stop
from tests.support.queues import private_queue_close, private_queue_open

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CAPTURE = CAPTURES_DIR / "sll.pcap"  # 459,870 bytes: about 3.7 s at 1 Mbit/s
SEGMENT_BYTES = "50000"  # about ten segments, each a step of the bar
UPLOAD_LIMIT = 1_000_000
TOO_LARGE = CAPTURES_DIR / "many-protocols.pcap"  # 2.9 MB
ON_REDIS_QUEUE = django_settings.TASK_BACKEND == "rq"


@pytest.fixture
def job_server(transactional_db, settings, tmp_path):
    """The server (and on Redis a worker) on the test database and a private task queue, with
    jobs' files in a folder of the test's own and live events under a prefix of its own."""
    private = private_queue_open(settings)
    env = {
        "JOB_STORAGE_DIR": str(tmp_path / "jobs"),
        "CHANNELS_PREFIX": f"sx-test-{uuid.uuid4().hex[:12]}",
        "JOB_UPLOAD_MAX_BYTES": str(UPLOAD_LIMIT),
    }
    server = worker = None
    try:
        if ON_REDIS_QUEUE:
            worker = manage_start(
                private.name, tmp_path / "worker.log", "worker", "--queue", private.name, **env
            )
        server, url = serve_start(private.name, tmp_path / "serve.log", **env)
        yield url
    finally:
        stop(server, worker)
        private_queue_close(private)


@pytest.fixture
def chromium(job_server, chromium_browser):
    """Debian's Chromium (closed before the server stops)."""
    return chromium_browser


# Every percentage and status the page shows, recorded as the page changes them.
RECORD_CHANGES = """() => {
  window.seenPercents = [];
  window.seenStatuses = [];
  const percent = document.querySelector("[data-live=percent]");
  const status = document.querySelector("[data-live=status]");
  window.seenPercents.push(percent.textContent);
  window.seenStatuses.push(status.textContent);
  new MutationObserver(() => window.seenPercents.push(percent.textContent))
    .observe(percent, {childList: true, characterData: true, subtree: true});
  new MutationObserver(() => window.seenStatuses.push(status.textContent))
    .observe(status, {childList: true, characterData: true, subtree: true});
  window.stillTheSamePage = true;
}"""


def _signed_in_on_new_job(browser, server: str, user, **context_options):
    return page_signed_in(browser, server, user, "/jobs/new/", **context_options)


def test_the_job_page_follows_an_uploaded_capture_live_to_its_downloads(job_server, chromium):
    lease = LeaseFactory(block__max_rate_mbps=1, block__min_rate_mbps=1)
    page = _signed_in_on_new_job(
        chromium, job_server, member_of(lease.winner), accept_downloads=True
    )

    page.get_by_label("Lease", exact=True).select_option(str(lease.pk))
    page.get_by_label("Capture file").set_input_files(CAPTURE)
    page.get_by_label("Split method").select_option("file-size")
    page.get_by_label("Parameter", exact=True).fill(SEGMENT_BYTES)
    page.get_by_role("button", name="Upload and start the job").click()

    expect(page).to_have_url(f"{job_server}/jobs/{Job.objects.get().pk}/")
    page.evaluate(RECORD_CHANGES)
    expect(page.locator("#job-live")).to_have_attribute("data-connection", "live", timeout=10000)
    status = page.get_by_test_id("job-status")
    expect(status).to_have_text("Succeeded", timeout=60000)

    job = Job.objects.get()
    assert job.status == JobStatus.SUCCEEDED
    assert page.evaluate("window.stillTheSamePage") is True  # no reload
    expect(page.get_by_test_id("job-percent")).to_have_text("100%")
    assert page.get_by_test_id("job-progress").evaluate("bar => bar.value") == 100
    total = job.items_total
    expect(page.get_by_test_id("job-figures")).to_have_text(
        f"{total} of {total} segments, {job.packets_total:,} of {job.packets_total:,} packets, "
        f"{job.bytes_total:,} of {job.bytes_total:,} bytes"
    )
    percents = [int(text.rstrip("%")) for text in page.evaluate("window.seenPercents")]
    assert len([p for p in set(percents) if 0 < p < 100]) >= 2, percents  # it moved
    assert percents == sorted(percents), percents  # and never back
    assert "Processing" in page.evaluate("window.seenStatuses")
    # The details were read again: every work item done.
    expect(page.locator("[data-testid=work-items] tbody tr")).to_have_count(total)
    expect(page.locator("[data-testid=work-items] tbody")).not_to_contain_text("Waiting")

    output_link = page.get_by_test_id("output-link")
    expect(output_link).to_be_visible()
    expect(page.get_by_test_id("manifest-link")).to_be_visible()
    with page.expect_download() as download:
        output_link.click()
    assert download.value.suggested_filename == "sll-segmented.pcap"
    assert download.value.path().read_bytes() == CAPTURE.read_bytes()
    manifest_url = job_server + page.get_by_test_id("manifest-link").get_attribute("href")
    manifest = page.request.get(manifest_url)
    assert manifest.ok and manifest.json()["output"]["sha256"] == job.output_sha256


def test_a_capture_over_the_limit_is_stopped_in_the_browser_and_without_javascript_by_the_server(
    job_server, chromium
):
    lease = LeaseFactory()
    user = member_of(lease.winner)
    page = _signed_in_on_new_job(chromium, job_server, user)
    page.get_by_label("Lease", exact=True).select_option(str(lease.pk))
    page.get_by_label("Capture file").set_input_files(TOO_LARGE)

    page.get_by_role("button", name="Upload and start the job").click()

    capture = page.get_by_label("Capture file")
    assert "over the limit of 1,000,000 bytes" in capture.evaluate(
        "input => input.validationMessage"
    )
    expect(page).to_have_url(f"{job_server}/jobs/new/")  # nothing was sent

    plain = _signed_in_on_new_job(chromium, job_server, user, java_script_enabled=False)
    plain.get_by_label("Lease", exact=True).select_option(str(lease.pk))
    plain.get_by_label("Capture file").set_input_files(TOO_LARGE)
    plain.get_by_role("button", name="Upload and start the job").click()

    expect(plain.get_by_test_id("form-error")).to_contain_text(
        "is over the limit of 1,000,000 bytes for a capture"
    )
    assert not Job.objects.exists()


def test_without_javascript_the_form_keeps_the_input_and_the_job_page_its_state_at_load(
    job_server, chromium
):
    lease = LeaseFactory(block__max_rate_mbps=1, block__min_rate_mbps=1)  # a job of seconds
    page = _signed_in_on_new_job(
        chromium, job_server, member_of(lease.winner), java_script_enabled=False
    )
    page.get_by_label("Lease", exact=True).select_option(str(lease.pk))
    page.get_by_label("Capture file").set_input_files(CAPTURE)
    page.get_by_label("BPF filter").fill("tcp port")
    page.get_by_role("button", name="Upload and start the job").click()

    expect(page.locator(".field.has-error")).to_contain_text("BPF filter:")
    expect(page.get_by_label("BPF filter")).to_have_value("tcp port")
    expect(page.get_by_label("Lease", exact=True)).to_have_value(str(lease.pk))

    page.get_by_label("BPF filter").fill("")
    page.get_by_label("Capture file").set_input_files(CAPTURE)
    page.get_by_role("button", name="Upload and start the job").click()
    job = Job.objects.exclude(status=JobStatus.FAILED).get()
    expect(page).to_have_url(f"{job_server}/jobs/{job.pk}/")
    expect(page.get_by_test_id("job-status")).not_to_have_text("Succeeded")
    deadline = time.monotonic() + 60
    while not Job.objects.filter(pk=job.pk, status=JobStatus.SUCCEEDED).exists():
        assert time.monotonic() < deadline, "the job did not succeed within 60 s"
        time.sleep(0.2)
    expect(page.get_by_test_id("job-status")).not_to_have_text("Succeeded")  # as loaded
    expect(page.get_by_test_id("output-link")).to_be_hidden()

    page.reload()

    expect(page.get_by_test_id("job-status")).to_have_text("Succeeded")
    expect(page.get_by_test_id("job-percent")).to_have_text("100%")
    expect(page.get_by_test_id("output-link")).to_be_visible()
