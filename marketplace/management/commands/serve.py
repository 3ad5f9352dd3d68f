"""`manage.py serve`: the whole portal in one process: daphne serving the ASGI application (HTTP
and websockets) and, when EMBEDDED_WORKER is on, the task worker and the periodic jobs."""

# daphne.server installs Twisted's asyncio reactor on import, so it comes before anything that
# might import the default reactor.
from daphne.server import Server  # isort: skip

import threading
import time

import daphne.http_protocol
from daphne.endpoints import build_endpoint_description_strings
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.tasks import default_task_backend
from django.utils.module_loading import import_string

from marketplace.taskqueue import periodic_sweeper_start, task_worker_build

# How long a stopping server waits for the embedded worker to finish its task. A task cut
# short is run again once its lease runs out.
WORKER_STOP_SECONDS = 10


class StreamedFormRequest(daphne.http_protocol.WebRequest):
    """daphne's HTTP request, with Twisted's own form parsing off. By default Twisted reads a
    whole multipart body into memory and parses it before the application sees a byte: for a
    capture upload of up to JOB_UPLOAD_MAX_BYTES that is twice its size in the server process,
    and a malformed body got a bare 400 from Twisted. Django parses the body itself, streaming
    it to disk, and answers a malformed one with its own error."""

    def __init__(self, *args, **kwargs):
        kwargs["parsePOSTFormSubmission"] = False
        super().__init__(*args, **kwargs)


class Command(BaseCommand):
    help = (
        "Serve the portal over HTTP and websockets with daphne; with EMBEDDED_WORKER on, run the "
        "task worker and the periodic jobs in the same process."
    )

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1", help="Address to listen on.")
        parser.add_argument("--port", type=int, default=8000, help="Port (0: any free one).")

    def handle(self, *, host, port, **options):
        self.check_migrations()
        application = import_string(settings.ASGI_APPLICATION)

        worker = None
        if settings.EMBEDDED_WORKER:
            try:
                worker = task_worker_build(
                    queue_names=sorted(default_task_backend.queues), embedded=True
                )
            except ValueError as error:
                raise CommandError(f"{error}; set EMBEDDED_WORKER=false") from error
        stop = threading.Event()
        threads = []

        def on_listening():
            # Only once the address is ours: a server that cannot listen runs no tasks either.
            if worker is not None:
                threads.append(
                    threading.Thread(target=worker.run, name="embedded-task-worker", daemon=True)
                )
                threads[-1].start()
                threads.append(periodic_sweeper_start(stop=stop))
            self._announce(server, worker)

        # daphne's protocol factory builds each request from this module-level name.
        daphne.http_protocol.WebRequest = StreamedFormRequest
        server = Server(
            application=application,
            endpoints=build_endpoint_description_strings(host=host, port=port),
            signal_handlers=True,  # SIGTERM and Ctrl+C stop the reactor, then we stop the rest
            verbosity=options["verbosity"],
            ready_callable=on_listening,
        )
        try:
            server.run()
        finally:
            stop.set()
            if worker is not None:
                worker.stop()
            deadline = time.monotonic() + WORKER_STOP_SECONDS
            for thread in threads:
                thread.join(timeout=max(0.0, deadline - time.monotonic()))
        if not server.listening_addresses:
            raise CommandError(f"Could not listen on {host}:{port}")

    def _announce(self, server, worker):
        for address, port in server.listening_addresses:
            host = f"[{address}]" if ":" in address else address
            self.stdout.write(f"Segment Exchange is serving at http://{host}:{port}/")
        if worker is not None:
            self.stdout.write(f"Embedded task worker {worker.name} ({worker.backend_label})")
        else:
            self.stdout.write(
                "No embedded task worker: run `manage.py worker` for tasks and the periodic "
                "jobs (auctions close in the workers)"
            )
        self.stdout.flush()
