"""A task queue of a test's own: added to this process's settings (and, through
SX_TEST_QUEUE, to those of the processes it starts), its Redis keys removed afterwards."""

import dataclasses
import uuid

from django.conf import settings as django_settings

from tests.support.settings import queue_added


@dataclasses.dataclass
class PrivateQueue:
    name: str
    result_ids: list[str]

    def enqueue(self, task, *args, **kwargs):
        result = task.using(queue_name=self.name).enqueue(*args, **kwargs)
        self.result_ids.append(result.id)
        return result


def private_queue_open(settings) -> PrivateQueue:
    """A new queue in the (pytest-django) `settings`; jobs' tasks go to it too."""
    name = f"sx-test-{uuid.uuid4().hex[:12]}"
    settings.TASKS, rq_queues = queue_added(
        name, tasks=settings.TASKS, rq_queues=getattr(settings, "RQ_QUEUES", None)
    )
    if rq_queues is not None:
        settings.RQ_QUEUES = rq_queues
    settings.JOBS_QUEUE = name
    return PrivateQueue(name=name, result_ids=[])


# Where a queue keeps the ids of its tasks besides the queue itself.
RQ_REGISTRIES = (
    "started_job_registry",
    "finished_job_registry",
    "failed_job_registry",
    "deferred_job_registry",
    "ready_job_registry",
    "scheduled_job_registry",
    "canceled_job_registry",
)


def private_queue_close(private: PrivateQueue) -> None:
    """Delete the Redis keys of this queue, of its tasks (those the test enqueued and those the
    processes it started queued there) and of its workers, running or stopped; nobody else's."""
    if django_settings.TASK_BACKEND != "rq":
        return
    import django_rq
    from rq import Worker
    from rq.worker_registration import unregister

    redis = django_rq.get_connection()
    rq_queue = django_rq.get_queue(private.name)
    task_ids = {*private.result_ids, *rq_queue.job_ids}
    for registry in RQ_REGISTRIES:
        task_ids.update(getattr(rq_queue, registry).get_job_ids(cleanup=False))
    patterns = [f"*{private.name}*", *(f"*{task_id}*" for task_id in task_ids)]
    for worker in Worker.all(queue=rq_queue):
        unregister(worker)
        patterns.append(f"*{worker.name}*")
    # A stopped worker is no longer listed; its own key stays a while (it expires).
    for key in redis.scan_iter(match="rq:worker:*"):
        if redis.type(key) != b"hash":
            continue
        if private.name in (redis.hget(key, "queues") or b"").decode().split(","):
            redis.delete(key)
    for pattern in patterns:
        for key in redis.scan_iter(match=pattern):
            redis.delete(key)
    redis.srem("rq:queues", rq_queue.key)
