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


def private_queue_close(private: PrivateQueue) -> None:
    """Delete the Redis keys of this queue, its jobs and its workers; nobody else's."""
    if django_settings.TASK_BACKEND != "rq":
        return
    import django_rq
    from rq import Worker
    from rq.worker_registration import unregister

    redis = django_rq.get_connection()
    rq_queue = django_rq.get_queue(private.name)
    patterns = [f"*{private.name}*", *(f"*{result_id}*" for result_id in private.result_ids)]
    for worker in Worker.all(queue=rq_queue):
        unregister(worker)
        patterns.append(f"*{worker.name}*")
    for pattern in patterns:
        for key in redis.scan_iter(match=pattern):
            redis.delete(key)
    redis.srem("rq:queues", rq_queue.key)
