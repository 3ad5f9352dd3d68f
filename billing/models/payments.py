"""Billing records: the account of a recipient, the line items charged to it (each attributed to
a provider), the statements that gather them per period, and the settlements owed to providers.
Money is an integer amount in minor units with its ISO 4217 currency; a total never mixes
currencies."""

from django.db import models
from django.db.models import Q

from auctions.models import Lease
from marketplace.models import Organization
from marketplace.money import CURRENCY_CHOICES, currency_validate
from providers.models import ProviderProfile
from segmentation.models import BillingPresentation, Job, SlaBreach, UsageRecord


class BillingAccount(models.Model):
    """A recipient organization as billing knows it: how its statements are presented (unless a
    job's profile says otherwise) and, with payments, its Stripe customer."""

    organization = models.OneToOneField(
        Organization, on_delete=models.CASCADE, related_name="billing_account"
    )
    presentation = models.CharField(
        max_length=16, choices=BillingPresentation.choices, default=BillingPresentation.CONSOLIDATED
    )
    stripe_customer_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(presentation__in=BillingPresentation.values),
                name="billing_account_presentation_valid",
            )
        ]

    def __str__(self):
        return f"Billing account of {self.organization}"


class LineItemKind(models.TextChoices):
    AUCTION = "auction", "Won auction"
    USAGE = "usage", "Metered usage"
    SUBCONTRACT = "subcontract", "Subcontracted work"
    SLA_CREDIT = "sla_credit", "SLA credit"
    SPONSORSHIP = "sponsorship", "Sponsorship allocation"
    CREDIT_CARRIED_IN = "credit_in", "Credit carried from an earlier statement"
    CREDIT_CARRIED_OUT = "credit_out", "Credit carried to the next statement"


# Kinds whose lines are credits to the recipient (0 or less); every other kind charges (0 or more).
CREDIT_KINDS = (LineItemKind.SLA_CREDIT, LineItemKind.CREDIT_CARRIED_IN)


class LineItem(models.Model):
    """One charge to a recipient (a credit when negative), attributed to a provider. Recorded
    once per source (a lease, a usage record, an SLA breach), then gathered on a statement."""

    organization = models.ForeignKey(
        Organization, on_delete=models.PROTECT, related_name="billing_lines"
    )
    provider = models.ForeignKey(
        ProviderProfile, on_delete=models.PROTECT, related_name="billing_lines"
    )
    kind = models.CharField(max_length=16, choices=LineItemKind.choices)
    description = models.CharField(max_length=300)
    amount_minor = models.BigIntegerField()
    currency = models.CharField(
        max_length=3, choices=CURRENCY_CHOICES, validators=[currency_validate]
    )
    presentation = models.CharField(
        max_length=16,
        choices=BillingPresentation.choices,
        help_text="On a consolidated statement, or on the provider's own.",
    )
    occurred_at = models.DateTimeField()
    source = models.CharField(
        max_length=80, unique=True, help_text="What it bills, once: lease:12, usage:40, sla:3."
    )
    lease = models.ForeignKey(Lease, on_delete=models.PROTECT, null=True, blank=True)
    job = models.ForeignKey(Job, on_delete=models.PROTECT, null=True, blank=True)
    usage_record = models.OneToOneField(
        UsageRecord, on_delete=models.PROTECT, null=True, blank=True, related_name="billing_line"
    )
    sla_breach = models.OneToOneField(
        SlaBreach, on_delete=models.PROTECT, null=True, blank=True, related_name="billing_credit"
    )
    group_line = models.ForeignKey(
        "self",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="shares",
        help_text="For a payer's share: the buying group's line it is a share of.",
    )
    statement = models.ForeignKey(
        "Statement", on_delete=models.SET_NULL, null=True, blank=True, related_name="lines"
    )
    settlement = models.ForeignKey(
        "Settlement",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="lines",
        help_text="The provider's settlement that paid it out (once its statement was paid).",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["occurred_at", "id"]
        indexes = [
            models.Index(
                fields=["organization", "statement", "occurred_at"], name="billing_line_unbilled"
            )
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=LineItemKind.values), name="billing_line_kind_valid"
            ),
            models.CheckConstraint(
                condition=(Q(kind__in=CREDIT_KINDS) & Q(amount_minor__lte=0))
                | (~Q(kind__in=CREDIT_KINDS) & Q(amount_minor__gte=0)),
                name="billing_line_sign",
                violation_error_message="Credits are negative, charges positive.",
            ),
        ]

    def __str__(self):
        return f"{self.get_kind_display()}: {self.amount_minor} {self.currency}"


class StatementStatus(models.TextChoices):
    ISSUED = "issued", "Issued"
    NOTHING_DUE = "nothing_due", "Nothing due"
    PAID = "paid", "Paid"
    ACTION_REQUIRED = "action_required", "Card authentication needed"
    PAYMENT_FAILED = "payment_failed", "Payment failed"
    DISPUTED = "disputed", "Disputed with the card issuer"
    CHARGED_BACK = "charged_back", "Refunded to the card after a dispute"


class Statement(models.Model):
    """A recipient's billing document for a period in one currency: consolidated (every
    provider's lines, grouped by provider) or one provider's own."""

    organization = models.ForeignKey(
        Organization, on_delete=models.PROTECT, related_name="statements"
    )
    number = models.CharField(max_length=40, unique=True)
    period_start = models.DateField()
    period_end = models.DateField(help_text="The day after the period's last day.")
    presentation = models.CharField(max_length=16, choices=BillingPresentation.choices)
    provider = models.ForeignKey(
        ProviderProfile,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="statements",
        help_text="The provider of a per-provider statement; empty when consolidated.",
    )
    currency = models.CharField(max_length=3, choices=CURRENCY_CHOICES)
    charges_minor = models.BigIntegerField(help_text="The sum of the positive lines.")
    credits_minor = models.BigIntegerField(help_text="The sum of the credits (negative or 0).")
    carried_minor = models.BigIntegerField(
        default=0,
        help_text="Credits beyond the charges, carried to the next statement (0 or more).",
    )
    total_minor = models.BigIntegerField(
        help_text="Charges plus credits plus what was carried forward; due when positive."
    )
    status = models.CharField(max_length=20, choices=StatementStatus.choices)
    issued_at = models.DateTimeField(auto_now_add=True)
    paid_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-period_start", "organization", "currency", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "period_start", "currency"],
                condition=Q(provider__isnull=True),
                name="statement_one_consolidated_per_period",
                violation_error_message="This statement was already issued.",
            ),
            models.UniqueConstraint(
                fields=["organization", "period_start", "currency", "provider"],
                condition=Q(provider__isnull=False),
                name="statement_one_per_provider_per_period",
                violation_error_message="This statement was already issued.",
            ),
            models.CheckConstraint(
                condition=Q(
                    total_minor=models.F("charges_minor")
                    + models.F("credits_minor")
                    + models.F("carried_minor")
                ),
                name="statement_total_reconciles",
            ),
            models.CheckConstraint(
                condition=Q(status__in=StatementStatus.values), name="statement_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(carried_minor__gte=0) & Q(total_minor__gte=0),
                name="statement_carried_and_total_not_negative",
            ),
            models.CheckConstraint(
                condition=(Q(presentation="per_provider") & Q(provider__isnull=False))
                | (Q(presentation="consolidated") & Q(provider__isnull=True)),
                name="statement_provider_matches_presentation",
            ),
        ]

    def __str__(self):
        return f"Statement {self.number}"

    @property
    def amount_due_minor(self) -> int:
        return max(0, self.total_minor)


class Settlement(models.Model):
    """What the exchange owes a provider for a period in one currency: the lines attributed
    to it whose statements were paid by the period's end and not settled before (gross), the
    exchange's fee, and the net."""

    provider = models.ForeignKey(
        ProviderProfile, on_delete=models.PROTECT, related_name="settlements"
    )
    period_start = models.DateField()
    period_end = models.DateField()
    currency = models.CharField(max_length=3, choices=CURRENCY_CHOICES)
    gross_minor = models.BigIntegerField()
    fee_minor = models.BigIntegerField()
    reversals_minor = models.BigIntegerField(
        default=0,
        help_text="What the provider returns (negative) or gets back (positive) of earlier "
        "settlements after lost disputes.",
    )
    net_minor = models.BigIntegerField()
    fee_bps = models.PositiveIntegerField(help_text="The fee rate, in basis points.")
    lines_count = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-period_start", "provider", "currency"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "period_start", "currency"],
                name="settlement_unique_per_period",
            ),
            models.CheckConstraint(
                condition=Q(
                    net_minor=models.F("gross_minor")
                    - models.F("fee_minor")
                    + models.F("reversals_minor")
                ),
                name="settlement_net_reconciles",
            ),
        ]

    def __str__(self):
        return f"Settlement of {self.provider} from {self.period_start}"


class Card(models.Model):
    """A card on file of a recipient (a Stripe payment method of its customer), as the
    exchange lists it; the card's number never reaches the exchange."""

    account = models.ForeignKey(BillingAccount, on_delete=models.CASCADE, related_name="cards")
    payment_method_id = models.CharField(max_length=64, unique=True)
    brand = models.CharField(max_length=20)
    last4 = models.CharField(max_length=4)
    exp_month = models.PositiveSmallIntegerField()
    exp_year = models.PositiveSmallIntegerField()
    is_default = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-is_default", "-created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["account"],
                condition=Q(is_default=True),
                name="card_one_default_per_account",
            )
        ]

    def __str__(self):
        return f"{self.brand.title()} •••• {self.last4}"


class ChargeStatus(models.TextChoices):
    PENDING = "pending", "Recorded, not sent"
    PROCESSING = "processing", "Sent, outcome not known yet"
    SUCCEEDED = "succeeded", "Paid"
    REQUIRES_ACTION = "requires_action", "Card authentication needed"
    FAILED = "failed", "Declined"
    ERROR = "error", "Refused by Stripe (the exchange's side)"


class Charge(models.Model):
    """The charge of a statement's amount due to a card: a PaymentIntent, recorded here with
    its idempotency key before Stripe is called, so a retry or a crash between the call and
    its answer never charges twice (the outcome is then read back from Stripe)."""

    statement = models.OneToOneField(Statement, on_delete=models.PROTECT, related_name="charge")
    amount_minor = models.PositiveBigIntegerField()
    currency = models.CharField(max_length=3, choices=CURRENCY_CHOICES)
    idempotency_key = models.CharField(max_length=64, unique=True)
    status = models.CharField(
        max_length=20, choices=ChargeStatus.choices, default=ChargeStatus.PENDING
    )
    payment_intent_id = models.CharField(max_length=64, blank=True, db_index=True)
    payment_method_id = models.CharField(max_length=64, blank=True)
    client_secret = models.CharField(max_length=200, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    declines = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error_code = models.CharField(max_length=64, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    succeeded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=ChargeStatus.values), name="charge_status_valid"
            ),
            models.CheckConstraint(
                condition=~Q(status="succeeded") | ~Q(payment_intent_id=""),
                name="charge_succeeded_has_payment_intent",
            ),
        ]

    def __str__(self):
        return f"Charge of {self.statement.number}"


class StripeEvent(models.Model):
    """A Stripe webhook event processed: each event id once, whatever the order."""

    event_id = models.CharField(max_length=100, unique=True)
    type = models.CharField(max_length=100)
    object_id = models.CharField(max_length=100, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)
    outcome = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-received_at"]

    def __str__(self):
        return f"{self.type} {self.event_id}"


class DisputeStatus(models.TextChoices):
    OPEN = "open", "Open: the card issuer investigates"
    WON = "won", "Won: the payment stands"
    LOST = "lost", "Lost: refunded to the card"


class Dispute(models.Model):
    """A recipient's card issuer disputes a paid charge (a Stripe dispute). While it is open the
    statement is not settled to its providers; lost, the statement counts as unpaid again and
    what its providers were already paid for it is reversed on their next settlement."""

    dispute_id = models.CharField(max_length=64, unique=True)
    charge = models.ForeignKey(Charge, on_delete=models.PROTECT, related_name="disputes")
    amount_minor = models.PositiveBigIntegerField()
    currency = models.CharField(max_length=3, choices=CURRENCY_CHOICES)
    reason = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=8, choices=DisputeStatus.choices)
    opened_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-opened_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=DisputeStatus.values), name="dispute_status_valid"
            ),
        ]

    def __str__(self):
        return f"Dispute {self.dispute_id}"


class DisputeReversal(models.Model):
    """What one provider returns after a lost dispute, for lines of the disputed statement it
    was already settled for: the net it was paid for them, deducted from its next settlement."""

    dispute = models.ForeignKey(Dispute, on_delete=models.PROTECT, related_name="reversals")
    provider = models.ForeignKey(
        ProviderProfile, on_delete=models.PROTECT, related_name="dispute_reversals"
    )
    currency = models.CharField(max_length=3, choices=CURRENCY_CHOICES)
    amount_minor = models.BigIntegerField(
        help_text="Negative: returned by the provider; positive: a credit it bore, restored."
    )
    settlement = models.ForeignKey(
        Settlement,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="reversals",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["dispute", "provider"], name="dispute_reversal_once_per_provider"
            ),
        ]

    def __str__(self):
        return f"Reversal of {self.dispute} for {self.provider}"
