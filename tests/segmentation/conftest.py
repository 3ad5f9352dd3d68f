"""Fixtures of the segmentation tests that run the exchange and partner agents as processes."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from tests.support.processes import kill, manage_start, serve_start
from tests.support.queues import private_queue_close, private_queue_open

ON_REDIS_QUEUE = settings.TASK_BACKEND == "rq"
AGENT = Path(settings.BASE_DIR) / "examples" / "partner_agent.py"


@pytest.fixture
def private_queue(settings):
    """A task queue of this test's own, for the jobs' tasks of the processes it starts."""
    private = private_queue_open(settings)
    yield private.name
    private_queue_close(private)


@pytest.fixture
def job_storage(settings, tmp_path) -> Path:
    settings.JOB_STORAGE_DIR = tmp_path / "jobs"
    return settings.JOB_STORAGE_DIR


@pytest.fixture
def exchange(transactional_db, private_queue, job_storage, tmp_path):
    """The exchange serving on a free port with its task worker; its address and processes."""
    env = {
        "JOB_STORAGE_DIR": str(job_storage),
        # on Redis a worker process of its own takes the private queue (an embedded worker
        # would also take the shared "default" queue)
        "EMBEDDED_WORKER": "false" if ON_REDIS_QUEUE else "true",
    }
    processes = {}
    try:
        if ON_REDIS_QUEUE:
            log = tmp_path / "worker.log"
            worker = manage_start(private_queue, log, "worker", "--queue", private_queue, **env)
            processes["worker"] = (worker, log)
        log = tmp_path / "server.log"
        server, url = serve_start(private_queue, log, **env)
        processes["server"] = (server, log)
        yield url, processes
    finally:
        kill(*(process for process, _ in processes.values()))


@pytest.fixture
def agent_start(tmp_path):
    """Starts examples/partner_agent.py; the agents started are killed at the end."""
    started = []

    def start(url: str, key: str, *options: str) -> tuple[subprocess.Popen, Path]:
        log = tmp_path / f"agent-{len(started)}.log"
        # The agent knows the exchange only by its URL and key: no settings, no database.
        environment = {
            name: value
            for name, value in os.environ.items()
            if name not in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "REDIS_URL")
        }
        with log.open("w") as output:
            process = subprocess.Popen(
                [sys.executable, str(AGENT), "--url", url, "--key", key, *options],
                cwd=tmp_path,
                env={**environment, "PYTHONUNBUFFERED": "1"},
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        started.append(process)
        return process, log

    yield start
    kill(*started)
