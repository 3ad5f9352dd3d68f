"""A worker killed with SIGKILL in the middle of a job: another worker finishes it, and the
output is byte for byte what an uninterrupted run gives, with nothing lost or counted twice.

Real `manage.py worker` processes on the test database and a private queue; the rows are
committed for them (`transaction=True`). The block's max rate paces the job over several
seconds, so the kill lands while segments are being processed."""

import hashlib
import os
import signal
from pathlib import Path

import pytest

from segmentation import services
from segmentation.capture import capture_open, capture_writer
from segmentation.jobfiles import job_dir
from segmentation.models import Job, JobStatus, UsageRecord, WorkItem, WorkItemStatus
from segmentation.processing import pipeline_build, recipient_key
from tests.captures import CAPTURES_DIR
from tests.factories import LeaseFactory, OfferFactory, member_of
from tests.support.processes import kill, manage_start, wait_for
from tests.support.queues import private_queue_close, private_queue_open

pytestmark = pytest.mark.django_db(transaction=True)

PIPELINE = [{"service": "anonymize-ip"}, {"service": "strip-payload", "keep_bytes": 8}]


@pytest.fixture
def queue(settings):
    private = private_queue_open(settings)
    yield private
    private_queue_close(private)


def _worker_start(queue, log: Path, storage: Path):
    # a short task lease: the job's task in a killed worker is taken up again within seconds
    return manage_start(
        queue.name,
        log,
        "worker",
        "--queue",
        queue.name,
        TASK_LEASE_SECONDS="2",
        JOB_STORAGE_DIR=str(storage),
    )


def _expected_output(source: Path, destination: Path, organization_id: int) -> bytes:
    """The pipeline over the whole capture in one pass: what any split must assemble to."""
    run = pipeline_build(PIPELINE, recipient_key=recipient_key(organization_id))
    with capture_open(source) as reader, capture_writer(destination, like=reader) as writer:
        for packet in run(reader):
            writer.write(packet)
    return destination.read_bytes()


def _job(pk) -> Job:
    return Job.objects.get(pk=pk)


def test_a_job_survives_its_worker_being_killed_mid_way(queue, settings, tmp_path):
    storage = settings.JOB_STORAGE_DIR
    # 2.9 MB at 3 Mbit/s: about 8 s of paced processing over 6 segments
    lease = LeaseFactory(block__max_rate_mbps=3, block__min_rate_mbps=1)
    for service in ("segmentation", "anonymize-ip", "strip-payload"):
        OfferFactory(provider=lease.block.provider, service=service)
    source = CAPTURES_DIR / "many-protocols.pcap"
    data = source.read_bytes()
    expected = _expected_output(source, tmp_path / "expected.pcap", lease.winner_id)
    assert expected != data

    job = services.job_submit(
        organization=lease.winner,
        user=member_of(lease.winner),
        lease_id=lease.pk,
        chunks=[data],
        size=len(data),
        input_name="many-protocols.pcap",
        spec=services.JobSpec(method="round-robin", param="6", pipeline=PIPELINE),
    )
    first = second = None
    try:
        first = _worker_start(queue, tmp_path / "worker-1.log", storage)
        wait_for(
            lambda: (
                2 <= _job(job.pk).items_done < 6
                and WorkItem.objects.filter(job_id=job.pk, status=WorkItemStatus.RUNNING).exists()
            ),
            what="two segments done by the first worker and a third under way",
            process=first,
            log=tmp_path / "worker-1.log",
        )
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
        killed_at = _job(job.pk)
        assert killed_at.status == JobStatus.PROCESSING
        assert killed_at.items.filter(status=WorkItemStatus.RUNNING).exists()

        second = _worker_start(queue, tmp_path / "worker-2.log", storage)
        wait_for(
            lambda: _job(job.pk).ended,
            what="the end of the job in the second worker",
            process=second,
            log=tmp_path / "worker-2.log",
            seconds=120,
        )
    finally:
        kill(first, second)

    job = _job(job.pk)
    assert job.status == JobStatus.SUCCEEDED, job.failure_reason
    output = (job_dir(job.pk) / "output.pcap").read_bytes()
    assert output == expected
    assert job.output_sha256 == hashlib.sha256(expected).hexdigest()
    # every segment metered once, none twice; one item was run again after the kill
    usage = UsageRecord.objects.filter(job=job)
    assert usage.count() == job.items_total == 6
    assert sum(record.packets for record in usage) == job.packets_total
    assert max(item.attempts for item in job.items.all()) == 2
    assert job.items_done == 6 and job.packets_done == job.packets_total
