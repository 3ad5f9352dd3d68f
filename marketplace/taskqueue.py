"""The task system: durable tasks, their leases, lease recovery, periodic jobs and the worker loop.

Tasks go through Django's `django.tasks` API. The embedded default stores them with
django-tasks-db and runs a worker inside the server process; with Redis they go to Redis Queue
and separate `manage.py worker` processes run them. Neither backend re-runs a task whose worker
was killed, so a task declared with `durable_task` holds a `TaskLease` while it runs, renewed by
a heartbeat. `task_leases_recover`, the first periodic job, puts a task whose lease ran out back
on its queue (tasks are idempotent) and gives up after `TASK_MAX_ATTEMPTS` re-queues.

Periodic jobs run in every worker process (and in the server when its worker is embedded), so a
periodic job must be safe to run in several processes at once: lock the rows it changes with
`select_for_update(skip_locked=True)` and re-check their state under the lock.
"""

import functools
import inspect
import logging
import os
import secrets
import socket
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from importlib import import_module

from django.apps import apps
from django.conf import settings
from django.db import DatabaseError, close_old_connections, connections, transaction
from django.tasks import (
    DEFAULT_TASK_BACKEND_ALIAS,
    TaskContext,
    TaskResultStatus,
    task,
    task_backends,
)
from django.tasks.exceptions import InvalidTaskBackend
from django.tasks.signals import task_finished
from django.utils import timezone
from django.utils.module_loading import module_has_submodule

from marketplace.models import TaskLease

logger = logging.getLogger(__name__)


class TaskLeaseExpired(Exception):
    """Recorded as the error of a task given up after its worker died too many times."""


# --- Durable tasks ----------------------------------------------------------------------------

# Default of a durable task's hidden first parameter: tells a direct `.call()` from a worker run.
_NOT_FROM_WORKER = object()


@functools.cache
def _task_context_types() -> tuple[type, ...]:
    # django-tasks-rq runs tasks through the `django_tasks` backport, with its own TaskContext.
    try:
        from django_tasks.base import TaskContext as BackportTaskContext
    except ImportError:
        return (TaskContext,)
    return (TaskContext, BackportTaskContext)


def durable_task(function=None, *, takes_context=False, **task_options):
    """Declare a task, like `django.tasks.task`, that holds a lease while it runs.

    If the worker running it dies, the lease runs out and `task_leases_recover` re-queues the
    task, so its body must be safe to run twice. `takes_context` and the other options mean what
    they mean for `django.tasks.task`. Calling the task directly (`.call()`) runs the body
    without a lease.
    """

    def declare(func):
        if inspect.iscoroutinefunction(func):
            raise TypeError(f"durable_task supports plain functions, not coroutines ({func!r})")

        # The worker must hand over the task context to reveal the result id the lease is for,
        # so the task always takes it, and passes it on only if the body asked for it.
        def run(context=_NOT_FROM_WORKER, /, *args, **kwargs):
            if not isinstance(context, _task_context_types()):
                # A direct call, not a worker run: the first argument (if any) is the body's.
                if context is not _NOT_FROM_WORKER:
                    args = (context, *args)
                return func(*args, **kwargs)
            body_args = (context, *args) if takes_context else args
            with _TaskLeaseHeld(context.task_result):
                return func(*body_args, **kwargs)

        functools.update_wrapper(run, func)
        # django.tasks checks that a context-taking task's first parameter is named `context`;
        # `inspect.signature` would follow `__wrapped__` to the body, which may not take one.
        del run.__wrapped__
        return task(run, takes_context=True, **task_options)

    if function is not None:
        return declare(function)
    return declare


def _lease_holder_name() -> str:
    return f"{socket.gethostname()[:80]}:{os.getpid()}:{secrets.token_hex(4)}"


class _TaskLeaseHeld:
    """Holds the lease of one task run: taken on entry, renewed by a heartbeat thread every
    third of `TASK_LEASE_SECONDS`, released on exit whatever the outcome."""

    def __init__(self, task_result):
        self.result_id = str(task_result.id)
        self.backend = task_result.backend
        self.task_path = task_result.task.module_path
        self.holder = _lease_holder_name()
        self.stopped = threading.Event()
        self.heartbeat = threading.Thread(
            target=self._renew_until_stopped, name=f"task-lease-{self.result_id}", daemon=True
        )

    def __enter__(self):
        TaskLease.objects.update_or_create(
            result_id=self.result_id,
            defaults={
                "backend": self.backend,
                "task_path": self.task_path[:255],
                "worker": self.holder,
                "expires_at": _lease_expiry(),
            },
        )
        self.heartbeat.start()
        return self

    def __exit__(self, *exc_info):
        self.stopped.set()
        self.heartbeat.join()
        try:
            # Only our own lease: after a re-queue another worker may hold it.
            TaskLease.objects.filter(result_id=self.result_id, worker=self.holder).delete()
        except DatabaseError:
            # Must not hide the task's own outcome; the sweeper drops leases of finished tasks.
            logger.exception("Could not release the lease of task %s", self.result_id)

    def _renew_until_stopped(self):
        try:
            while not self.stopped.wait(settings.TASK_LEASE_SECONDS / 3):
                try:
                    renewed = TaskLease.objects.filter(
                        result_id=self.result_id, worker=self.holder
                    ).update(expires_at=_lease_expiry())
                except DatabaseError:
                    # A busy database: try again at the next beat; the lease outlasts a few.
                    logger.warning("Could not renew the lease of task %s", self.result_id)
                    continue
                if not renewed:
                    logger.warning(
                        "Task %s lost its lease: it was re-queued and may run twice",
                        self.result_id,
                    )
                    return
        finally:
            connections.close_all()


def _lease_expiry():
    return timezone.now() + timedelta(seconds=settings.TASK_LEASE_SECONDS)


# --- Periodic jobs ------------------------------------------------------------------------------


@dataclass
class _PeriodicJob:
    name: str
    func: Callable[[], object]
    every_seconds: float
    next_run_at: float = 0.0  # time.monotonic(); 0 runs it at the first sweep


_periodic_jobs: dict[str, _PeriodicJob] = {}
_periodic_lock = threading.Lock()
_periodic_discovered = False


def periodic(every_seconds: float):
    """Register a function the workers run every `every_seconds` (and at their start).

    Register it in an app's `tasks` module: the sweeper imports those. It runs in every worker
    process; see the module docstring for what that asks of it.
    """

    def register(func):
        name = f"{func.__module__}.{func.__qualname__}"
        _periodic_jobs[name] = _PeriodicJob(name=name, func=func, every_seconds=every_seconds)
        return func

    return register


def periodic_run_due() -> list[str]:
    """Run the periodic jobs that are due, in this thread; return their names.

    A job that raises is logged and runs again at its next turn.
    """
    global _periodic_discovered
    with _periodic_lock:
        if not _periodic_discovered:
            _periodic_discover()
            _periodic_discovered = True
        ran = []
        for job in list(_periodic_jobs.values()):
            now = time.monotonic()
            if job.next_run_at > now:
                continue
            job.next_run_at = now + job.every_seconds
            close_old_connections()
            try:
                job.func()
            except Exception:
                logger.exception("Periodic job %s failed", job.name)
            ran.append(job.name)
        return ran


def _periodic_discover() -> None:
    # Each app's `tasks` module registers its periodic jobs. One that fails to import is
    # logged, and the others (lease recovery above all) run anyway.
    for app_config in apps.get_app_configs():
        if module_has_submodule(app_config.module, "tasks"):
            try:
                import_module(f"{app_config.name}.tasks")
            except Exception:
                logger.exception("Could not import %s.tasks for its periodic jobs", app_config.name)


def periodic_sweeper_start(*, stop: threading.Event, interval: float = 0.5) -> threading.Thread:
    """Start a daemon thread calling `periodic_run_due` every `interval` until `stop` is set."""

    def sweep():
        try:
            while not stop.is_set():
                try:
                    periodic_run_due()
                except Exception:
                    logger.exception("The periodic sweep failed")
                stop.wait(interval)
        finally:
            connections.close_all()

    thread = threading.Thread(target=sweep, name="periodic-sweeper", daemon=True)
    thread.start()
    return thread


# --- Lease recovery -----------------------------------------------------------------------------

REQUEUED = "requeued"
GIVEN_UP = "failed"
DROPPED = "dropped"  # the task finished, is gone, or its backend is unknown: only the lease goes
WAITING = "waiting"  # the task is already back on its queue


@periodic(every_seconds=max(1.0, settings.TASK_LEASE_SECONDS / 4))
def task_leases_recover() -> dict[str, str]:
    """Put tasks whose lease ran out (their worker died) back on their queue.

    A task that is still running is re-queued, or marked failed once it has been re-queued
    `TASK_MAX_ATTEMPTS` times. Each lease is handled in its own transaction under a row lock
    that concurrent sweepers skip. Returns what happened, by result id.
    """
    now = timezone.now()
    expired = TaskLease.objects.filter(expires_at__lt=now)
    # A cheap read first: on SQLite every transaction takes the write lock.
    if not expired.exists():
        return {}
    outcomes: dict[str, str] = {}
    seen: list[int] = []
    for _ in range(500):
        lease = None
        try:
            with transaction.atomic():
                lease = (
                    expired.exclude(pk__in=seen)
                    .select_for_update(skip_locked=True)
                    .order_by("expires_at")
                    .first()
                )
                if lease is None:
                    break
                outcomes[lease.result_id] = _lease_recover(lease)
        except Exception:
            if lease is None:
                raise
            # Rolled back, the lease stays expired: the next sweep tries it again.
            logger.exception("Could not recover task %s (%s)", lease.result_id, lease.task_path)
        seen.append(lease.pk)
    return outcomes


def _lease_recover(lease: TaskLease) -> str:
    try:
        backend = task_backends[lease.backend]
    except InvalidTaskBackend:
        logger.error(
            "Task %s (%s) lost its worker but its backend %r is not configured; lease dropped",
            lease.result_id,
            lease.task_path,
            lease.backend,
        )
        lease.delete()
        return DROPPED

    from django_tasks_db.backend import DatabaseBackend

    if isinstance(backend, DatabaseBackend):
        return _db_lease_recover(lease, backend)
    if type(backend).__module__.startswith("django_tasks_rq"):
        return _rq_lease_recover(lease)
    logger.error(
        "Task %s (%s) lost its worker; backend %s cannot re-queue it; lease dropped",
        lease.result_id,
        lease.task_path,
        type(backend).__name__,
    )
    lease.delete()
    return DROPPED


def _lease_given_up(lease: TaskLease) -> TaskLeaseExpired:
    logger.error(
        "Task %s (%s) lost its worker %s after %d re-queues; marked failed",
        lease.result_id,
        lease.task_path,
        lease.worker,
        lease.attempts,
    )
    lease.delete()
    return TaskLeaseExpired(
        f"The worker running this task stopped {lease.attempts + 1} times "
        f"(last {lease.worker or 'unknown'}); given up"
    )


def _lease_requeued(lease: TaskLease) -> None:
    logger.warning(
        "Task %s (%s) lost its worker %s; re-queued (re-queue %d of at most %d)",
        lease.result_id,
        lease.task_path,
        lease.worker,
        lease.attempts + 1,
        settings.TASK_MAX_ATTEMPTS,
    )
    # The lease stays, without an expiry, to count re-queues until the task finishes.
    lease.attempts += 1
    lease.expires_at = None
    lease.worker = ""
    lease.save(update_fields=["attempts", "expires_at", "worker"])


def _lease_waiting(lease: TaskLease) -> None:
    lease.expires_at = None
    lease.save(update_fields=["expires_at"])


def _db_lease_recover(lease: TaskLease, backend) -> str:
    from django_tasks_db.models import DBTaskResult

    db_result = DBTaskResult.objects.select_for_update().filter(pk=lease.result_id).first()
    if db_result is None or db_result.status in (
        TaskResultStatus.SUCCESSFUL,
        TaskResultStatus.FAILED,
    ):
        lease.delete()
        return DROPPED
    if db_result.status == TaskResultStatus.READY:
        _lease_waiting(lease)
        return WAITING
    if lease.attempts >= settings.TASK_MAX_ATTEMPTS:
        db_result.set_failed(_lease_given_up(lease))
        transaction.on_commit(lambda: _db_task_finished_send(db_result, backend))
        return GIVEN_UP
    db_result.status = TaskResultStatus.READY
    db_result.save(update_fields=["status"])
    _lease_requeued(lease)
    return REQUEUED


def _db_task_finished_send(db_result, backend) -> None:
    try:
        task_result = db_result.task_result
    except Exception:
        # The task's module no longer imports; the failure is logged already.
        return
    task_finished.send(sender=type(backend), task_result=task_result)


def _rq_lease_recover(lease: TaskLease) -> str:
    import django_rq
    from django_tasks_rq import Job
    from rq.exceptions import NoSuchJobError
    from rq.job import JobStatus
    from rq.job_lifecycle import record_job_failure

    connection = django_rq.get_connection()
    try:
        job = Job.fetch(lease.result_id, connection=connection)
        status = job.get_status()
    except NoSuchJobError:
        lease.delete()
        return DROPPED
    if status in (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED):
        _lease_waiting(lease)
        return WAITING
    if status != JobStatus.STARTED:
        lease.delete()
        return DROPPED

    if lease.attempts >= settings.TASK_MAX_ATTEMPTS:
        error = _lease_given_up(lease)
        if job.failure_callback is not None:
            # django-tasks-rq's callback records the error class and sends task_finished.
            try:
                job.failure_callback(job, connection, TaskLeaseExpired, error, None)
            except Exception:
                logger.exception("The failure callback of task %s raised", job.id)
        with connection.pipeline() as pipeline:
            job.execution_registry.delete(job=job, pipeline=pipeline)
            record_job_failure(job, f"{TaskLeaseExpired.__name__}: {error}", pipeline)
            pipeline.execute()
        return GIVEN_UP

    queue = django_rq.get_queue(job.origin, job_class=Job)
    with connection.pipeline() as pipeline:
        # Drop the dead worker's execution (and its entry in the StartedJobRegistry), then
        # put the same job back on its queue, in one Redis transaction (MULTI from the start,
        # as rq's enqueue_job expects of a pipeline it is given).
        pipeline.multi()
        job.execution_registry.delete(job=job, pipeline=pipeline)
        job.started_at = None
        queue.enqueue_job(job, pipeline=pipeline)
        pipeline.execute()
    _lease_requeued(lease)
    return REQUEUED


# --- Worker loops -------------------------------------------------------------------------------


# An embedded worker that stopped on an error starts again after this pause.
EMBEDDED_WORKER_RESTART_SECONDS = 5.0


# The name of the task worker this process runs (one per process: `manage.py worker`, or the
# server's embedded one); see task_worker_name.
_process_worker_name = ""


def task_worker_name() -> str:
    """Who runs tasks in this process, for records of who did what (a work item's worker):
    the worker's name as `manage.py worker` prints it and the backend records it
    (host-pid-suffix), or host-pid in a process without a worker (a direct call)."""
    return _process_worker_name or f"{socket.gethostname()[:40]}-{os.getpid()}"


class TaskWorkerLoop(ABC):
    """Runs the configured backend's worker on some queues; `stop` asks it to finish."""

    backend_label = ""

    def __init__(self, *, queue_names: list[str], burst: bool, embedded: bool):
        global _process_worker_name
        self.queue_names = queue_names
        self.burst = burst
        self.embedded = embedded
        self.name = f"{socket.gethostname()[:40]}-{os.getpid()}-{secrets.token_hex(3)}"
        _process_worker_name = self.name
        self.stopping = threading.Event()

    def run(self) -> None:
        """Work until stopped (or, in burst mode, until no task is ready)."""
        if not self.embedded:
            # A separate process stops on an error, for its supervisor to start it again.
            self._work()
            return
        # In the server nothing would notice a worker thread that died: start it again.
        while True:
            try:
                self._work()
            except Exception:
                logger.exception("The embedded task worker %s stopped on an error", self.name)
            if self.burst or self.stopping.wait(EMBEDDED_WORKER_RESTART_SECONDS):
                return
            logger.warning("Starting the embedded task worker %s again", self.name)

    def stop(self) -> None:
        self.stopping.set()
        self._stop_work()

    @abstractmethod
    def _work(self) -> None:
        """Run the backend's worker until it stops."""

    @abstractmethod
    def _stop_work(self) -> None:
        """Ask the backend's worker to stop after its current task."""


class _DatabaseWorkerLoop(TaskWorkerLoop):
    backend_label = "database"

    def __init__(self, **options):
        super().__init__(**options)
        from django_tasks_db.management.commands.db_worker import Worker

        self.worker = Worker(
            queue_names=self.queue_names,
            interval=1.0,
            batch=self.burst,
            backend_name=DEFAULT_TASK_BACKEND_ALIAS,
            startup_delay=False,
            max_tasks=None,
            worker_id=self.name,
            excluded_queue_names=[],
        )
        if not self.embedded:
            # First SIGTERM/SIGINT: finish the current task, then stop; a second: stop now.
            self.worker.configure_signals()

    def _work(self) -> None:
        try:
            self.worker.run()
        finally:
            connections.close_all()

    def _stop_work(self) -> None:
        self.worker.running = False


class _RedisQueueWorkerLoop(TaskWorkerLoop):
    backend_label = "Redis Queue"

    def __init__(self, **options):
        super().__init__(**options)
        import django_rq
        from django_tasks_rq import Job

        self.worker = django_rq.get_worker(
            *self.queue_names,
            job_class=Job,
            worker_class=_rq_worker_class(embedded=self.embedded),
            name=self.name,
        )

    def _work(self) -> None:
        # Outside the server rq handles SIGTERM/SIGINT itself: finish the current job and stop,
        # or stop now at the second signal.
        self.worker.work(burst=self.burst)

    def _stop_work(self) -> None:
        self.worker.stop_soon()


@functools.cache
def _rq_worker_class(*, embedded: bool):
    # Imported here: rq is only needed when the Redis backend is configured.
    from rq import SimpleWorker
    from rq.timeouts import TimerDeathPenalty

    class StoppableWorker(SimpleWorker):
        """rq's worker that runs jobs in its own process: forking would copy a process that has
        threads (the sweeper, lease heartbeats) and take only one of them along."""

        def stop_soon(self):
            # The flag rq's own SIGTERM handler sets: stop once the current job is done.
            self._stop_requested = True

    class EmbeddedWorker(StoppableWorker):
        """For a thread of another program: no signal handlers (only the main thread may set
        them), job timeouts by timer rather than SIGALRM, and short blocking waits so that a
        stop request is noticed soon."""

        death_penalty_class = TimerDeathPenalty

        @property
        def dequeue_timeout(self) -> int:
            return 2

        def _install_signal_handlers(self):
            pass

        def dequeue_job_and_maintain_ttl(self, timeout, max_idle_time=None):
            if timeout is None:  # burst: one look, no waiting
                return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
            # rq keeps waiting for a job until one comes; look at the stop flag in between.
            while not self._stop_requested:
                result = super().dequeue_job_and_maintain_ttl(timeout, max_idle_time=timeout)
                if result is not None:
                    return result
            return None

    return EmbeddedWorker if embedded else StoppableWorker


def task_worker_build(
    *, queue_names: list[str], burst: bool = False, embedded: bool = False
) -> TaskWorkerLoop:
    """The worker of the default task backend, for `queue_names` (DB backend: "*" for all).

    `burst` stops once no task is ready. `embedded` is for a worker in a thread of another
    program (the server): it leaves signals alone, and `stop` is how to end it.
    """
    from django_tasks_db.backend import DatabaseBackend

    backend = task_backends[DEFAULT_TASK_BACKEND_ALIAS]
    options = {"queue_names": queue_names, "burst": burst, "embedded": embedded}
    if isinstance(backend, DatabaseBackend):
        return _DatabaseWorkerLoop(**options)
    if type(backend).__module__.startswith("django_tasks_rq"):
        return _RedisQueueWorkerLoop(**options)
    raise ValueError(f"The task backend {type(backend).__name__} has no worker to run")
