"""Tasks of billing: each billing period's statements and settlements, issued once the period
is over (periodic and idempotent: a period's statements and settlements are issued once)."""

from datetime import timedelta

from django.utils import timezone

from billing.payments import charges_retry_due
from billing.statements import billing_period_close, billing_period_of
from marketplace.taskqueue import periodic


@periodic(every_seconds=3600)
def billing_periods_close() -> int:
    """Close the period that ended most recently (the calendar month before this one)."""
    start, _end = billing_period_of(timezone.now())
    previous_start, _ = billing_period_of(timezone.now().replace(day=1) - timedelta(days=1))
    return billing_period_close(period_start=previous_start, period_end=start)


@periodic(every_seconds=60)
def charges_due() -> int:
    """Charge the statements issued and not charged yet, retry the declined ones whose time
    has come, and read back the ones whose answer was lost."""
    return charges_retry_due()
