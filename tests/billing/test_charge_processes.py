"""No statement is charged twice when two real processes run the charges at the same time
(SPEC §6: exactly one charge per statement), against the test database and the session's
localstripe: neither in a race over statements never charged, nor when a process killed while
out with Stripe is taken over by two runs at once.

The processes use the test database, so the test's rows are committed for them
(`transaction=True`); they reach localstripe through the same settings as this process. Each
waits for a start file, so that both runs begin together."""

import json
import subprocess
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from django.db import connection

from billing.models import Charge, ChargeStatus, StatementStatus
from tests.conftest import WEBHOOK_SECRET
from tests.support.charges import (
    payment_intents_of,
    recipient_with_card,
    statements_due,
)
from tests.support.processes import PROCESS_WAIT_SECONDS, kill, manage_start, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

RECIPIENTS = 8
PERIOD = (date(2026, 11, 1), date(2026, 12, 1))
WON_AT = datetime(2026, 11, 10, 12, tzinfo=UTC)

# A periodic run of the charges (`charges_retry_due`), as a worker runs it; it starts when the
# start file appears and prints when it ran, to show that the runs overlapped.
CHARGES_RUN = """
import json, os, time
from datetime import datetime
from pathlib import Path
from django.db import connection
from billing.payments import charges_retry_due

connection.ensure_connection()
Path(os.environ["READY_FILE"]).touch()
start, deadline = Path(os.environ["START_FILE"]), time.monotonic() + 60
while not start.exists():
    if time.monotonic() > deadline:
        raise SystemExit("never told to start")
    time.sleep(0.001)
now = datetime.fromisoformat(os.environ["CHARGE_NOW"]) if os.environ["CHARGE_NOW"] else None
began = time.time()
tried = charges_retry_due(now=now)
print("RUN " + json.dumps({"tried": tried, "began": began, "ended": time.time()}))
"""

# A run that charges one statement and hangs while out with Stripe, until it is killed: after
# Stripe charged the card (its answer never recorded), or before Stripe heard of it.
CHARGE_THEN_HANG = """
import os, time
from pathlib import Path
from billing import payments, stripe_gateway as gateway

real_create = gateway.payment_intent_create

def create_then_hang(**kwargs):
    if os.environ["HANG"] == "after_stripe_charged":
        real_create(**kwargs)
    Path(os.environ["HUNG_FILE"]).touch()
    time.sleep(3600)

gateway.payment_intent_create = create_then_hang
payments.statement_charge(statement_id=int(os.environ["STATEMENT_ID"]))
"""


@pytest.fixture
def start_process(tmp_path, stripe_on_localstripe):
    """Starts `manage.py shell -c <code>` on the test database and the session's localstripe;
    the processes started are killed at the end."""
    if connection.vendor == "sqlite" and connection.is_in_memory_db():
        # the settings give SQLite a test database in a file; one in memory is not shared
        pytest.skip("the test database is in memory: processes cannot share it")
    started = []
    channel_prefix = f"sx-test-{uuid.uuid4().hex[:12]}"

    def start(name: str, code: str, **env: str) -> tuple:
        log = tmp_path / f"{name}.log"
        process = manage_start(
            "",  # no queue of its own: charging enqueues no task
            log,
            "shell",
            "-c",
            code,
            STRIPE_SECRET_KEY="",
            STRIPE_PUBLISHABLE_KEY="",
            STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
            LOCALSTRIPE_URL=stripe_on_localstripe.url,
            # on Redis, the paid notices go to no page of anyone else's
            CHANNELS_PREFIX=channel_prefix,
            EMAIL_URL="consolemail://",
            **env,
        )
        started.append(process)
        return process, log

    yield start
    kill(*started)


@pytest.fixture
def charges_run_together(start_process, tmp_path):
    """Runs the charges in `count` processes started at the same moment; once all have ended
    (each successfully), what each printed: how many statements it tried, and when it ran."""

    def run(count: int = 2, *, now: datetime | None = None) -> list[dict]:
        start_file = tmp_path / f"start-{uuid.uuid4().hex[:8]}"
        runs = {}
        for n in range(1, count + 1):
            ready_file = tmp_path / f"ready-{start_file.name}-{n}"
            process, log = start_process(
                f"charges-{start_file.name}-{n}",
                CHARGES_RUN,
                READY_FILE=str(ready_file),
                START_FILE=str(start_file),
                CHARGE_NOW=now.isoformat() if now else "",
            )
            runs[f"run {n}"] = (process, log, ready_file)
        watched = {name: (process, log) for name, (process, log, _) in runs.items()}
        wait_for(
            lambda: all(ready.exists() for _, _, ready in runs.values()),
            what="both runs ready",
            watched=watched,
        )
        start_file.touch()
        reports = []
        for name, (process, log, _) in runs.items():
            try:
                returncode = process.wait(timeout=PROCESS_WAIT_SECONDS)
            except subprocess.TimeoutExpired:
                kill(process)
                pytest.fail(f"{name} did not end within {PROCESS_WAIT_SECONDS} s:\n{_read(log)}")
            assert returncode == 0, f"{name} exited with {returncode}:\n{_read(log)}"
            lines = [line for line in _read(log).splitlines() if line.startswith("RUN ")]
            assert lines, f"{name} printed no result:\n{_read(log)}"
            reports.append(json.loads(lines[-1].removeprefix("RUN ")))
        # without this the race below would not have been run at all
        assert max(r["began"] for r in reports) < min(r["ended"] for r in reports), (
            f"the runs did not overlap: {reports}"
        )
        return reports

    return run


def _read(log: Path) -> str:
    return log.read_text() if log.exists() else ""


def test_two_processes_charging_at_once_charge_each_statement_once(
    stripe_on_localstripe, charges_run_together
):
    recipients = [
        recipient_with_card(stripe_on_localstripe.url, f"Recipient {n}") for n in range(RECIPIENTS)
    ]
    statements = statements_due(
        recipients,
        [10_000 + 111 * n for n in range(RECIPIENTS)],
        period=PERIOD,
        won_at=WON_AT,
    )
    assert not Charge.objects.exists()

    charges_run_together(2)

    for statement in statements:
        statement.refresh_from_db()
        assert statement.status == StatementStatus.PAID, statement.number
        charge = Charge.objects.get(statement=statement)
        assert charge.status == ChargeStatus.SUCCEEDED, statement.number
        intents = payment_intents_of(charge)
        # one PaymentIntent, paid, for the amount due: the card was charged once
        assert [(i.status, i.amount_minor) for i in intents] == [
            ("succeeded", statement.amount_due_minor)
        ], statement.number
        assert charge.payment_intent_id == intents[0].id
    assert Charge.objects.count() == RECIPIENTS


@pytest.mark.parametrize("killed", ["after_stripe_charged", "before_stripe_heard"])
def test_a_charge_of_a_killed_process_taken_over_by_two_at_once_is_paid_once(
    killed, stripe_on_localstripe, start_process, charges_run_together, tmp_path
):
    recipient = recipient_with_card(stripe_on_localstripe.url, "Acme Analytics")
    (statement,) = statements_due([recipient], [12_345], period=PERIOD, won_at=WON_AT)
    hung_file = tmp_path / "hung"
    process, log = start_process(
        "charge-then-hang",
        CHARGE_THEN_HANG,
        HANG=killed,
        HUNG_FILE=str(hung_file),
        STATEMENT_ID=str(statement.pk),
    )
    wait_for(hung_file.exists, what="the charge out with Stripe", process=process, log=log)
    kill(process)  # SIGKILL: nothing of it runs any more

    charge = Charge.objects.get(statement=statement)
    assert charge.status == ChargeStatus.PROCESSING
    charged = ["succeeded"] if killed == "after_stripe_charged" else []
    assert [i.status for i in payment_intents_of(charge)] == charged

    # the killed run's time is up: both runs find the charge's answer lost
    charges_run_together(2, now=charge.next_attempt_at + timedelta(seconds=1))

    statement.refresh_from_db()
    charge.refresh_from_db()
    assert statement.status == StatementStatus.PAID
    assert charge.status == ChargeStatus.SUCCEEDED
    intents = payment_intents_of(charge)
    assert [(i.status, i.amount_minor) for i in intents] == [
        ("succeeded", statement.amount_due_minor)
    ]
    assert charge.payment_intent_id == intents[0].id
