"""Cards and charges (SPEC §6): a Stripe customer per recipient organization, cards saved with a
SetupIntent in the browser, and each statement's amount due charged to the default card as a
PaymentIntent (off-session, confirmed).

Exactly one charge per statement, whatever fails: the Charge row, with its idempotency key, is
committed before Stripe is called, and marked "processing" while the call is out. If the
answer is lost (Stripe unreachable, a worker killed), the next attempt first reads Stripe back
for a PaymentIntent made for this charge (its metadata names it) and takes its outcome; only
when there is none is a PaymentIntent created. localstripe ignores Idempotency-Key, so this
read-back is what guarantees it (with real Stripe the key adds a second guard).

A card that needs authentication gets the recipient an e-mail with a link to a page that
confirms the payment with Stripe.js; a declined charge is tried again after 1, 3 and 7 days
(CHARGE_RETRY_DAYS), with a notice each time, then left failed. The payment outcome sets the
recipient's rating (billing.ratings). Webhooks only trigger a re-read of the PaymentIntent.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from functools import partial

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from billing import stripe_gateway as gateway
from billing.disputes import DISPUTE_EVENTS, dispute_apply
from billing.models import (
    BillingAccount,
    Card,
    Charge,
    ChargeStatus,
    Statement,
    StatementStatus,
    StripeEvent,
)
from billing.statements import PAYABLE_STATUSES, billing_account_of, statement_mark_paid
from marketplace.live import organization_notify
from marketplace.models import Membership, Organization
from marketplace.money import money_format
from marketplace.services import audit_log_record

logger = logging.getLogger(__name__)

PAYMENT_INTENT_EVENTS = ("payment_intent.succeeded", "payment_intent.payment_failed")


class PaymentRefused(Exception):
    """A card or charge operation that cannot be done: `code` is stable, `message` says why."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


# --- customers and cards -------------------------------------------------------------------------


def customer_ensure(*, organization: Organization) -> BillingAccount:
    """The organization's billing account with its Stripe customer (created once)."""
    if not organization.is_recipient:
        raise PaymentRefused("not_a_recipient", "Only recipients (buyers) have cards on file.")
    account = billing_account_of(organization)
    if account.stripe_customer_id:
        return account
    with transaction.atomic():
        account = BillingAccount.objects.select_for_update().get(pk=account.pk)
        if account.stripe_customer_id:
            return account
        owner = (
            Membership.objects.filter(organization=organization)
            .select_related("user")
            .order_by("pk")
            .first()
        )
        try:
            account.stripe_customer_id = gateway.customer_create(
                name=organization.name,
                email=owner.user.email if owner else "",
                metadata={"organization": str(organization.pk)},
                idempotency_key=f"customer-{organization.pk}",
            )
        except gateway.GatewayUnavailable as exc:
            raise PaymentRefused(
                "payments_unavailable", f"Payments are unreachable: {exc}"
            ) from None
        account.save(update_fields=["stripe_customer_id"])
    return account


def card_setup_start(*, organization: Organization) -> gateway.SetupIntentInfo:
    """A SetupIntent the browser confirms with Stripe.js Elements (the card never passes
    through the exchange)."""
    account = customer_ensure(organization=organization)
    try:
        return gateway.setup_intent_create(
            customer_id=account.stripe_customer_id,
            metadata={"organization": str(organization.pk)},
        )
    except gateway.GatewayUnavailable as exc:
        raise PaymentRefused("payments_unavailable", f"Payments are unreachable: {exc}") from None


def card_setup_finish(*, organization: Organization, setup_intent_id: str) -> Card:
    """Record the card of a SetupIntent the browser confirmed (the first card becomes the
    default); safe to call twice."""
    account = customer_ensure(organization=organization)
    try:
        info = gateway.setup_intent_complete(
            setup_intent_id=setup_intent_id, customer_id=account.stripe_customer_id
        )
    except gateway.CardDeclined as exc:
        raise PaymentRefused("card_declined", f"The card was declined: {exc}") from None
    except gateway.GatewayError as exc:
        raise PaymentRefused("card_not_saved", f"The card could not be saved: {exc}") from None
    except gateway.GatewayUnavailable as exc:
        raise PaymentRefused("payments_unavailable", f"Payments are unreachable: {exc}") from None
    with transaction.atomic():
        account = BillingAccount.objects.select_for_update().get(pk=account.pk)
        card, created = Card.objects.get_or_create(
            payment_method_id=info.id,
            defaults={
                "account": account,
                "brand": info.brand,
                "last4": info.last4,
                "exp_month": info.exp_month,
                "exp_year": info.exp_year,
                "is_default": not account.cards.filter(is_default=True).exists(),
            },
        )
        if created:
            audit_log_record(
                action="card.saved",
                organization=organization,
                target=card,
                data={"brand": card.brand, "last4": card.last4},
            )
        charges_rearm(organization=organization)
    return card


def card_remove(*, card: Card) -> None:
    """Detach the card at Stripe and forget it; the next card becomes the default."""
    try:
        gateway.payment_method_detach(card.payment_method_id)
    except gateway.GatewayUnavailable as exc:
        raise PaymentRefused("payments_unavailable", f"Payments are unreachable: {exc}") from None
    except gateway.GatewayError:
        pass  # already gone at Stripe: forget it here too
    with transaction.atomic():
        account = BillingAccount.objects.select_for_update().get(pk=card.account_id)
        was_default = card.is_default
        audit_log_record(
            action="card.removed",
            organization=account.organization,
            target=card,
            data={"brand": card.brand, "last4": card.last4},
        )
        Card.objects.filter(pk=card.pk).delete()
        if was_default:
            following = account.cards.order_by("-created_at", "-pk").first()
            if following is not None:
                following.is_default = True
                following.save(update_fields=["is_default"])


def card_on_file(organization: Organization) -> bool:
    return Card.objects.filter(account__organization=organization).exists()


# --- charges -------------------------------------------------------------------------------------


# A charge marked "processing" is left to the run that sent it for this long (longer than the
# gateway's read time-out); past it, its answer counts as lost and Stripe is read back.
PROCESSING_SECONDS = 120
# An error on the exchange's side (not the card's) is tried again after this long.
ERROR_RETRY_SECONDS = 3600
# last_error_code of a charge whose attempt could not reach Stripe (outcome unknown).
STRIPE_UNREACHABLE = "stripe_unreachable"


def statement_charge(*, statement_id: int, now=None) -> str:
    """Charge a statement's amount due to its recipient's default card (one charge per
    statement; safe to run any number of times, in several processes at once). Returns the
    charge's status. `now` is the time retries are due by (tests move it).

    A "processing" charge belongs to the run that sent it until PROCESSING_SECONDS pass; then
    Stripe is read back for that attempt (its metadata names the charge and the attempt), and
    only if Stripe never saw it is the same attempt sent again, with the same idempotency
    key. A new attempt (a new key) follows only a decline whose retry is due."""
    now = now or timezone.now()
    charge = _charge_record(statement_id)
    if charge is None:
        return "nothing_due"
    with transaction.atomic():
        charge = Charge.objects.select_for_update().get(pk=charge.pk)
        if charge.status in (ChargeStatus.SUCCEEDED, ChargeStatus.REQUIRES_ACTION):
            return charge.status
        if charge.status != ChargeStatus.PENDING and (
            charge.next_attempt_at is None or charge.next_attempt_at > now
        ):
            return charge.status  # out with another run, or no retry due
        statement = Statement.objects.select_related("organization").get(pk=charge.statement_id)
        account = BillingAccount.objects.filter(organization=statement.organization).first()
        if charge.status == ChargeStatus.PROCESSING:
            # the attempt's answer was lost: what Stripe did decides, before any card check
            found = _payment_intent_of(charge, account) if account else None
            if found is not None:
                return _outcome_apply(charge, found, now=now)
        else:
            charge.attempts += 1  # a new attempt: a new PaymentIntent, a new key
        card = (
            Card.objects.filter(account=account).order_by("-is_default", "-created_at").first()
            if account
            else None
        )
        if card is None or not account.stripe_customer_id:
            _failed(charge, "no_card", "No card on file: add one to pay this statement.")
            return charge.status
        charge.status = ChargeStatus.PROCESSING
        charge.payment_method_id = card.payment_method_id
        charge.next_attempt_at = now + timedelta(seconds=PROCESSING_SECONDS)
        charge.save(
            update_fields=[
                "status",
                "attempts",
                "payment_method_id",
                "next_attempt_at",
                "updated_at",
            ]
        )
        attempt, charge_pk = charge.attempts, charge.pk
    # committed: the charge is known to be out before Stripe hears of it
    try:
        intent = gateway.payment_intent_create(
            amount_minor=charge.amount_minor,
            currency=charge.currency,
            customer_id=account.stripe_customer_id,
            payment_method_id=card.payment_method_id,
            idempotency_key=f"{charge.idempotency_key}-{attempt}",
            metadata={
                "charge": str(charge.pk),
                "attempt": str(attempt),
                "statement": statement.number,
            },
        )
    except gateway.AuthenticationRequired as exc:
        intent = exc.payment_intent
    except gateway.CardDeclined as exc:
        with transaction.atomic():
            charge = _still_sent(charge.pk, attempt)
            if charge is None:
                return Charge.objects.get(pk=charge_pk).status
            if exc.payment_intent_id:
                charge.payment_intent_id = exc.payment_intent_id
            return _declined(
                charge, exc.decline_code or exc.code or "card_declined", str(exc), now=now
            )
    except gateway.GatewayUnavailable as exc:
        # outcome unknown: stays "processing"; once its time is up (next_attempt_at) the
        # periodic job reads Stripe back, and sends the same attempt again (same key) only if
        # Stripe never saw it
        logger.warning("Charge %s: Stripe unreachable, read back later: %s", charge.pk, exc)
        Charge.objects.filter(pk=charge.pk, status=ChargeStatus.PROCESSING).update(
            last_error_code=STRIPE_UNREACHABLE,
            last_error=f"Stripe unreachable, outcome not known yet: {exc}",
        )
        return ChargeStatus.PROCESSING
    except gateway.GatewayError as exc:
        with transaction.atomic():
            charge = _still_sent(charge.pk, attempt)
            if charge is None:
                return Charge.objects.get(pk=charge_pk).status
            return _exchange_error(charge, exc, now=now)
    with transaction.atomic():
        charge = _still_sent(charge.pk, attempt)
        if charge is None:
            return Charge.objects.get(pk=charge_pk).status
        return _outcome_apply(charge, intent, now=now)


def _charge_audited(charge: Charge, action: str, **data) -> None:
    statement = Statement.objects.only("organization_id", "number").get(pk=charge.statement_id)
    audit_log_record(
        action=action,
        organization=statement.organization,
        target=charge,
        data={
            "statement": statement.number,
            "amount_minor": charge.amount_minor,
            "currency": charge.currency,
            "attempt": charge.attempts,
            "payment_intent": charge.payment_intent_id,
            **data,
        },
    )


def _still_sent(charge_pk: int, attempt: int) -> Charge | None:
    """The charge, locked, if it still waits for this attempt's answer (a webhook or another
    run may have recorded it meanwhile); None otherwise."""
    charge = Charge.objects.select_for_update().get(pk=charge_pk)
    if charge.status != ChargeStatus.PROCESSING or charge.attempts != attempt:
        return None
    return charge


def _exchange_error(charge: Charge, exc: Exception, *, now) -> str:
    """Stripe refused the charge for a reason of the exchange's (a key, an amount), not the
    card's: no decline counted, no rating, tried again later; logged for the operators."""
    logger.error("Charge %s refused by Stripe (not a decline): %s", charge.pk, exc)
    charge.status = ChargeStatus.ERROR
    charge.last_error_code = (getattr(exc, "code", "") or "stripe_error")[:64]
    charge.last_error = str(exc)
    charge.next_attempt_at = now + timedelta(seconds=ERROR_RETRY_SECONDS)
    charge.save()
    _charge_audited(charge, "charge.error", code=charge.last_error_code)
    return charge.status


def _charge_record(statement_id: int) -> Charge | None:
    """The statement's charge, recorded (and committed) once, before any call to Stripe."""
    with transaction.atomic():
        statement = Statement.objects.select_for_update().get(pk=statement_id)
        if statement.amount_due_minor <= 0 or statement.status == StatementStatus.NOTHING_DUE:
            return None
        charge = Charge.objects.filter(statement=statement).first()
        if charge is None:
            charge = Charge.objects.create(
                statement=statement,
                amount_minor=statement.amount_due_minor,
                currency=statement.currency,
                idempotency_key=f"charge-{uuid.uuid4().hex}",
            )
    return charge


def _payment_intent_of(charge: Charge, account: BillingAccount):
    """The PaymentIntent Stripe made for the charge's current attempt, if the call reached it
    (its metadata names the charge and the attempt); None if it never did."""
    found = gateway.payment_intents_find(
        customer_id=account.stripe_customer_id,
        metadata_key="charge",
        metadata_value=str(charge.pk),
    )
    attempt = str(charge.attempts)
    current = [intent for intent in found if (intent.metadata or {}).get("attempt") == attempt]
    return current[-1] if current else None


def _outcome_apply(charge: Charge, intent, *, now=None) -> str:
    """Record what Stripe says of the charge's PaymentIntent for its current attempt (the
    caller holds the lock)."""
    now = now or timezone.now()
    statement = Statement.objects.select_related("organization").get(pk=charge.statement_id)
    charge.payment_intent_id = intent.id
    if intent.succeeded:
        if charge.status != ChargeStatus.SUCCEEDED:
            charge.status = ChargeStatus.SUCCEEDED
            charge.succeeded_at = now
            charge.next_attempt_at = None
            charge.last_error_code = ""
            charge.last_error = ""
            charge.save()
            _charge_audited(charge, "charge.succeeded")
            statement_mark_paid(statement=statement)
            transaction.on_commit(partial(_payment_rated, charge.pk, True))
            transaction.on_commit(
                partial(
                    organization_notify,
                    statement.organization_id,
                    text=f"Statement {statement.number} paid: "
                    f"{money_format(charge.amount_minor, charge.currency)}.",
                    url=reverse("statement_detail", args=[statement.number]),
                )
            )
        return charge.status
    if intent.requires_authentication:
        charge.status = ChargeStatus.REQUIRES_ACTION
        charge.client_secret = intent.client_secret or ""
        charge.next_attempt_at = None
        charge.save()
        _charge_audited(charge, "charge.requires_authentication")
        Statement.objects.filter(pk=statement.pk, status__in=PAYABLE_STATUSES).update(
            status=StatementStatus.ACTION_REQUIRED
        )
        transaction.on_commit(partial(_authentication_request, charge.pk))
        return charge.status
    if intent.status in ("processing", "requires_capture", "requires_confirmation"):
        # not decided yet at Stripe: read back again later (or a webhook tells)
        charge.status = ChargeStatus.PROCESSING
        charge.next_attempt_at = now + timedelta(seconds=PROCESSING_SECONDS)
        charge.save()
        return charge.status
    return _declined(
        charge,
        intent.last_error_code or "card_declined",
        intent.last_error_message or "The card was declined.",
        now=now,
    )


def _declined(charge: Charge, code: str, message: str, *, now=None) -> str:
    """A declined attempt: tried again after the next delay of CHARGE_RETRY_DAYS, then left
    failed; the recipient is told each time (the caller holds the lock)."""
    retry_days = list(getattr(settings, "CHARGE_RETRY_DAYS", (1, 3, 7)))
    charge.declines += 1
    charge.status = ChargeStatus.FAILED
    charge.last_error_code = code[:64]
    charge.last_error = message
    charge.next_attempt_at = (
        (now or timezone.now()) + timedelta(days=retry_days[charge.declines - 1])
        if charge.declines <= len(retry_days)
        else None
    )
    charge.save()
    _charge_audited(charge, "charge.declined", code=charge.last_error_code)
    Statement.objects.filter(pk=charge.statement_id, status__in=PAYABLE_STATUSES).update(
        status=StatementStatus.PAYMENT_FAILED
    )
    transaction.on_commit(partial(_payment_rated, charge.pk, False))
    transaction.on_commit(partial(_decline_notice, charge.pk))
    return charge.status


def _failed(charge: Charge, code: str, message: str) -> None:
    charge.status = ChargeStatus.FAILED
    charge.last_error_code = code
    charge.last_error = message
    charge.next_attempt_at = None
    charge.save()
    Statement.objects.filter(pk=charge.statement_id, status__in=PAYABLE_STATUSES).update(
        status=StatementStatus.PAYMENT_FAILED
    )
    transaction.on_commit(partial(_decline_notice, charge.pk))


def charges_retry_due(*, now=None) -> int:
    """Try again the declined charges whose retry is due, and the ones whose outcome is not
    known (a lost answer); returns how many were tried (a periodic job)."""
    now = now or timezone.now()
    due = list(
        Charge.objects.filter(
            status__in=(
                ChargeStatus.FAILED,
                ChargeStatus.PROCESSING,
                ChargeStatus.PENDING,
                ChargeStatus.ERROR,
            ),
            next_attempt_at__lte=now,
        ).values_list("statement_id", flat=True)
    )
    # charges recorded and never sent (the run stopped before), whatever their time
    due += list(
        Charge.objects.filter(status=ChargeStatus.PENDING).values_list("statement_id", flat=True)
    )
    # and the statements issued that were never charged
    due += list(
        Statement.objects.filter(status=StatementStatus.ISSUED, charge__isnull=True).values_list(
            "pk", flat=True
        )
    )
    tried = 0
    for statement_id in dict.fromkeys(due):
        try:
            statement_charge(statement_id=statement_id, now=now)
        except gateway.GatewayUnavailable:
            logger.warning("Stripe unreachable: statement %s is tried again later", statement_id)
            continue
        tried += 1
    return tried


def payment_authenticated(*, charge: Charge) -> str:
    """The recipient completed (or gave up) the bank's authentication in the browser: read the
    PaymentIntent back. Only a charge waiting for authentication is touched."""
    if charge.status != ChargeStatus.REQUIRES_ACTION or not charge.payment_intent_id:
        return charge.status
    try:
        intent = gateway.payment_intent_retrieve(charge.payment_intent_id)
    except (gateway.GatewayUnavailable, gateway.GatewayError) as exc:
        raise PaymentRefused(
            "payments_unavailable", f"The payment could not be read back yet: {exc}"
        ) from None
    with transaction.atomic():
        locked = Charge.objects.select_for_update().get(pk=charge.pk)
        if locked.status != ChargeStatus.REQUIRES_ACTION or locked.payment_intent_id != intent.id:
            return locked.status
        if intent.requires_authentication:
            return locked.status
        return _outcome_apply(locked, intent)


def statement_pay(*, statement: Statement) -> str:
    """Pay a statement now (its page's button): a charge that failed, whatever its retry
    schedule, is tried again at once with the default card."""
    with transaction.atomic():
        charge = Charge.objects.select_for_update().filter(statement=statement).first()
        if charge is not None and charge.status in (ChargeStatus.FAILED, ChargeStatus.ERROR):
            charge.next_attempt_at = timezone.now()
            charge.save(update_fields=["next_attempt_at", "updated_at"])
    return statement_charge(statement_id=statement.pk)


def charges_rearm(*, organization: Organization) -> int:
    """A card was saved: the organization's charges that failed for want of one, or ran out of
    retries, are tried again (now)."""
    return Charge.objects.filter(
        statement__organization=organization,
        status=ChargeStatus.FAILED,
        next_attempt_at__isnull=True,
    ).update(next_attempt_at=timezone.now())


# --- webhooks ------------------------------------------------------------------------------------


def stripe_event_process(*, payload: bytes, signature_header: str) -> str:
    """A Stripe webhook: verified (gateway.WebhookRefused otherwise), processed once per event
    id, and only a trigger: the PaymentIntent is read back from Stripe, so events may come in
    any order, twice, or late. An event about an older attempt, or a failure of a charge not
    waiting for one, changes nothing. Stripe unreachable meanwhile: gateway.GatewayUnavailable,
    and the event is not recorded, so Stripe's retry is processed. Returns what was done."""
    event = gateway.webhook_event_verify(payload=payload, signature_header=signature_header)
    if StripeEvent.objects.filter(event_id=event.id).exists():
        return "already_processed"
    outcome = "ignored"
    intent = dispute = None
    # the object is re-read (may raise: the event is then not recorded)
    if event.type in PAYMENT_INTENT_EVENTS and event.object_id:
        intent = gateway.payment_intent_retrieve(event.object_id)
    elif event.type in DISPUTE_EVENTS and event.object_id:
        dispute = gateway.dispute_retrieve(event.object_id)
        # the charge it is about, from the payment's own metadata (the answer that named the
        # payment to us may have been lost)
        disputed = (
            gateway.payment_intent_retrieve(dispute.payment_intent_id)
            if dispute.payment_intent_id
            else None
        )
    with transaction.atomic():
        _record, created = StripeEvent.objects.get_or_create(
            event_id=event.id, defaults={"type": event.type, "object_id": event.object_id}
        )
        if not created:
            return "already_processed"
        if intent is not None:
            outcome = _event_apply(intent)
        elif dispute is not None:
            charge_pk = (disputed.metadata or {}).get("charge") if disputed else None
            outcome = f"dispute {dispute_apply(info=dispute, charge_pk=charge_pk)}"
        StripeEvent.objects.filter(event_id=event.id).update(outcome=outcome[:200])
    return outcome


def _event_apply(intent) -> str:
    charge_pk = (intent.metadata or {}).get("charge")
    attempt = (intent.metadata or {}).get("attempt")
    charge = Charge.objects.select_for_update().filter(pk=charge_pk).first() if charge_pk else None
    if charge is None:
        return "no_charge"
    if charge.status == ChargeStatus.SUCCEEDED:
        return "already_paid"
    if attempt != str(charge.attempts):
        return "older_attempt"
    if intent.succeeded:
        return _outcome_apply(charge, intent)
    if charge.status in (ChargeStatus.PROCESSING, ChargeStatus.REQUIRES_ACTION) and (
        intent.status in ("requires_payment_method", "canceled") or intent.requires_authentication
    ):
        return _outcome_apply(charge, intent)
    return f"unchanged ({intent.status})"


# --- side effects --------------------------------------------------------------------------------


def _payment_rated(charge_pk: int, paid: bool) -> None:
    """The recipient's rating follows the payment (billing.ratings decides how)."""
    from billing.ratings import recipient_rating_from_payment

    charge = Charge.objects.select_related("statement__organization").get(pk=charge_pk)
    statement = charge.statement
    providers = {line.provider for line in statement.lines.select_related("provider")}
    for provider in providers:
        recipient_rating_from_payment(
            organization=statement.organization,
            provider=provider,
            paid=paid,
            reference=f"statement:{statement.number}",
        )


def _members_emails(organization_id: int) -> list[str]:
    return list(
        Membership.objects.filter(organization_id=organization_id).values_list(
            "user__email", flat=True
        )
    )


def _authentication_request(charge_pk: int) -> None:
    charge = Charge.objects.select_related("statement").get(pk=charge_pk)
    statement = charge.statement
    link = settings.SITE_URL.rstrip("/") + reverse("charge_authenticate", args=[charge.pk])
    send_mail(
        f"Confirm the payment of statement {statement.number}",
        f"Your bank asks you to confirm the payment of "
        f"{money_format(charge.amount_minor, charge.currency)} for statement "
        f"{statement.number}. Confirm it here: {link}",
        None,
        _members_emails(statement.organization_id),
    )
    organization_notify(
        statement.organization_id,
        text=f"Confirm the payment of statement {statement.number} with your bank.",
        url=reverse("charge_authenticate", args=[charge.pk]),
    )


def _decline_notice(charge_pk: int) -> None:
    charge = Charge.objects.select_related("statement").get(pk=charge_pk)
    statement = charge.statement
    when = (
        f"It is tried again on {charge.next_attempt_at:%Y-%m-%d}."
        if charge.next_attempt_at
        else "Add or update a card, then pay it from the statement's page."
    )
    send_mail(
        f"The payment of statement {statement.number} failed",
        f"{money_format(charge.amount_minor, charge.currency)} for statement "
        f"{statement.number} could not be charged: {charge.last_error} {when}",
        None,
        _members_emails(statement.organization_id),
    )
