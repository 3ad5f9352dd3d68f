"""Tasks of providers: outbound webhooks. The task makes one attempt through the service,
which is safe to run twice; the periodic sweep queues retries once they are due, and queues
again an attempt whose worker died, so no retry is lost."""

from marketplace.taskqueue import durable_task, periodic
from providers import services


@durable_task
def webhook_deliver(delivery_id: int) -> str:
    return services.webhook_delivery_attempt(delivery_id=delivery_id)


@periodic(every_seconds=1.0)
def webhook_deliveries_sweep() -> int:
    return services.webhook_deliveries_enqueue_due()
