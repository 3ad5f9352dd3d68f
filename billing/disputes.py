"""Card issuers' disputes of paid statements (Stripe disputes, reported by webhook).

A dispute opened on a paid statement's charge marks the statement "disputed": its lines are not
settled to their providers while it is open, and the recipient's payment rating for each of
the statement's providers turns negative (SPEC §4.3: failed or disputed, negative until paid).
Won (or an inquiry closed without a chargeback), the statement is paid again, the rating
positive again and the held lines are settled with the next period. Lost, the money went back
to the card: the statement is "charged back" and counts as unpaid (it blocks bidding like an
unpaid lease) until it is paid again from its page, its lines are not settled, and what a
provider was already paid for them (before the dispute) is returned on its next settlement,
in proportion to the disputed part.

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
    ChargeStatus,
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
from marketplace.services import audit_log_record

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


@transaction.atomic
def dispute_apply(*, info: gateway.DisputeInfo, charge_pk: str | int | None = None) -> str:
    """Record what Stripe says of a dispute (the caller re-read it, and the charge it is about
    from its payment's metadata, `charge_pk`). Returns what was done: "no_charge" (not one of
    the exchange's payments), "unchanged", or the new status. A decided dispute is final: a
    later "open" read never reopens it."""
    charge = None
    if charge_pk not in (None, ""):
        charge = Charge.objects.select_for_update().filter(pk=str(charge_pk)).first()
    if charge is None and info.payment_intent_id:
        charge = (
            Charge.objects.select_for_update()
            .filter(payment_intent_id=info.payment_intent_id)
            .first()
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
        _dispute_audited(dispute, statement, "dispute.opened")
        if status == DisputeStatus.OPEN:
            return status
    if dispute.status != DisputeStatus.OPEN or status == DisputeStatus.OPEN:
        return "unchanged"
    dispute.status = status
    dispute.closed_at = timezone.now()
    dispute.save(update_fields=["status", "closed_at"])
    _dispute_audited(dispute, statement, f"dispute.{status}")
    if status == DisputeStatus.WON:
        _won(dispute, statement)
    else:
        _lost(dispute, charge, statement)
    return status


def _dispute_audited(dispute: Dispute, statement: Statement, action: str) -> None:
    audit_log_record(
        action=action,
        organization=statement.organization,
        target=dispute,
        data={
            "dispute": dispute.dispute_id,
            "statement": statement.number,
            "amount_minor": dispute.amount_minor,
            "currency": dispute.currency,
            "reason": dispute.reason,
        },
    )


def _opened(dispute: Dispute, statement: Statement) -> None:
    if statement.status == StatementStatus.PAID:
        statement.status = StatementStatus.DISPUTED
        statement.save(update_fields=["status"])
    _rate(statement)
    _tell(
        statement,
        f"Your card issuer disputes the payment of statement {statement.number} "
        f"({money_format(dispute.amount_minor, dispute.currency)}).",
    )


def _won(dispute: Dispute, statement: Statement) -> None:
    others_open = (
        Dispute.objects.filter(charge__statement=statement, status=DisputeStatus.OPEN)
        .exclude(pk=dispute.pk)
        .exists()
    )
    if statement.status == StatementStatus.DISPUTED and not others_open:
        statement.status = StatementStatus.PAID
        statement.save(update_fields=["status"])
    _rate(statement)
    _tell(statement, f"The dispute of statement {statement.number} is closed: the payment stands.")


def _lost(dispute: Dispute, charge: Charge, statement: Statement) -> None:
    """The disputed amount went back to the card: the statement is unpaid for it (its page
    offers to pay it again; it is never charged again on its own), and every provider already
    settled for the statement gives back (or, for a credit it bore, gets back) its net for
    the disputed part."""
    statement.status = StatementStatus.CHARGED_BACK
    statement.save(update_fields=["status"])
    # the charge is open for a new attempt of the amount taken back; the attempt that was
    # disputed is over (a late answer about it changes nothing)
    lost = sum(
        Dispute.objects.filter(charge=charge, status=DisputeStatus.LOST).values_list(
            "amount_minor", flat=True
        )
    )
    charge.amount_minor = min(max(1, lost), max(1, statement.amount_due_minor))
    charge.status = ChargeStatus.FAILED
    charge.attempts += 1
    charge.next_attempt_at = None
    charge.last_error_code = "charged_back"
    charge.last_error = "The payment was returned to the card after a dispute."
    charge.save()
    _reversals_record(dispute, charge, statement)
    _rate(statement)
    _tell(
        statement,
        f"The dispute of statement {statement.number} was decided for your card issuer: "
        f"{money_format(dispute.amount_minor, dispute.currency)} went back to the card and is "
        "unpaid. Pay it from the statement's page.",
    )


def _reversals_record(dispute: Dispute, charge: Charge, statement: Statement) -> None:
    """Per provider settled for the statement's lines: the net it was paid for them (its
    gross less its part of that settlement's actual fee), in proportion to the disputed part
    of the charge; negative (returned) for charges, positive (restored) for credits."""
    charged = max(1, statement.amount_due_minor)
    rows = LineItem.objects.filter(statement=statement, settlement__isnull=False).values_list(
        "provider_id",
        "currency",
        "settlement_id",
        "settlement__gross_minor",
        "settlement__fee_minor",
        "amount_minor",
    )
    gross_of: dict[tuple[int, str, int], int] = defaultdict(int)
    settlement_of: dict[int, tuple[int, int]] = {}
    for provider_id, currency, settlement_id, s_gross, s_fee, amount in rows:
        gross_of[(provider_id, currency, settlement_id)] += amount
        settlement_of[settlement_id] = (s_gross, s_fee)
    net_of: dict[tuple[int, str], int] = defaultdict(int)
    for (provider_id, currency, settlement_id), gross in gross_of.items():
        s_gross, s_fee = settlement_of[settlement_id]
        fee = half_up(s_fee * gross, s_gross) if s_gross > 0 else 0
        net_of[(provider_id, currency)] += gross - fee
    for (provider_id, currency), net in sorted(net_of.items()):
        returned = half_up(net * min(dispute.amount_minor, charged), charged)
        if returned:
            DisputeReversal.objects.get_or_create(
                dispute=dispute,
                provider_id=provider_id,
                defaults={"currency": currency, "amount_minor": -returned},
            )


def _rate(statement: Statement) -> None:
    """After commit, the recipient's payment rating for each of the statement's providers
    follows the statement as it then stands: paid (or nothing due) positive, otherwise
    negative until paid."""
    from billing.ratings import recipient_rating_from_payment

    def rate() -> None:
        current = Statement.objects.select_related("organization").get(pk=statement.pk)
        paid = current.status in (StatementStatus.PAID, StatementStatus.NOTHING_DUE)
        providers = {
            line.provider
            for line in current.lines.select_related("provider").filter(amount_minor__gt=0)
        }
        for provider in sorted(providers, key=lambda provider: provider.pk):
            recipient_rating_from_payment(
                organization=current.organization,
                provider=provider,
                paid=paid,
                reference=f"statement:{current.number}",
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
