"""`manage.py worker`: a separate task worker process.

Scaled out (servers with EMBEDDED_WORKER=false, the default with Redis), the workers are the
only processes that run tasks *and* the periodic jobs: opening and closing auctions on time,
recovering tasks of dead workers, expiring work claims, webhooks, charges. Every worker runs
them; each job locks what it changes and skips what another worker holds, so M workers do
each piece of work once. Run at least one worker wherever the servers run without one.
"""

import threading

from django.core.management.base import BaseCommand, CommandError

from marketplace.taskqueue import periodic_run_due, periodic_sweeper_start, task_worker_build


class Command(BaseCommand):
    help = (
        "Run tasks of the configured backend (database or Redis Queue) and the periodic jobs, "
        "among them the recovery of tasks whose worker died. SIGTERM or Ctrl+C finishes the "
        "current task and stops; a second one stops at once."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--queue",
            default="default",
            help="Queues to take tasks from, separated by commas (default: %(default)s).",
        )
        parser.add_argument(
            "--burst",
            action="store_true",
            help="Run the periodic jobs once, then the tasks that are ready, then stop.",
        )

    def handle(self, *, queue, burst, **options):
        queue_names = [name.strip() for name in queue.split(",") if name.strip()]
        if not queue_names:
            raise CommandError("Name at least one queue")
        try:
            worker = task_worker_build(queue_names=queue_names, burst=burst)
        except ValueError as error:
            raise CommandError(str(error)) from error

        self.stdout.write(
            f"Task worker {worker.name} ({worker.backend_label}) on {', '.join(queue_names)}"
        )
        self.stdout.flush()
        if burst:
            # Recover tasks of dead workers before looking for ready ones.
            periodic_run_due()
        stop = threading.Event()
        sweeper = periodic_sweeper_start(stop=stop)
        try:
            worker.run()
        finally:
            stop.set()
            sweeper.join(timeout=10)
