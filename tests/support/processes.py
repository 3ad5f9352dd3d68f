"""Real processes for tests: `manage.py worker` / `serve` on the test database and a private
task queue (tests.support.settings), waited for with bounds, killed with all they started."""

import os
import re
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
STOP_SECONDS = 20
SERVING_AT = re.compile(r"serving at (http://\S+)/")


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


def wait_for(
    condition,
    *,
    what: str,
    process: subprocess.Popen | None = None,
    log: Path | None = None,
    seconds: float | None = None,
    watched: dict[str, tuple[subprocess.Popen, Path]] | None = None,
):
    """The first true value of `condition()`; fails the test if a watched process exits first
    or nothing comes within `seconds` (PROCESS_WAIT_SECONDS). Watched: `process` (its output in
    `log`) and each of `watched`, a name to (process, log)."""
    seconds = PROCESS_WAIT_SECONDS if seconds is None else seconds
    watched = dict(watched or {})
    if process is not None:
        watched = {f"process {process.pid}": (process, log), **watched}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        for name, (watched_process, watched_log) in watched.items():
            if watched_process.poll() is not None:
                pytest.fail(
                    f"Waiting for {what}, {name} exited with {watched_process.returncode}:\n"
                    f"{watched_log.read_text()}"
                )
        time.sleep(0.1)
    outputs = "\n".join(f"--- {name}:\n{out.read_text()}" for name, (_, out) in watched.items())
    pytest.fail(f"No {what} within {seconds} s. Output:\n{outputs}")


def serve_start(queue_name: str, log: Path, **env: str) -> tuple[subprocess.Popen, str]:
    """`manage.py serve` on a free port (see manage_start), once it says where it serves: the
    process and its base URL, "http://host:port" without a slash at the end."""
    process = manage_start(queue_name, log, "serve", "--port", "0", **env)
    try:
        match = wait_for(
            lambda: SERVING_AT.search(log.read_text()),
            what="the server's address",
            process=process,
            log=log,
        )
    except BaseException:
        kill(process)
        raise
    return process, match.group(1)


def kill(*processes: subprocess.Popen | None) -> None:
    """SIGKILL each process's group (the process and all it started)."""
    for process in processes:
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def stop(*processes: subprocess.Popen | None, seconds: float = STOP_SECONDS) -> None:
    """SIGTERM each process's group, so each stops as it would in production; SIGKILL the
    groups of those not stopped within `seconds`."""
    for process in processes:
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        if process is None:
            continue
        try:
            process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            kill(process)
