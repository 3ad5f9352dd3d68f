"""Models of the billing app, one module per topic; everything is re-exported here so code
imports `from billing.models import Rating`."""

from billing.models.payments import (
    CREDIT_KINDS,
    BillingAccount,
    Card,
    Charge,
    ChargeStatus,
    Dispute,
    DisputeReversal,
    DisputeStatus,
    LineItem,
    LineItemKind,
    Settlement,
    Statement,
    StatementStatus,
    StripeEvent,
)
from billing.models.ratings import Rating, RatingKind, RatingSource

__all__ = [
    "CREDIT_KINDS",
    "BillingAccount",
    "Card",
    "Charge",
    "ChargeStatus",
    "Dispute",
    "DisputeReversal",
    "DisputeStatus",
    "LineItem",
    "LineItemKind",
    "Rating",
    "RatingKind",
    "RatingSource",
    "Settlement",
    "Statement",
    "StatementStatus",
    "StripeEvent",
]
