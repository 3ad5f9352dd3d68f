"""Tasks of jobs: each is a durable task, so a worker killed mid-way has it run again, and
each service it calls is safe to run twice. An unexpected error fails the job with its
reason rather than leaving it waiting."""

import logging

from marketplace.taskqueue import durable_task, periodic
from segmentation import service_requests, services
from segmentation.models import WorkItem

logger = logging.getLogger(__name__)


@durable_task
def job_advance(job_id: int) -> str:
    try:
        return services.job_advance(job_id=job_id)
    except Exception as exc:
        _failed(job_id, exc)
        raise


@durable_task
def work_item_run(item_id: int) -> str:
    try:
        return services.work_item_run(item_id=item_id)
    except Exception as exc:
        job_id = WorkItem.objects.filter(pk=item_id).values_list("job_id", flat=True).first()
        if job_id is not None:
            _failed(job_id, exc)
        raise


def _failed(job_id: int, exc: Exception) -> None:
    logger.exception("Job %s failed on an unexpected error", job_id)
    services.job_fail(
        job_id=job_id,
        code="internal_error",
        reason=f"An unexpected error stopped the job ({type(exc).__name__}: {exc}).",
    )


@periodic(every_seconds=5)
def work_claims_expire() -> int:
    return services.work_claims_expire()


@periodic(every_seconds=15)
def jobs_reconcile() -> int:
    return services.jobs_reconcile()


@periodic(every_seconds=5)
def negotiations_close() -> int:
    return service_requests.negotiations_close()


@periodic(every_seconds=5)
def negotiations_open_due() -> int:
    return service_requests.negotiations_open_due()
