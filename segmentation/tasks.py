"""Tasks of jobs: each is a durable task, so a worker killed mid-way has it run again, and
each service it calls is safe to run twice."""

from marketplace.taskqueue import durable_task, periodic
from segmentation import services


@durable_task
def job_advance(job_id: int) -> str:
    return services.job_advance(job_id=job_id)


@durable_task
def work_item_run(item_id: int) -> str:
    return services.work_item_run(item_id=item_id)


@periodic(every_seconds=5)
def work_claims_expire() -> int:
    return services.work_claims_expire()
