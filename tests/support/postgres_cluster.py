"""A private PostgreSQL server for fault tests: its own cluster in a temporary directory, on a
free loopback port, trust authentication, no fsync (a clean or crashed stop still keeps every
commit: the operating system has the files), so a test can stop and start it without touching
the server the suite and other people use.

PostgreSQL's server refuses to run as root: as root the cluster runs as the `postgres` system
user (Debian's packages create it); as anyone else, as that user."""

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

SERVER_USER = "postgres"  # the database superuser of the cluster, and the system user as root
START_SECONDS = 60
STOP_SECONDS = 60
COMMAND_SECONDS = 120


def postgres_bin_dir() -> Path | None:
    """Where initdb, pg_ctl and postgres are: PG_BINDIR, else the newest of Debian's
    /usr/lib/postgresql/<version>/bin; None when there is none."""
    candidates = [os.environ["PG_BINDIR"]] if os.environ.get("PG_BINDIR") else []
    candidates += sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda path: int(Path(path).parent.name) if Path(path).parent.name.isdigit() else 0,
        reverse=True,
    )
    for candidate in candidates:
        if all((Path(candidate) / name).is_file() for name in ("initdb", "pg_ctl", "postgres")):
            return Path(candidate)
    return None


def _run_as() -> str | None:
    """The system user to run the server as: `postgres` as root, else None (ourselves)."""
    return SERVER_USER if os.geteuid() == 0 else None


def postgres_cluster_unavailable() -> str | None:
    """Why a private cluster cannot be started here (a skip reason), None when it can."""
    if postgres_bin_dir() is None:
        return (
            "PostgreSQL's server programs (initdb, pg_ctl, postgres) are not installed "
            "(/usr/lib/postgresql/<version>/bin or PG_BINDIR)"
        )
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            return f"running as root, and there is no {SERVER_USER!r} system user to run PostgreSQL"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class PostgresCluster:
    """A private cluster: `start`, `stop`, `url`, `database_create`; `remove` ends it."""

    bin_dir: Path
    directory: Path
    port: int

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def log_path(self) -> Path:
        return self.directory / "postgres.log"

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError as error:
            return f"(no server log: {error})"

    def _pg_ctl(self, *args: str, seconds: float) -> subprocess.CompletedProcess:
        return _run(
            [str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), *args],
            seconds=seconds,
            what=f"pg_ctl {' '.join(args)}",
            cluster=self,
        )

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = " ".join(
            [
                f"-p {self.port}",
                "-c listen_addresses=127.0.0.1",
                f"-c unix_socket_directories={self.directory}",
                "-c fsync=off",
                "-c full_page_writes=off",
                "-c max_connections=50",
                "-c shared_buffers=16MB",
            ]
        )
        self._pg_ctl(
            "start",
            "-w",
            "-t",
            str(START_SECONDS),
            "-l",
            str(self.log_path),
            "-o",
            options,
            seconds=START_SECONDS + 10,
        )

    def stop(self, *, mode: str = "fast") -> None:
        """Stop the server: "fast" (sessions are ended, as a service manager's restart does)
        or "immediate" (no shutdown checkpoint: a crash, recovered from the WAL at start)."""
        self._pg_ctl("stop", "-w", "-t", str(STOP_SECONDS), "-m", mode, seconds=STOP_SECONDS + 10)

    def is_running(self) -> bool:
        return (self.data_dir / "postmaster.pid").exists()

    def url(self, database: str) -> str:
        """A DATABASE_URL for one of the cluster's databases."""
        return f"postgres://{SERVER_USER}@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = "postgres", **options) -> psycopg.Connection:
        return psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user=SERVER_USER,
            dbname=database,
            connect_timeout=10,
            **options,
        )

    def database_create(self, name: str) -> str:
        """Create an empty database; its DATABASE_URL."""
        with self.connect(autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def remove(self) -> None:
        """Stop the server if it runs (immediately: nothing in it is kept) and delete the
        cluster's directory."""
        try:
            if self.is_running():
                self.stop(mode="immediate")
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)


def _run(
    command: list[str], *, seconds: float, what: str, cluster: PostgresCluster | None = None
) -> subprocess.CompletedProcess:
    result = subprocess.run(
        command,
        user=_run_as(),
        cwd="/",  # the server user may not enter the test's working directory
        capture_output=True,
        text=True,
        timeout=seconds,
        check=False,
    )
    if result.returncode != 0:
        log = f"\n--- server log:\n{cluster.log_text()}" if cluster is not None else ""
        raise RuntimeError(
            f"{what} failed with {result.returncode}:\n{result.stdout}{result.stderr}{log}"
        )
    return result


def postgres_cluster_create() -> PostgresCluster:
    """A new cluster, initialized and started on a free loopback port. Call `remove` at the
    end (it deletes the directory even when starting failed)."""
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        raise RuntimeError(postgres_cluster_unavailable())
    # Not under pytest's tmp_path: the server user must be able to reach its directory.
    directory = Path(tempfile.mkdtemp(prefix="sx-postgres-"))
    cluster = PostgresCluster(bin_dir=bin_dir, directory=directory, port=_free_port())
    try:
        if _run_as() is not None:
            account = pwd.getpwnam(_run_as())
            os.chown(directory, account.pw_uid, account.pw_gid)
        _run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(cluster.data_dir),
                "-U",
                SERVER_USER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            seconds=COMMAND_SECONDS,
            what="initdb",
        )
        for attempt in range(3):
            try:
                cluster.start()
                break
            except RuntimeError:
                # Another process took the free port between the probe and the start.
                if attempt == 2:
                    raise
                cluster.port = _free_port()
                time.sleep(0.5)
    except BaseException:
        cluster.remove()
        raise
    return cluster
