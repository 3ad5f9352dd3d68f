"""Tasks that only tests enqueue."""

import os
import time
from pathlib import Path

from marketplace.models import TaskLease
from marketplace.taskqueue import durable_task

# However a test goes, a held task does not outlive it by much.
HOLD_MAX_SECONDS = 120


@durable_task
def hold_file_append(path: str) -> int:
    """Append "start <pid>" to `path`, wait while `<path>.hold` exists, append "done <pid>".

    Running it twice only adds lines. Returns the pid of the process that ran it.
    """
    log = Path(path)
    hold = log.with_name(log.name + ".hold")
    _line_append(log, f"start {os.getpid()}")
    deadline = time.monotonic() + HOLD_MAX_SECONDS
    while hold.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    _line_append(log, f"done {os.getpid()}")
    return os.getpid()


@durable_task(takes_context=True)
def lease_probe(context, *, pause_seconds: float = 0.0) -> dict:
    """Report the lease of this very run, as it starts and again after `pause_seconds`."""
    result_id = str(context.task_result.id)
    first = _lease_state(result_id)
    time.sleep(pause_seconds)
    return {"result_id": result_id, "first": first, "second": _lease_state(result_id)}


def _line_append(path: Path, line: str) -> None:
    with path.open("a") as file:
        file.write(line + "\n")


def _lease_state(result_id: str) -> dict | None:
    lease = TaskLease.objects.filter(result_id=result_id).first()
    if lease is None:
        return None
    return {
        "worker": lease.worker,
        "attempts": lease.attempts,
        "expires_at": lease.expires_at.isoformat() if lease.expires_at else None,
    }
