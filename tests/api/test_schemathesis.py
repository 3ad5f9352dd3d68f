"""The partner API against its own OpenAPI schema: Schemathesis (`--checks all`) drives the real
ASGI server (`manage.py serve` on the test database) as a recipient's and as a provider's API
key, and finds nothing: no server error, no status, content type, header or body the schema
does not document, no schema-valid request refused as malformed, no schema-invalid request
accepted, no ignored authentication.

Schemathesis's settings are in tests/api/schemathesis.toml; no check is turned off and no
operation is excluded. Rate limits are raised for the server it tests, so that its bursts are
not answered with 429s. SX_SCHEMATHESIS_SEED and SX_SCHEMATHESIS_EXAMPLES change the seed and
the number of examples per operation (e.g. for a longer run by hand).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import kill, serve_start
from tests.support.queues import private_queue_close, private_queue_open
from tests.support.schemathesis_data import schemathesis_world

pytestmark = pytest.mark.django_db(transaction=True)

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
CONFIG = Path(__file__).with_name("schemathesis.toml")
SEED = os.environ.get("SX_SCHEMATHESIS_SEED", "20261122")
EXAMPLES = os.environ.get("SX_SCHEMATHESIS_EXAMPLES", "5")
RUN_SECONDS = 600
OUTPUT_SHOWN = 40_000  # characters of Schemathesis's report in a failure message
# A run sends a few thousand requests in a couple of minutes, with a few keys.
UNTHROTTLED = {
    "API_THROTTLE_USER": "1000000/minute",
    "API_THROTTLE_ANON": "1000000/minute",
    "API_THROTTLE_BIDS": "1000000/minute",
}


@pytest.fixture
def queue(settings):
    private = private_queue_open(settings)
    yield private
    private_queue_close(private)


@pytest.fixture
def exchange(queue, tmp_path):
    """The data Schemathesis meets, and the base URL of a server serving it."""
    world = schemathesis_world()
    process = None
    try:
        process, url = serve_start(
            queue.name,
            tmp_path / "serve.log",
            JOB_STORAGE_DIR=str(tmp_path / "jobs"),
            **UNTHROTTLED,
        )
        yield world, url
    finally:
        kill(process)


def schemathesis_run(url: str, key: str, workdir: Path) -> tuple[int, str]:
    """`schemathesis run` against the server's schema as the API key: exit code and report."""
    workdir.mkdir(parents=True, exist_ok=True)
    command = [
        str(SCHEMATHESIS),
        "--config-file",
        str(CONFIG),
        "--no-color",
        "run",
        f"{url}/api/schema/",
        "--checks",
        "all",
        "--header",
        f"Authorization: Bearer {key}",
        "--max-examples",
        EXAMPLES,
        "--seed",
        SEED,
        "--request-timeout",
        "30",
        "--wait-for-schema",
        "30",
        "--workers",
        "2",
        "--no-shrink",
    ]
    try:
        finished = subprocess.run(
            command,
            cwd=workdir,  # its Hypothesis database and reports stay in the test's directory
            capture_output=True,
            text=True,
            timeout=RUN_SECONDS,
            env={**os.environ, "NO_COLOR": "1"},
        )
    except subprocess.TimeoutExpired as expired:
        output = (expired.stdout or b"").decode(errors="replace")
        return -1, f"Schemathesis did not finish within {RUN_SECONDS} s:\n{output}"
    return finished.returncode, finished.stdout + finished.stderr


def test_schemathesis_finds_no_failures_as_recipient_and_as_provider(exchange, tmp_path):
    world, url = exchange
    reports = {}
    for who, key in (("recipient", world.recipient_key), ("provider", world.provider_key)):
        code, output = schemathesis_run(url, key, tmp_path / who)
        if code != 0:
            reports[who] = output

    assert not reports, (
        "\n\n".join(
            f"=== Schemathesis as the {who}'s API key failed:\n{output[-OUTPUT_SHOWN:]}"
            for who, output in reports.items()
        )
        + f"\n\n=== server log:\n{(tmp_path / 'serve.log').read_text()[-OUTPUT_SHOWN:]}"
    )
