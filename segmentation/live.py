"""Live job progress: every change of a job is sent, as its whole progress, to the pages
watching it (`/ws/jobs/{id}/`). Each message carries the job's `seq`; a page keeps the
newest it has seen, so a late or repeated message cannot move the bar backwards."""

import logging

from marketplace.live import group_send

logger = logging.getLogger(__name__)

EVENT_HANDLER = "job.progress"


def job_group_name(job_id: int) -> str:
    return f"job-{job_id}"


def job_event_publish(job_id: int) -> None:
    """Send the job's progress to its watchers. Called from transaction.on_commit."""
    from segmentation.models import Job
    from segmentation.selectors import job_progress

    job = Job.objects.filter(pk=job_id).first()
    if job is None:
        return
    try:
        group_send(job_group_name(job_id), {"type": EVENT_HANDLER, "progress": job_progress(job)})
    except Exception:
        # A watcher that misses one gets the next, which holds the whole state.
        logger.exception("Could not publish the progress of job %s", job_id)
