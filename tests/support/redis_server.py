"""A Redis of a test's own, to stop and start again while the exchange runs on it (the fault
tests): `redis-server` on a free loopback port, nothing saved to disk, in its own process group,
never the shared Redis others use. Started again, it listens on the same port, empty, as a
Redis restarted without persistence would."""

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

START_SECONDS = 15
STOP_SECONDS = 10


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _pong(port: int) -> bool:
    """Whether a Redis on the port answers PING."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class PrivateRedis:
    """`redis-server` on 127.0.0.1:`port`, its output in `log_dir`. `url` (database 0) is what
    REDIS_URL of the processes a test starts points to."""

    def __init__(self, log_dir: Path):
        executable = shutil.which("redis-server")
        if executable is None:
            pytest.fail(
                "redis-server is not installed; the fault tests start a Redis of their own "
                "(Debian: apt-get install redis-server)."
            )
        self.executable = executable
        self.log_dir = Path(log_dir)
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None
        self.starts = 0

    @property
    def log(self) -> Path:
        return self.log_dir / f"redis-{self.starts}.log"

    def start(self) -> None:
        """Start it (again) on its port; returns once it answers PING."""
        assert self.process is None or self.process.poll() is not None, "already running"
        self.starts += 1
        deadline = time.monotonic() + START_SECONDS
        while True:
            with self.log.open("w") as output:
                self.process = subprocess.Popen(
                    [
                        self.executable,
                        "--port",
                        str(self.port),
                        "--bind",
                        "127.0.0.1",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--daemonize",
                        "no",
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            while time.monotonic() < deadline and self.process.poll() is None:
                if _pong(self.port):
                    return
                time.sleep(0.05)
            if self.process.poll() is None:
                self.kill()
                pytest.fail(
                    f"redis-server did not answer within {START_SECONDS} s:\n{self._output()}"
                )
            # exited: the port may still be held by connections of the previous run; again
            if time.monotonic() >= deadline:
                pytest.fail(f"redis-server could not start on port {self.port}:\n{self._output()}")
            time.sleep(0.2)

    def stop(self) -> None:
        """Stop it as an operator (or a crash of its host) would: SIGTERM (SIGKILL if it takes
        longer than STOP_SECONDS); returns once its port refuses connections."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self.kill()
        assert not _pong(self.port), f"something else answers on port {self.port}"

    def kill(self) -> None:
        process = self.process
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None and _pong(self.port)

    def _output(self) -> str:
        return self.log.read_text() if self.log.exists() else ""
