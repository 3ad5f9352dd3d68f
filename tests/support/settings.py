"""Settings of the processes tests start (`manage.py worker`, `manage.py serve`): the project's
own, plus the test's private queue named by SX_TEST_QUEUE. On a Redis that others share, a
test on its own queue takes nobody else's jobs, and nobody takes its jobs."""

import copy
import os

import marketplace.settings as project
from marketplace.settings import *  # noqa: F403


def queue_added(queue: str, *, tasks: dict, rq_queues: dict | None) -> tuple[dict, dict | None]:
    """TASKS and RQ_QUEUES (None without Redis) with `queue` added beside "default"."""
    tasks = copy.deepcopy(tasks)
    tasks["default"]["QUEUES"] = [*tasks["default"]["QUEUES"], queue]
    if rq_queues is not None:
        rq_queues = {**rq_queues, queue: dict(rq_queues["default"])}
    return tasks, rq_queues


if os.environ.get("SX_TEST_QUEUE"):
    TASKS, _rq_queues = queue_added(
        os.environ["SX_TEST_QUEUE"],
        tasks=project.TASKS,
        rq_queues=getattr(project, "RQ_QUEUES", None),
    )
    if _rq_queues is not None:
        RQ_QUEUES = _rq_queues
    # jobs' tasks go to the private queue too, so only this test's workers run them
    JOBS_QUEUE = os.environ["SX_TEST_QUEUE"]

# Test users are saved with the fast MD5 hasher (tests/conftest.py); processes started by tests
# must be able to check those passwords too.
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.MD5PasswordHasher",
]
