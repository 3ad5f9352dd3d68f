"""Card issuers' disputes of paid statements (Stripe disputes, reported by webhook).

A dispute opened on a paid statement's charge marks the statement "disputed": its lines are not
settled to their providers while it is open, and the recipient's payment rating for each of
the statement's providers turns negative (SPEC §4.3: failed or disputed, negative until paid).
Won (or an inquiry closed without a chargeback), the statement is paid again, the rating
positive again and the held lines are settled with the next period. Lost, the money went back
to the card: the statement is "charged back" and counts as unpaid (it blocks bidding like an
unpaid lease), its lines are never settled, and what a provider was already paid for them
(before the dispute) is returned on its next settlement.

Each Stripe dispute is one `Dispute` row; the state applied comes from Stripe's own record
(re-read for every event), so events may arrive twice, late or out of order.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from functools import partial

from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from billing import stripe_gateway as gateway
from billing.models import (
    Charge,
    Dispute,
    DisputeReversal,
    DisputeStatus,
    LineItem,
    Statement,
    StatementStatus,
)
from billing.statements import half_up
from marketplace.live import organization_notify
from marketplace.money import money_format

logger = logging.getLogger(__name__)

DISPUTE_EVENTS = (
    "charge.dispute.created",
    "charge.dispute.updated",
    "charge.dispute.closed",
    "charge.dispute.funds_withdrawn",
    "charge.dispute.funds_reinstated",
)


def dispute_status_of(info: gateway.DisputeInfo) -> str:
    if info.lost:
        return DisputeStatus.LOST
    if info.closed:
        return DisputeStatus.WON
    return DisputeStatus.OPEN


def dispute_apply(*, info: gateway.DisputeInfo) -> str:
    """Record what Stripe says of a dispute (the caller re-read it). Returns what was done:
    "no_charge" (not one of the exchange's payments), "unchanged", or the new status. A
    decided dispute is final: a later "open" read never reopens it."""
    charge = (
        Charge.objects.select_for_update().filter(payment_intent_id=info.payment_intent_id).first()
        if info.payment_intent_id
        else None
    )
    if charge is None:
        logger.warning("Dispute %s is not about a charge of the exchange", info.id)
        return "no_charge"
    statement = Statement.objects.select_for_update().get(pk=charge.statement_id)
    status = dispute_status_of(info)
    dispute = Dispute.objects.select_for_update().filter(dispute_id=info.id).first()
    if dispute is None:
        dispute = Dispute.objects.create(
            dispute_id=info.id,
            charge=charge,
            amount_minor=info.amount_minor,
            currency=info.currency,
            reason=info.reason[:64],
            status=DisputeStatus.OPEN,
            opened_at=info.created,
        )
        _opened(dispute, statement)
        if status == DisputeStatus.OPEN:
            return status
    if dispute.status != DisputeStatus.OPEN or status == DisputeStatus.OPEN:
        return "unchanged"
    dispute.status = status
    dispute.closed_at = timezone.now()
    dispute.save(update_fields=["status", "closed_at"])
    if status == DisputeStatus.WON:
        _won(dispute, statement)
    else:
        _lost(dispute, statement)
    return status


def _opened(dispute: Dispute, statement: Statement) -> None:
    if statement.status == StatementStatus.PAID:
        statement.status = StatementStatus.DISPUTED
        statement.save(update_fields=["status"])
    _rate(statement, paid=False)
    _tell(
        statement,
        f"Your card issuer disputes the payment of statement {statement.number} "
        f"({money_format(dispute.amount_minor, dispute.currency)}).",
    )


def _won(dispute: Dispute, statement: Statement) -> None:
    if statement.status == StatementStatus.DISPUTED:
        statement.status = StatementStatus.PAID
        statement.save(update_fields=["status"])
    _rate(statement, paid=True)
    _tell(statement, f"The dispute of statement {statement.number} is closed: the payment stands.")


def _lost(dispute: Dispute, statement: Statement) -> None:
    statement.status = StatementStatus.CHARGED_BACK
    statement.save(update_fields=["status"])
    _rate(statement, paid=False)
    # what each provider was already paid for this statement's lines (its share of the
    # settlement's net: the line less the fee of that settlement), returned next settlement
    owed: dict[tuple[int, str], int] = defaultdict(int)
    settled = LineItem.objects.filter(statement=statement, settlement__isnull=False).values_list(
        "provider_id", "currency", "settlement_id", "settlement__fee_bps", "amount_minor"
    )
    by_settlement: dict[tuple[int, str, int], tuple[int, int]] = {}
    for provider_id, currency, settlement_id, bps, amount in settled:
        gross, _ = by_settlement.get((provider_id, currency, settlement_id), (0, bps))
        by_settlement[(provider_id, currency, settlement_id)] = (gross + amount, bps)
    for (provider_id, currency, _settlement_id), (gross, bps) in by_settlement.items():
        fee = half_up(gross * bps, 10_000) if gross > 0 else 0
        owed[(provider_id, currency)] += gross - fee
    for (provider_id, currency), net in sorted(owed.items()):
        if net > 0:
            DisputeReversal.objects.get_or_create(
                dispute=dispute,
                provider_id=provider_id,
                defaults={"currency": currency, "amount_minor": -net},
            )
    _tell(
        statement,
        f"The dispute of statement {statement.number} was decided for your card issuer: the "
        "payment was returned to the card and the statement is unpaid.",
    )


def _rate(statement: Statement, *, paid: bool) -> None:
    from billing.ratings import recipient_rating_from_payment

    def rate() -> None:
        providers = {line.provider for line in statement.lines.select_related("provider")}
        for provider in sorted(providers, key=lambda provider: provider.pk):
            recipient_rating_from_payment(
                organization=statement.organization,
                provider=provider,
                paid=paid,
                reference=f"statement:{statement.number}",
            )

    transaction.on_commit(rate)


def _tell(statement: Statement, text: str) -> None:
    transaction.on_commit(
        partial(
            organization_notify,
            statement.organization_id,
            text=text,
            url=reverse("statement_detail", args=[statement.number]),
        )
    )


def disputes_of(statement: Statement):
    """The disputes of a statement's charge, newest first."""
    return Dispute.objects.filter(charge__statement=statement).order_by("-opened_at", "-id")
