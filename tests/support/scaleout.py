"""A scaled-out exchange for tests: several `manage.py serve` processes (daphne, no embedded
worker) and several `manage.py worker` processes, as production runs them, on the test
database, a task queue of the test's own and a channel-layer prefix of its own; and websocket
clients of those servers, driven from the synchronous test through an event loop in a thread
of their own (so the test keeps using the ORM between its websocket steps)."""

import asyncio
import json
import re
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from tests.support.processes import SERVING_AT, manage_start, stop, wait_for

WORKER_NAMED = re.compile(r"^Task worker (\S+) \(", flags=re.MULTILINE)
# How long a live message may take to arrive (the servers and workers share 2 busy cores in CI).
LIVE_WAIT_SECONDS = 15


def channel_prefix_private(settings) -> str:
    """A channel-layer prefix of the test's own, in the (pytest-django) `settings` (for what
    this process publishes) and for the processes started with it: watchers of other test
    runs on the same Redis never see this test's events, nor it theirs."""
    prefix = f"sx-test-{uuid.uuid4().hex[:12]}"
    layers = {alias: dict(layer) for alias, layer in settings.CHANNEL_LAYERS.items()}
    for layer in layers.values():
        if "CONFIG" in layer:
            layer["CONFIG"] = {**layer["CONFIG"], "prefix": prefix}
    settings.CHANNEL_LAYERS = layers
    return prefix


@dataclass
class Cluster:
    """The running processes: servers' base URLs ("http://host:port") and workers' names (as
    they print them, and as the task backend and work items record them), in start order."""

    processes: dict[str, tuple[subprocess.Popen, Path]]
    server_urls: list[str] = field(default_factory=list)
    worker_names: list[str] = field(default_factory=list)

    def logs(self, kind: str = "") -> str:
        """The output of the processes whose name starts with `kind` ("server", "worker")."""
        return "\n".join(
            log.read_text() for name, (_, log) in self.processes.items() if name.startswith(kind)
        )

    def report(self) -> str:
        """Each process's state and output, for failure messages."""
        parts = []
        for name, (process, log) in self.processes.items():
            state = "running" if process.poll() is None else f"exited {process.returncode}"
            parts.append(f"--- {name} (pid {process.pid}, {state}):\n{log.read_text()}")
        return "\n".join(parts)

    def fail(self, message: str):
        pytest.fail(f"{message}\n{self.report()}", pytrace=False)

    def assert_running(self) -> None:
        stopped = [
            name for name, (process, _) in self.processes.items() if process.poll() is not None
        ]
        if stopped:
            self.fail(f"Stopped early: {', '.join(stopped)}")

    def wait_for(self, condition: Callable[[], object], *, what: str, seconds: float | None = None):
        """`processes.wait_for`, failing also if any of the processes exits."""
        return wait_for(condition, what=what, seconds=seconds, watched=self.processes)


@contextmanager
def cluster_running(
    *,
    queue_name: str,
    channel_prefix: str,
    directory: Path,
    servers: int = 2,
    workers: int = 2,
    **env: str,
) -> Iterator[Cluster]:
    """Start `servers` servers and `workers` workers together, yield once all are ready, stop
    them all (SIGTERM, then SIGKILL after a while) at the end, whatever happens."""
    env = {"CHANNELS_PREFIX": channel_prefix, **env}
    processes: dict[str, tuple[subprocess.Popen, Path]] = {}
    try:
        for number in range(1, servers + 1):
            log = directory / f"server-{number}.log"
            # Production's servers: daphne only; tasks and periodic jobs run in the workers.
            process = manage_start(
                queue_name, log, "serve", "--port", "0", EMBEDDED_WORKER="false", **env
            )
            processes[f"server {number}"] = (process, log)
        for number in range(1, workers + 1):
            log = directory / f"worker-{number}.log"
            process = manage_start(queue_name, log, "worker", "--queue", queue_name, **env)
            processes[f"worker {number}"] = (process, log)
        cluster = Cluster(processes=processes)

        def ready(name: str) -> re.Match | None:
            pattern = SERVING_AT if name.startswith("server") else WORKER_NAMED
            return pattern.search(processes[name][1].read_text())

        cluster.wait_for(
            lambda: all(ready(name) for name in processes),
            what=f"start of {servers} servers and {workers} workers",
        )
        cluster.server_urls = [ready(name).group(1) for name in processes if "server" in name]
        cluster.worker_names = [ready(name).group(1) for name in processes if "worker" in name]
        yield cluster
    finally:
        stop(*(process for process, _ in processes.values()), seconds=10)


class LiveSocket:
    """One websocket of a server's live auction page; every message it receives is kept, in
    order, in `messages`."""

    def __init__(self, clients: "LiveClients", label: str):
        self.clients, self.label = clients, label
        self.messages: list[dict] = []
        self.connection = None

    async def _open(self, url: str, *, origin: str, cookie: str | None):
        from websockets.asyncio.client import connect

        headers = {"Cookie": cookie} if cookie else None
        self.connection = await connect(url, origin=origin, additional_headers=headers)
        asyncio.get_running_loop().create_task(self._read())

    async def _read(self):
        from websockets.exceptions import ConnectionClosed

        try:
            async for raw in self.connection:
                self.messages.append(json.loads(raw))
        except ConnectionClosed:
            pass

    def send(self, message: dict) -> None:
        self.clients.run(self.connection.send(json.dumps(message)))

    def of_type(self, kind: str) -> list[dict]:
        return [message for message in self.messages if message.get("type") == kind]

    def expect(
        self, predicate: Callable[[dict], bool], *, what: str, seconds: float = LIVE_WAIT_SECONDS
    ) -> dict:
        """The first message (received so far or within `seconds`) that satisfies `predicate`;
        fails with every message received and the processes' output otherwise."""

        def found():
            return next((message for message in self.messages if predicate(message)), None)

        try:
            return self.clients.cluster.wait_for(found, what=what, seconds=seconds)
        except pytest.fail.Exception as failure:
            reason = str(failure)
        # Failed outside the except clause: one message, not the first one chained to it.
        pytest.fail(f"{self.label}: {reason}\n{self._received()}", pytrace=False)

    def assert_open(self) -> None:
        """Fails, with what it received and the processes' output, if the server closed it."""
        if self.connection.close_code is not None:
            self.clients.cluster.fail(
                f"{self.label}: closed by the server (code {self.connection.close_code}, "
                f"{self.connection.close_reason!r})\n{self._received()}"
            )

    def _received(self) -> str:
        received = "\n".join(json.dumps(message) for message in self.messages)
        return f"Received:\n{received or '(nothing)'}"


class LiveClients:
    """Websocket clients of the cluster's servers on an event loop in a thread of their own."""

    def __init__(self, cluster: Cluster):
        self.cluster = cluster
        self.sockets: list[LiveSocket] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="live-clients")
        self.thread.start()

    def run(self, coroutine, seconds: float = LIVE_WAIT_SECONDS):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(seconds)

    def watch(self, label: str, server_url: str, auction_id: int, *, cookie: str | None = None):
        """A socket on the auction's live feed at that server, once it has its snapshot; with
        `cookie` (a session cookie) signed in. The page's own origin, as a browser sends."""
        socket = LiveSocket(self, label)
        url = server_url.replace("http://", "ws://", 1) + f"/ws/auctions/{auction_id}/"
        self.run(socket._open(url, origin=server_url, cookie=cookie))
        self.sockets.append(socket)
        socket.expect(lambda message: message.get("type") == "snapshot", what="the snapshot")
        return socket

    def close(self) -> None:
        async def close_all():
            await asyncio.gather(
                *(socket.connection.close() for socket in self.sockets if socket.connection),
                return_exceptions=True,
            )

        try:
            self.run(close_all())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)
            self.loop.close()


@contextmanager
def live_clients(cluster: Cluster) -> Iterator[LiveClients]:
    clients = LiveClients(cluster)
    try:
        yield clients
    finally:
        clients.close()


def session_cookie(client) -> str:
    """The Cookie header of a signed-in django.test.Client, for a websocket of a server."""
    name = django_settings.SESSION_COOKIE_NAME
    return f"{name}={client.cookies[name].value}"
