"""Durable tasks: a lease while they run, and recovery when their worker dies.

The tests run on whichever backend the settings choose (the database, or Redis Queue with
REDIS_URL), each on a private queue. Workers that must be killed are real `manage.py worker`
processes; the database they use is the test database, so its rows are committed for them
(`transaction=True`).
"""

import dataclasses
import os
import signal
import subprocess
import urllib.error
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.tasks import TaskResultStatus
from django.utils import timezone

from marketplace import taskqueue
from marketplace.models import IdempotencyRecord, TaskLease
from marketplace.taskqueue import (
    periodic,
    periodic_run_due,
    task_leases_recover,
    task_worker_build,
)
from marketplace.tasks import idempotency_records_prune
from tests.factories import OrganizationFactory
from tests.support.processes import kill, manage_start, serve_start, wait_for
from tests.support.queues import PrivateQueue, private_queue_close, private_queue_open
from tests.support.tasks import hold_file_append, lease_probe

pytestmark = pytest.mark.django_db(transaction=True)

ON_REDIS_QUEUE = settings.TASK_BACKEND == "rq"


@pytest.fixture
def queue(settings):
    """A queue of this test's own, in this process's settings and in those of the processes
    it starts (tests.support.settings)."""
    private = private_queue_open(settings)
    yield private
    private_queue_close(private)


def _work_until_idle(queue: PrivateQueue) -> None:
    """Run this process's worker on the queue until no task is ready."""
    task_worker_build(queue_names=[queue.name], burst=True, embedded=True).run()


def _claim_for_a_worker_that_dies(result) -> None:
    """Leave the task as a worker leaves it when killed: taken and running."""
    if ON_REDIS_QUEUE:
        import django_rq
        from django_tasks_rq import Job
        from rq.executions import Execution

        redis = django_rq.get_connection()
        job = Job.fetch(result.id, connection=redis)
        django_rq.get_queue(job.origin, job_class=Job).remove(job)
        worker_name = f"dead-worker-{result.id}"  # its Redis keys go with the job's
        with redis.pipeline() as pipeline:
            Execution.create(job, ttl=3600, pipeline=pipeline, worker_name=worker_name)
            job.prepare_for_execution(worker_name, pipeline)
            pipeline.execute()
    else:
        from django_tasks_db.models import DBTaskResult

        DBTaskResult.objects.get(pk=result.id).claim("dead-worker")
    result.refresh()
    assert result.status == TaskResultStatus.RUNNING


def _lease_of_dead_worker(result, *, expires_in: timedelta, attempts: int = 0) -> TaskLease:
    return TaskLease.objects.create(
        result_id=result.id,
        backend=result.backend,
        task_path=result.task.module_path,
        worker="dead-worker",
        attempts=attempts,
        expires_at=timezone.now() + expires_in,
    )


# --- durable_task -------------------------------------------------------------------------------


def test_running_task_holds_a_lease_that_is_released_when_it_finishes(queue):
    result = queue.enqueue(lease_probe)
    started_after = timezone.now()

    _work_until_idle(queue)

    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    held = result.return_value["first"]
    assert held is not None, "no lease while the task ran"
    lease_period = timedelta(seconds=settings.TASK_LEASE_SECONDS)
    assert datetime.fromisoformat(held["expires_at"]) >= started_after + lease_period
    assert held["worker"]
    assert not TaskLease.objects.exists()


def test_lease_is_renewed_while_the_task_runs(queue, settings):
    settings.TASK_LEASE_SECONDS = 0.6  # renewed every 0.2 s
    result = queue.enqueue(lease_probe, pause_seconds=0.8)

    _work_until_idle(queue)

    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    first, second = result.return_value["first"], result.return_value["second"]
    assert second is not None, "the lease was lost while the task ran"
    assert second["expires_at"] > first["expires_at"]
    assert not TaskLease.objects.exists()


def test_lease_is_released_when_the_task_fails(queue):
    result = queue.enqueue(hold_file_append, "/nonexistent-dir/log")

    _work_until_idle(queue)

    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert not TaskLease.objects.exists()


def test_calling_a_durable_task_directly_runs_it_without_a_lease(tmp_path):
    log = tmp_path / "log"

    assert hold_file_append.call(str(log)) == os.getpid()
    assert log.read_text() == f"start {os.getpid()}\ndone {os.getpid()}\n"
    assert not TaskLease.objects.exists()


# --- task_leases_recover ------------------------------------------------------------------------


def test_task_whose_lease_expired_is_requeued_and_then_finished(queue, tmp_path):
    log = tmp_path / "log"
    result = queue.enqueue(hold_file_append, str(log))
    _claim_for_a_worker_that_dies(result)
    _lease_of_dead_worker(result, expires_in=timedelta(seconds=-1))

    assert task_leases_recover() == {result.id: "requeued"}

    result.refresh()
    assert result.status == TaskResultStatus.READY
    lease = TaskLease.objects.get(result_id=result.id)
    assert (lease.attempts, lease.expires_at, lease.worker) == (1, None, "")
    _work_until_idle(queue)
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert log.read_text().endswith(f"done {os.getpid()}\n")
    assert not TaskLease.objects.exists()


def test_task_whose_lease_is_still_live_is_left_running(queue, tmp_path):
    result = queue.enqueue(hold_file_append, str(tmp_path / "log"))
    _claim_for_a_worker_that_dies(result)
    lease = _lease_of_dead_worker(result, expires_in=timedelta(seconds=30))

    assert task_leases_recover() == {}

    result.refresh()
    assert result.status == TaskResultStatus.RUNNING
    assert TaskLease.objects.get() == lease
    assert TaskLease.objects.get().expires_at == lease.expires_at


def test_task_requeued_max_attempts_times_is_marked_failed(queue, settings, tmp_path):
    settings.TASK_MAX_ATTEMPTS = 2
    result = queue.enqueue(hold_file_append, str(tmp_path / "log"))
    _claim_for_a_worker_that_dies(result)
    _lease_of_dead_worker(result, expires_in=timedelta(seconds=-1), attempts=2)

    assert task_leases_recover() == {result.id: "failed"}

    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert result.errors[-1].exception_class_path == "marketplace.taskqueue.TaskLeaseExpired"
    assert not TaskLease.objects.exists()


def test_expired_lease_of_a_finished_task_is_dropped(queue, tmp_path):
    result = queue.enqueue(hold_file_append, str(tmp_path / "log"))
    _work_until_idle(queue)
    _lease_of_dead_worker(result, expires_in=timedelta(seconds=-1))

    assert task_leases_recover() == {result.id: "dropped"}

    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert not TaskLease.objects.exists()


# --- periodic jobs ------------------------------------------------------------------------------


@pytest.fixture
def periodic_jobs(monkeypatch):
    """The registry as it is, restored after the test."""
    jobs = {name: dataclasses.replace(job) for name, job in taskqueue._periodic_jobs.items()}
    monkeypatch.setattr(taskqueue, "_periodic_jobs", jobs)
    return jobs


def test_periodic_jobs_run_when_due_and_a_failing_one_does_not_stop_the_others(periodic_jobs):
    calls = []

    @periodic(every_seconds=3600)
    def broken():
        raise RuntimeError("broken periodic job")

    @periodic(every_seconds=3600)
    def counted():
        calls.append(1)

    first = periodic_run_due()
    second = periodic_run_due()

    broken_name, counted_name = (f"{f.__module__}.{f.__qualname__}" for f in (broken, counted))
    assert {"marketplace.taskqueue.task_leases_recover", broken_name, counted_name} <= set(first)
    assert calls == [1]
    assert counted_name not in second


# --- the kernel's tasks -------------------------------------------------------------------------


def test_idempotency_records_past_the_replay_window_are_pruned(queue):
    organization = OrganizationFactory()
    for key in ("old", "recent"):
        IdempotencyRecord.objects.create(
            organization=organization, key=key, method="POST", path="/api/v1/x", request_hash="h"
        )
    IdempotencyRecord.objects.filter(key="old").update(
        created_at=timezone.now() - timedelta(hours=25)
    )
    result = queue.enqueue(idempotency_records_prune)

    _work_until_idle(queue)

    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 1
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["recent"]


# --- real processes -----------------------------------------------------------------------------


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _status(result) -> TaskResultStatus:
    result.refresh()
    return result.status


def _worker_start(queue: PrivateQueue, log: Path) -> subprocess.Popen:
    # A short lease: the task of a killed worker is recovered within seconds.
    return manage_start(queue.name, log, "worker", "--queue", queue.name, TASK_LEASE_SECONDS="2")


def test_task_of_a_killed_worker_is_finished_by_the_next_worker(queue, tmp_path):
    log = tmp_path / "task.log"
    hold = tmp_path / "task.log.hold"
    hold.touch()
    result = queue.enqueue(hold_file_append, str(log))
    first = second = None
    try:
        first = _worker_start(queue, tmp_path / "worker-1.log")
        wait_for(
            lambda: f"start {first.pid}" in _lines(log),
            what="start of the task in the first worker",
            process=first,
            log=tmp_path / "worker-1.log",
        )

        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
        assert _status(result) == TaskResultStatus.RUNNING
        assert TaskLease.objects.filter(result_id=result.id).exists()
        hold.unlink()
        second = _worker_start(queue, tmp_path / "worker-2.log")
        wait_for(
            lambda: _status(result) == TaskResultStatus.SUCCESSFUL,
            what="success of the task in the second worker",
            process=second,
            log=tmp_path / "worker-2.log",
        )

        assert _lines(log) == [f"start {first.pid}", f"start {second.pid}", f"done {second.pid}"]
        assert hold_file_append.get_result(result.id).return_value == second.pid
        assert not TaskLease.objects.exists()
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=15) == 0, (tmp_path / "worker-2.log").read_text()
    finally:
        kill(first, second)


def _http_get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_serve_answers_http_and_stops_on_sigterm(queue, tmp_path):
    process = None
    try:
        process, url = serve_start(queue.name, tmp_path / "serve.log")

        assert _http_get(url + "/") == 200, (tmp_path / "serve.log").read_text()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0, (tmp_path / "serve.log").read_text()
    finally:
        kill(process)


@pytest.mark.skipif(
    ON_REDIS_QUEUE,
    reason="with Redis the server embeds no worker (EMBEDDED_WORKER is off): "
    "`manage.py worker` processes run the tasks",
)
def test_task_enqueued_while_serve_runs_is_run_by_its_embedded_worker(queue, tmp_path):
    log = tmp_path / "task.log"
    process = None
    try:
        process, _url = serve_start(queue.name, tmp_path / "serve.log")

        result = queue.enqueue(hold_file_append, str(log))

        wait_for(
            lambda: _status(result) == TaskResultStatus.SUCCESSFUL,
            what="success of the task in the server's embedded worker",
            process=process,
            log=tmp_path / "serve.log",
        )
        assert _lines(log) == [f"start {process.pid}", f"done {process.pid}"]
    finally:
        kill(process)
