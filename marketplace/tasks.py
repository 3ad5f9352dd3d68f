"""Tasks and periodic jobs of the shared kernel."""

from marketplace.ratelimit import rate_counters_delete_expired
from marketplace.services import IDEMPOTENCY_REPLAY_HOURS, idempotency_records_delete_expired
from marketplace.taskqueue import durable_task, periodic


@durable_task
def idempotency_records_prune(*, older_than_hours: int = IDEMPOTENCY_REPLAY_HOURS) -> int:
    """Delete stored Idempotency-Key responses past the replay window; return how many.

    Safe to run twice: a second run finds nothing older left to delete.
    """
    return idempotency_records_delete_expired(older_than_hours=older_than_hours)


@periodic(every_seconds=3600)
def idempotency_records_prune_hourly() -> int:
    # Every worker runs this; deleting what is already gone is harmless.
    return idempotency_records_delete_expired()


@periodic(every_seconds=300)
def rate_counters_prune() -> int:
    # Counters are kept in the database only while the cache is down; those of windows that
    # are over go. Every worker runs this; deleting what is already gone is harmless.
    return rate_counters_delete_expired()
