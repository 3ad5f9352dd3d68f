"""Two-way ratings (SPEC §4.3): recipients rate providers, providers rate recipients, and the
payment outcome rates recipients automatically.

One table holds both sides so that "once per side per lease" is one unique constraint on
(kind, lease), a reply works the same way for both, and the API has one `ratings` resource.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from auctions.models import Lease
from marketplace.models import Organization
from providers.models import ProviderProfile
from segmentation.models import Job

SCORE_MIN = 1
SCORE_MAX = 5


class RatingKind(models.TextChoices):
    PROVIDER = "provider", "Provider rating (by the recipient)"
    RECIPIENT = "recipient", "Recipient rating (by the provider)"


class RatingSource(models.TextChoices):
    MANUAL = "manual", "Given by a member"
    PAYMENT = "payment", "Set from the payment outcome"


def _score_in_range(field: str) -> Q:
    return Q(**{f"{field}__isnull": True}) | Q(
        **{f"{field}__gte": SCORE_MIN, f"{field}__lte": SCORE_MAX}
    )


class Rating(models.Model):
    """One rating between the two parties of a lease or a job.

    kind=provider: the recipient (lease winner or job owner) rates the provider; `positive` is
    "satisfied" and the three 1-5 scores are required. kind=recipient: the provider rates the
    recipient; `positive` is "paid satisfactorily" and there are no scores. source=payment rows
    are recipient ratings written by billing from a charge's outcome, one per payment reference
    and provider (a consolidated statement's charge rates the recipient for each of its
    providers), with or without a lease. The rated party may reply once; a reply is public and
    final.
    """

    kind = models.CharField(max_length=16, choices=RatingKind.choices)
    source = models.CharField(
        max_length=16, choices=RatingSource.choices, default=RatingSource.MANUAL
    )
    provider = models.ForeignKey(ProviderProfile, on_delete=models.PROTECT, related_name="ratings")
    recipient = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="ratings")
    lease = models.ForeignKey(
        Lease, on_delete=models.PROTECT, null=True, blank=True, related_name="ratings"
    )
    job = models.ForeignKey(
        Job,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="ratings",
        help_text="A planned job (no lease): each of its providers is rated separately.",
    )
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="The member who gave it; empty for ratings set from payments.",
    )
    positive = models.BooleanField(
        help_text="Provider rating: satisfied. Recipient rating: paid satisfactorily."
    )
    quality = models.PositiveSmallIntegerField(null=True, blank=True)
    communication = models.PositiveSmallIntegerField(null=True, blank=True)
    delivery = models.PositiveSmallIntegerField(null=True, blank=True)
    comment = models.TextField(blank=True, max_length=2000)
    payment_reference = models.CharField(
        max_length=255,
        blank=True,
        help_text="Payment ratings: billing's reference of the charge (one rating per reference "
        "and provider).",
    )
    reply = models.TextField(blank=True, max_length=2000)
    replied_at = models.DateTimeField(null=True, blank=True)
    replied_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # a default rather than auto_now_add: the 12-month window is computed from it
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["provider", "kind", "-created_at"], name="rating_provider_kind"),
            models.Index(fields=["recipient", "kind", "-created_at"], name="rating_recipient_kind"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=RatingKind.values), name="rating_kind_valid"
            ),
            models.CheckConstraint(
                condition=Q(source__in=RatingSource.values), name="rating_source_valid"
            ),
            models.CheckConstraint(
                condition=_score_in_range("quality")
                & _score_in_range("communication")
                & _score_in_range("delivery"),
                name="rating_scores_in_range",
                violation_error_message="Scores are from 1 to 5.",
            ),
            models.CheckConstraint(
                condition=(
                    Q(kind=RatingKind.PROVIDER)
                    & Q(quality__isnull=False)
                    & Q(communication__isnull=False)
                    & Q(delivery__isnull=False)
                )
                | (
                    Q(kind=RatingKind.RECIPIENT)
                    & Q(quality__isnull=True)
                    & Q(communication__isnull=True)
                    & Q(delivery__isnull=True)
                ),
                name="rating_scores_match_kind",
                violation_error_message="A provider rating has the three scores; a recipient "
                "rating has none.",
            ),
            models.CheckConstraint(
                condition=(
                    Q(source=RatingSource.MANUAL)
                    & Q(payment_reference="")
                    & (
                        Q(lease__isnull=False, job__isnull=True)
                        | Q(lease__isnull=True, job__isnull=False)
                    )
                )
                | (
                    Q(source=RatingSource.PAYMENT)
                    & Q(kind=RatingKind.RECIPIENT)
                    & ~Q(payment_reference="")
                    & Q(job__isnull=True)
                ),
                name="rating_source_has_subject",
                violation_error_message="A rating given by a member is about one lease or one "
                "job; a rating from a payment is a recipient rating with the payment's reference.",
            ),
            models.CheckConstraint(
                condition=Q(reply="", replied_at__isnull=True)
                | (~Q(reply="") & Q(replied_at__isnull=False)),
                name="rating_reply_has_time",
                violation_error_message="A reply records when it was given.",
            ),
            models.UniqueConstraint(
                fields=["kind", "lease"],
                condition=Q(source=RatingSource.MANUAL, lease__isnull=False),
                name="rating_once_per_side_per_lease",
                violation_error_message="This side has already rated this lease.",
            ),
            models.UniqueConstraint(
                fields=["kind", "job", "provider"],
                condition=Q(source=RatingSource.MANUAL, job__isnull=False),
                name="rating_once_per_side_per_job_provider",
                violation_error_message="This side has already rated this provider for this job.",
            ),
            models.UniqueConstraint(
                fields=["provider", "payment_reference"],
                condition=Q(source=RatingSource.PAYMENT),
                name="rating_once_per_payment_reference",
                violation_error_message="This payment has already rated its recipient for "
                "this provider.",
            ),
        ]

    def __str__(self):
        about = f"lease {self.lease_id}" if self.lease_id else f"job {self.job_id}"
        if self.source == RatingSource.PAYMENT:
            about = f"payment {self.payment_reference}"
        verdict = "positive" if self.positive else "negative"
        if self.kind == RatingKind.PROVIDER:
            return f"{verdict} rating of {self.provider} by {self.recipient} ({about})"
        return f"{verdict} rating of {self.recipient} by {self.provider} ({about})"

    @property
    def mean_score(self) -> float | None:
        """The mean of quality, communication and delivery (provider ratings)."""
        if self.quality is None:
            return None
        return (self.quality + self.communication + self.delivery) / 3
