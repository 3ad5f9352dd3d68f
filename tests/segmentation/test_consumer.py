"""The job page's websocket, driven through the whole ASGI application (origin check, session
authentication, routing) with Channels' WebsocketCommunicator: a snapshot on connect, the
changes the services publish after their commits, and nothing for anyone else."""

import uuid

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from marketplace.asgi import application
from marketplace.models import Organization
from providers.models import WorkLocation
from segmentation import services
from segmentation.live import EVENT_HANDLER, job_group_name
from segmentation.models import Job, WorkItem, WorkItemStatus
from segmentation.selectors import job_progress
from segmentation.services import JobSpec
from tests.captures import CAPTURES_DIR
from tests.factories import PASSWORD, LeaseFactory, OrganizationFactory, member_of

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

ORIGIN = b"http://testserver"
TIMEOUT = 5
CAPTURE = CAPTURES_DIR / "tls.pcap"


@pytest.fixture(autouse=True)
def _jobs_here(settings, tmp_path, monkeypatch):
    """Jobs' files in a folder of the test's own; their tasks are not queued (the test calls
    the services the tasks would); live events under a channel prefix of the test's own, so
    that on a shared Redis no other run's job-<id> group reaches these watchers."""
    settings.JOB_STORAGE_DIR = tmp_path / "jobs"
    monkeypatch.setattr(services, "_job_advance_enqueue", lambda job_id: None)
    monkeypatch.setattr(services, "_work_item_run_enqueue", lambda item_id: None)
    layers = {alias: dict(layer) for alias, layer in settings.CHANNEL_LAYERS.items()}
    for layer in layers.values():
        if "CONFIG" in layer:
            layer["CONFIG"] = {**layer["CONFIG"], "prefix": f"sx-test-{uuid.uuid4().hex[:12]}"}
    settings.CHANNEL_LAYERS = layers


@pytest.fixture
def job(db):
    lease = LeaseFactory()
    return services.job_submit(
        organization=lease.winner,
        user=None,
        lease_id=lease.pk,
        chunks=[CAPTURE.read_bytes()],
        size=None,
        input_name="tls.pcap",
        spec=JobSpec("packet-count", "20"),
    )


def _session_cookie(user) -> str:
    client = Client()
    assert client.login(email=user.email, password=PASSWORD)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


async def _watch(job_id: int, user=None) -> tuple[WebsocketCommunicator, bool]:
    headers = [(b"origin", ORIGIN)]
    if user is not None:
        session = await database_sync_to_async(_session_cookie)(user)
        headers.append((b"cookie", f"{settings.SESSION_COOKIE_NAME}={session}".encode()))
    communicator = WebsocketCommunicator(application, f"/ws/jobs/{job_id}/", headers=headers)
    connected, _ = await communicator.connect(timeout=TIMEOUT)
    return communicator, connected


async def _receive(communicator) -> dict:
    return await communicator.receive_json_from(timeout=TIMEOUT)


@database_sync_to_async
def _member(organization_id: int):
    return member_of(Organization.objects.get(pk=organization_id))


@database_sync_to_async
def _progress(job_id: int) -> dict:
    return job_progress(Job.objects.get(pk=job_id))


@database_sync_to_async
def _exchange_items_run(job_id: int) -> int:
    items = list(
        WorkItem.objects.filter(
            job_id=job_id, status=WorkItemStatus.PENDING, location=WorkLocation.EXCHANGE
        ).values_list("pk", flat=True)
    )
    for item_id in items:
        services.work_item_run(item_id=item_id)
    return len(items)


advance = database_sync_to_async(services.job_advance)


async def test_a_member_gets_the_jobs_progress_on_connect(job, async_db_connections_closed):
    user = await _member(job.organization_id)

    communicator, connected = await _watch(job.pk, user)

    assert connected
    message = await _receive(communicator)
    assert message == {"type": "progress", "progress": await _progress(job.pk)}
    assert message["progress"]["status"] == "queued"
    assert message["progress"]["output_url"] is None
    await communicator.disconnect()


@pytest.mark.parametrize("who", ["anonymous", "stranger", "no_such_job"])
async def test_anyone_but_a_member_is_closed_with_4403(job, who, async_db_connections_closed):
    if who == "anonymous":
        user, job_id = None, job.pk
    elif who == "stranger":
        user, job_id = await _member((await _organization()).pk), job.pk
    else:
        user, job_id = await _member(job.organization_id), job.pk + 1000

    communicator, connected = await _watch(job_id, user)

    assert connected  # accepted, then closed: the browser sees the code and stops retrying
    assert await communicator.receive_output(timeout=TIMEOUT) == {
        "type": "websocket.close",
        "code": 4403,
    }
    await communicator.wait()


@database_sync_to_async
def _organization():
    return OrganizationFactory()


async def test_every_change_the_services_publish_reaches_the_watcher_in_order(
    job, async_db_connections_closed
):
    communicator, _ = await _watch(job.pk, await _member(job.organization_id))
    snapshot = await _receive(communicator)

    await advance(job_id=job.pk)  # the split: splitting, then processing
    ran = await _exchange_items_run(job.pk)
    await advance(job_id=job.pk)  # the assemblage: assembling, then succeeded

    received = []
    while not received or received[-1]["status"] != "succeeded":
        message = await _receive(communicator)
        assert message["type"] == "progress"
        received.append(message["progress"])
    statuses = [progress["status"] for progress in received]
    assert statuses[:2] == ["splitting", "processing"]
    assert statuses[-2:] == ["assembling", "succeeded"]
    assert statuses.count("processing") == 1 + ran  # the split, then each item done
    seqs = [progress["seq"] for progress in received]
    assert (
        seqs == sorted(seqs)
        and len(set(seqs)) == len(seqs)
        and seqs[0] > snapshot["progress"]["seq"]
    )
    final = received[-1]
    assert final == await _progress(job.pk)
    assert final["percent"] == 100 and final["items_done"] == final["items_total"] == ran
    assert final["output_url"] == f"/jobs/{job.pk}/output/"
    await communicator.disconnect()


async def test_a_failure_reaches_the_watcher_with_its_reason(job, async_db_connections_closed):
    communicator, _ = await _watch(job.pk, await _member(job.organization_id))
    await _receive(communicator)

    await database_sync_to_async(services.job_fail)(
        job_id=job.pk, code="test_stop", reason="Stopped by the test."
    )

    progress = (await _receive(communicator))["progress"]
    assert (progress["status"], progress["failure_reason"]) == ("failed", "Stopped by the test.")
    await communicator.disconnect()


async def test_an_event_older_than_the_last_sent_is_not_relayed(job, async_db_connections_closed):
    communicator, _ = await _watch(job.pk, await _member(job.organization_id))
    snapshot = (await _receive(communicator))["progress"]
    layer = get_channel_layer()

    newer = {**snapshot, "seq": snapshot["seq"] + 2, "status": "splitting"}
    older = {**snapshot, "seq": snapshot["seq"] + 1, "status": "queued"}
    await layer.group_send(job_group_name(job.pk), {"type": EVENT_HANDLER, "progress": newer})
    await layer.group_send(job_group_name(job.pk), {"type": EVENT_HANDLER, "progress": older})

    assert (await _receive(communicator))["progress"] == newer
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()
