"""Real processes for tests: `manage.py worker` / `serve` on the test database and a private
task queue (tests.support.settings), waited for with bounds, killed with all they started."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.conf import settings
from django.db import connection

PROCESS_WAIT_SECONDS = 60


def test_database_url() -> str:
    """DATABASE_URL of the test database, for the processes the tests start."""
    database = connection.settings_dict
    if connection.vendor == "sqlite":
        # The same options the settings give the embedded default's SQLite database.
        return f"sqlite:///{database['NAME']}?timeout=20&transaction_mode=IMMEDIATE"
    url = urlsplit(os.environ["DATABASE_URL"])
    return urlunsplit(url._replace(path="/" + database["NAME"]))


test_database_url.__test__ = False  # a helper, not a test


def manage_start(queue_name: str, log: Path, *args: str, **env: str) -> subprocess.Popen:
    """`manage.py <args>` in its own process group, output to `log`."""
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.support.settings",
        "SX_TEST_QUEUE": queue_name,
        "DATABASE_URL": test_database_url(),
        "PYTHONUNBUFFERED": "1",
        **env,
    }
    with log.open("w") as output:
        return subprocess.Popen(
            [sys.executable, "manage.py", *args],
            cwd=settings.BASE_DIR,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, to kill it with all it started
        )


def wait_for(condition, *, what: str, process: subprocess.Popen, log: Path, seconds=None):
    """The first true value of `condition()`; fails the test if the process exits first or
    nothing comes within the bound."""
    seconds = PROCESS_WAIT_SECONDS if seconds is None else seconds
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if process.poll() is not None:
            pytest.fail(
                f"Waiting for {what}, process {process.pid} exited with {process.returncode}:\n"
                f"{log.read_text()}"
            )
        time.sleep(0.1)
    pytest.fail(f"No {what} within {seconds} s. Output:\n{log.read_text()}")


def kill(*processes: subprocess.Popen | None) -> None:
    """SIGKILL each process's group (the process and all it started)."""
    for process in processes:
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
