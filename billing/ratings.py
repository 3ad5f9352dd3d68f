"""Ratings (SPEC §4.3): the writes (services) and the reads (selectors) in one module, as the
topic is small.

Rules
- A provider rating is given by the recipient about a provider: satisfied yes/no, 1-5 for
  quality, communication and delivery, a comment. A recipient rating is given by a provider
  about a recipient: paid satisfactorily yes/no, a comment.
- Subjects: a lease (its winner and its block's provider are the two parties), or a planned job
  (``Job.plan`` set, no lease), whose parties are the job's organization and each provider of
  the job (the plan's lines, the assemblage provider and whoever processed a work item): the
  recipient rates each of them once and each of them may rate the recipient once. A job run
  under a lease is rated through its lease.
- Once per side per subject: unique constraints, and the subject's row locked while checking.
- The window opens when the lease ends (or the job finishes) and closes 60 days later; a rating
  on day 60 is still in time.
- The rated party may reply once, publicly; a reply is final (not editable), so a rating and
  its answer are always read together as they were written.
- Billing calls ``recipient_rating_from_payment`` with each charge's outcome: a rating with
  source=payment per payment reference and provider, positive when the card paid, negative
  when the charge failed or was disputed, turned positive when it is paid after all. The latest
  call for a reference wins (billing re-reads the charge from Stripe before calling), and
  repeating a call changes nothing.

What is public
- A provider's aggregates (count, share positive over 12 months, Bayesian mean) and its
  ratings' verdict, scores, comment, date and reply: on its page, beside its auctions and in the
  API. The recipient who gave a rating is never named publicly ("a buyer"), nor its lease or
  job.
- Recipient ratings are private to the two parties. A recipient's aggregates (count and share
  positive) are shown to the recipient itself and to the providers it has leases or planned jobs
  with, in their ratings page and console.

Aggregates
- ``count``: all ratings ever received; ``share_positive``: positive share of those created in
  the last 12 months (365 days; None without any); for providers the Bayesian mean of the
  per-rating mean of quality, communication and delivery over all its ratings:
  ``(PRIOR_WEIGHT * PRIOR_MEAN + sum of means) / (PRIOR_WEIGHT + n)``, with the prior of
  ``PRIOR_WEIGHT = 5`` pseudo-ratings of ``PRIOR_MEAN = 3.0`` (the middle of the scale), so a
  handful of ratings moves a provider only part of the way. An unrated provider has no mean
  (None), which meets no minimum rating in the planner.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Count, F, Q, QuerySet, Sum
from django.utils import timezone

from auctions.models import Lease
from billing.models import Rating, RatingKind, RatingSource
from marketplace.models import Organization, User
from marketplace.services import audit_log_record
from providers.models import ProviderProfile
from segmentation.models import JOB_ENDED, Job, PlanLine, WorkItem

RATING_WINDOW = timedelta(days=60)
AGGREGATE_WINDOW = timedelta(days=365)
PRIOR_MEAN = 3.0
PRIOR_WEIGHT = 5
COMMENT_MAX_LENGTH = Rating._meta.get_field("comment").max_length
REPLY_MAX_LENGTH = Rating._meta.get_field("reply").max_length
REFERENCE_MAX_LENGTH = Rating._meta.get_field("payment_reference").max_length


class RatingRefused(Exception):
    """A rating or reply that cannot be taken: `code` is stable, `message` says why.

    Codes: not_a_party, rating_not_open, rating_window_closed, already_rated, rate_the_lease,
    invalid_rating, rating_not_found, not_the_rated_party, already_replied, reply_empty.
    """

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Scores:
    """The three 1-5 scores of a provider rating."""

    quality: int
    communication: int
    delivery: int

    def validate(self) -> None:
        for name in ("quality", "communication", "delivery"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5:
                raise RatingRefused("invalid_rating", f"Give {name} as a whole number from 1 to 5.")


# --- subjects: who the parties are, when the window is open ----------------------------------


def job_providers(job: Job) -> list[ProviderProfile]:
    """The providers of a planned job: its plan's lines, its assemblage provider and whoever
    processed one of its work items."""
    ids = set(WorkItem.objects.filter(job=job).values_list("provider_id", flat=True))
    if job.plan_id is not None:
        ids |= set(
            PlanLine.objects.filter(plan_id=job.plan_id).values_list("provider_id", flat=True)
        )
        if job.plan.assemblage_provider_id is not None:
            ids.add(job.plan.assemblage_provider_id)
    return list(
        ProviderProfile.objects.filter(pk__in=ids)
        .select_related("organization")
        .order_by("legal_name", "pk")
    )


def rating_window(
    *, lease: Lease | None = None, job: Job | None = None
) -> tuple[datetime, datetime] | None:
    """When the subject may be rated: (opens, closes), None while a job has not finished."""
    if lease is not None:
        opens = lease.ends_at
    elif job is not None and job.status in JOB_ENDED and job.finished_at is not None:
        opens = job.finished_at
    else:
        return None
    return opens, opens + RATING_WINDOW


def _window_check(*, lease: Lease | None, job: Job | None, now: datetime) -> None:
    window = rating_window(lease=lease, job=job)
    if window is None or now < window[0]:
        what = "lease has ended" if lease is not None else "job has finished"
        raise RatingRefused("rating_not_open", f"It can be rated once the {what}.")
    if now > window[1]:
        raise RatingRefused(
            "rating_window_closed",
            f"Ratings are given within {RATING_WINDOW.days} days; this window closed on "
            f"{window[1]:%Y-%m-%d %H:%M} UTC.",
        )


def _subject_locked(*, lease: Lease | None, job: Job | None) -> tuple[Lease | None, Job | None]:
    """The subject re-read with its row locked: two submits for it take turns."""
    if (lease is None) == (job is None):
        raise RatingRefused("invalid_rating", "Rate either a lease or a job.")
    if lease is not None:
        return Lease.objects.select_for_update(of=("self",)).select_related(
            "block__provider__organization", "winner"
        ).get(pk=lease.pk), None
    job = Job.objects.select_for_update(of=("self",)).select_related("plan").get(pk=job.pk)
    if job.lease_id is not None:
        raise RatingRefused(
            "rate_the_lease", f"Job {job.pk} ran under lease {job.lease_id}: rate the lease."
        )
    if job.plan_id is None:
        raise RatingRefused("not_a_party", f"Job {job.pk} has no providers to rate.")
    return None, job


def _not_a_party(*, lease: Lease | None, job: Job | None) -> RatingRefused:
    what = f"lease {lease.pk}" if lease is not None else f"job {job.pk}"
    return RatingRefused("not_a_party", f"Your organization is not a party to {what}.")


def _created(rating: Rating, *, action: str, actor) -> Rating:
    """Insert under a savepoint: a duplicate the lock did not stop (e.g. two subjects' parties
    racing on SQLite) is `already_rated`, never a server error."""
    try:
        with transaction.atomic():
            rating.full_clean(validate_constraints=False)
            rating.save(force_insert=True)
    except IntegrityError:
        raise RatingRefused("already_rated", "This has already been rated.") from None
    audit_log_record(
        action=action,
        actor=actor,
        organization=rating_parties(rating)[0],
        target=rating,
        data={"positive": rating.positive},
    )
    return rating


def _comment_checked(comment: str) -> str:
    comment = (comment or "").strip()
    if len(comment) > COMMENT_MAX_LENGTH:
        raise RatingRefused(
            "invalid_rating", f"A comment has at most {COMMENT_MAX_LENGTH} characters."
        )
    return comment


# --- services ----------------------------------------------------------------------------------


def provider_rating_create(
    *,
    organization: Organization,
    user: User | None,
    lease: Lease | None = None,
    job: Job | None = None,
    provider: ProviderProfile | None = None,
    satisfied: bool,
    scores: Scores,
    comment: str = "",
    now: datetime | None = None,
) -> Rating:
    """The recipient `organization` rates the provider of `lease`, or `provider` of the planned
    `job`; once per lease (per job and provider), within the window."""
    scores.validate()
    comment = _comment_checked(comment)
    now = now or timezone.now()
    with transaction.atomic():
        lease, job = _subject_locked(lease=lease, job=job)
        if lease is not None:
            if lease.winner_id != organization.pk:
                raise _not_a_party(lease=lease, job=job)
            provider = lease.block.provider
            taken = Rating.objects.filter(
                kind=RatingKind.PROVIDER, source=RatingSource.MANUAL, lease=lease
            )
        else:
            if job.organization_id != organization.pk:
                raise _not_a_party(lease=lease, job=job)
            if provider is None or provider.pk not in {p.pk for p in job_providers(job)}:
                raise RatingRefused("not_a_party", f"That provider took no part in job {job.pk}.")
            taken = Rating.objects.filter(
                kind=RatingKind.PROVIDER, source=RatingSource.MANUAL, job=job, provider=provider
            )
        _window_check(lease=lease, job=job, now=now)
        if taken.exists():
            raise RatingRefused("already_rated", "You have already rated this provider for it.")
        return _created(
            Rating(
                kind=RatingKind.PROVIDER,
                source=RatingSource.MANUAL,
                provider=provider,
                recipient=organization,
                lease=lease,
                job=job,
                author=user,
                positive=satisfied,
                quality=scores.quality,
                communication=scores.communication,
                delivery=scores.delivery,
                comment=comment,
                created_at=now,
            ),
            action="rating.provider_rated",
            actor=user,
        )


def recipient_rating_create(
    *,
    provider: ProviderProfile,
    user: User | None,
    lease: Lease | None = None,
    job: Job | None = None,
    paid_satisfactorily: bool,
    comment: str = "",
    now: datetime | None = None,
) -> Rating:
    """The `provider` rates the recipient of its `lease`, or of a planned `job` it took part
    in; once per lease (per job and provider), within the window."""
    comment = _comment_checked(comment)
    now = now or timezone.now()
    with transaction.atomic():
        lease, job = _subject_locked(lease=lease, job=job)
        if lease is not None:
            if lease.block.provider_id != provider.pk:
                raise _not_a_party(lease=lease, job=job)
            recipient = lease.winner
            taken = Rating.objects.filter(
                kind=RatingKind.RECIPIENT, source=RatingSource.MANUAL, lease=lease
            )
        else:
            if provider.pk not in {p.pk for p in job_providers(job)}:
                raise _not_a_party(lease=lease, job=job)
            recipient = job.organization
            taken = Rating.objects.filter(
                kind=RatingKind.RECIPIENT, source=RatingSource.MANUAL, job=job, provider=provider
            )
        _window_check(lease=lease, job=job, now=now)
        if taken.exists():
            raise RatingRefused("already_rated", "You have already rated this recipient for it.")
        return _created(
            Rating(
                kind=RatingKind.RECIPIENT,
                source=RatingSource.MANUAL,
                provider=provider,
                recipient=recipient,
                lease=lease,
                job=job,
                author=user,
                positive=paid_satisfactorily,
                comment=comment,
                created_at=now,
            ),
            action="rating.recipient_rated",
            actor=user,
        )


def rating_reply(
    *, rating_id: int, organization: Organization, user: User | None, text: str
) -> Rating:
    """The rated party answers a rating publicly, once; the reply cannot be changed."""
    text = (text or "").strip()
    if not text:
        raise RatingRefused("reply_empty", "Write a reply.")
    if len(text) > REPLY_MAX_LENGTH:
        raise RatingRefused("reply_empty", f"A reply has at most {REPLY_MAX_LENGTH} characters.")
    with transaction.atomic():
        rating = (
            ratings_of(organization=organization)
            .select_for_update(of=("self",))
            .filter(pk=rating_id)
            .first()
        )
        if rating is None:
            raise RatingRefused("rating_not_found", "There is no such rating of yours.")
        if rating_direction(rating, organization=organization) != "received":
            raise RatingRefused(
                "not_the_rated_party", "Only the rated party may reply to a rating."
            )
        if rating.replied_at is not None:
            raise RatingRefused("already_replied", "This rating already has its reply.")
        rating.reply = text
        rating.replied_at = timezone.now()
        rating.replied_by = user
        rating.save(update_fields=["reply", "replied_at", "replied_by", "updated_at"])
        audit_log_record(
            action="rating.replied", actor=user, organization=organization, target=rating
        )
    return rating


def recipient_rating_from_payment(
    *,
    organization: Organization,
    provider: ProviderProfile,
    lease: Lease | None = None,
    paid: bool,
    reference: str,
) -> Rating:
    """Billing's hook: the outcome of one charge rates the recipient `organization` for
    `provider`. `paid`: the card accepted the charge (positive); not paid: it failed or was
    disputed (negative until a later call says it was paid). One rating per `reference` (the
    charge's or statement's id in billing) and provider, so a consolidated statement rates the
    recipient once for each of its providers; calling again with the same outcome changes
    nothing, with the other outcome flips it. Refuses (RatingRefused) a lease that is not
    between the two parties, or a reference already used for another recipient."""
    reference = (reference or "").strip()
    if not reference or len(reference) > REFERENCE_MAX_LENGTH:
        raise RatingRefused(
            "invalid_rating", f"A payment reference has 1 to {REFERENCE_MAX_LENGTH} characters."
        )
    if lease is not None and (
        lease.winner_id != organization.pk or lease.block.provider_id != provider.pk
    ):
        raise _not_a_party(lease=lease, job=None)
    mine = Rating.objects.select_for_update().filter(
        source=RatingSource.PAYMENT, provider=provider, payment_reference=reference
    )
    with transaction.atomic():
        rating = mine.first()
        if rating is None:
            try:
                with transaction.atomic():
                    rating = Rating.objects.create(
                        kind=RatingKind.RECIPIENT,
                        source=RatingSource.PAYMENT,
                        provider=provider,
                        recipient=organization,
                        lease=lease,
                        positive=paid,
                        payment_reference=reference,
                    )
            except IntegrityError:
                # The same outcome arrived twice at once: the other call made the row.
                rating = mine.get()
            else:
                return rating
        if rating.recipient_id != organization.pk:
            raise RatingRefused(
                "invalid_rating", f"Payment {reference} already rated another recipient."
            )
        if rating.positive != paid:
            rating.positive = paid
            rating.save(update_fields=["positive", "updated_at"])
    return rating


# --- selectors ---------------------------------------------------------------------------------


def ratings_of(*, organization: Organization, direction: str | None = None) -> QuerySet[Rating]:
    """Ratings the organization gave ("given") or received ("received"), or both (None); as a
    recipient and, when it has a provider profile, as that provider."""
    given = Q(kind=RatingKind.PROVIDER, recipient=organization) | Q(
        kind=RatingKind.RECIPIENT, source=RatingSource.MANUAL, provider__organization=organization
    )
    received = Q(kind=RatingKind.RECIPIENT, recipient=organization) | Q(
        kind=RatingKind.PROVIDER, provider__organization=organization
    )
    condition = {"given": given, "received": received}.get(direction, given | received)
    return Rating.objects.filter(condition).select_related(
        "provider__organization", "recipient", "lease", "job"
    )


def rating_direction(rating: Rating, *, organization: Organization) -> str:
    """ "given", "received" or "" for a rating and an organization (its own provider included);
    an organization that is both parties (buys from itself) received it."""
    rater, rated = rating_parties(rating)
    if rated.pk == organization.pk:
        return "received"
    if rater is not None and rater.pk == organization.pk:
        return "given"
    return ""


def rating_parties(rating: Rating) -> tuple[Organization | None, Organization]:
    """(rater, rated) organizations; a rating from a payment has no rater."""
    provider_org = rating.provider.organization
    if rating.kind == RatingKind.PROVIDER:
        return rating.recipient, provider_org
    if rating.source == RatingSource.PAYMENT:
        return None, rating.recipient
    return provider_org, rating.recipient


def rating_existing(
    *,
    kind: str,
    lease: Lease | None = None,
    job: Job | None = None,
    provider: ProviderProfile | None = None,
) -> Rating | None:
    """The rating this side already gave for the lease (or the job and provider), if any."""
    ratings = Rating.objects.filter(kind=kind, source=RatingSource.MANUAL)
    if lease is not None:
        return ratings.filter(lease=lease).first()
    return ratings.filter(job=job, provider=provider).first()


def provider_ratings_public(*, provider: ProviderProfile) -> QuerySet[Rating]:
    """A provider's ratings as anyone may read them, newest first (see the module doc for what
    of them is shown)."""
    return Rating.objects.filter(kind=RatingKind.PROVIDER, provider=provider)


@dataclass(frozen=True)
class RatingSummary:
    """Aggregates of the ratings one party received. `bayesian_mean` (providers only) is None
    without ratings; `share_positive` is None without ratings in the last 12 months."""

    count: int
    count_12_months: int
    positive_12_months: int
    bayesian_mean: float | None = None

    @property
    def share_positive(self) -> float | None:
        if not self.count_12_months:
            return None
        return self.positive_12_months / self.count_12_months

    @property
    def percent_positive(self) -> int | None:
        share = self.share_positive
        return None if share is None else round(share * 100)

    def as_dict(self) -> dict:
        share = self.share_positive
        return {
            "count": self.count,
            "count_12_months": self.count_12_months,
            "share_positive_12_months": None if share is None else round(share, 4),
            "bayesian_mean": None if self.bayesian_mean is None else round(self.bayesian_mean, 2),
        }


EMPTY_SUMMARY = RatingSummary(count=0, count_12_months=0, positive_12_months=0)


def bayesian_mean(*, count: int, score_sum: float) -> float | None:
    """The Bayesian mean of `count` ratings whose 1-5 means add up to `score_sum`."""
    if not count:
        return None
    return (PRIOR_WEIGHT * PRIOR_MEAN + score_sum) / (PRIOR_WEIGHT + count)


def _aggregates(queryset: QuerySet[Rating], *, group: str, now: datetime | None) -> dict:
    since = (now or timezone.now()) - AGGREGATE_WINDOW
    recent = Q(created_at__gte=since)
    return {
        row[group]: row
        for row in queryset.values(group)
        .order_by()
        .annotate(
            n=Count("pk"),
            n_recent=Count("pk", filter=recent),
            positive_recent=Count("pk", filter=recent & Q(positive=True)),
            score_total=Sum(F("quality") + F("communication") + F("delivery")),
        )
    }


def provider_rating_summaries(
    *, provider_ids: Iterable[int], now: datetime | None = None
) -> dict[int, RatingSummary]:
    """Each provider's summary (in one query), EMPTY_SUMMARY for an unrated one."""
    provider_ids = list(provider_ids)
    rows = _aggregates(
        Rating.objects.filter(kind=RatingKind.PROVIDER, provider_id__in=provider_ids),
        group="provider_id",
        now=now,
    )
    summaries = {}
    for provider_id in provider_ids:
        row = rows.get(provider_id)
        if row is None:
            summaries[provider_id] = EMPTY_SUMMARY
            continue
        summaries[provider_id] = RatingSummary(
            count=row["n"],
            count_12_months=row["n_recent"],
            positive_12_months=row["positive_recent"],
            # each rating's mean is its three scores over 3
            bayesian_mean=bayesian_mean(count=row["n"], score_sum=(row["score_total"] or 0) / 3),
        )
    return summaries


def provider_rating_summary(
    *, provider: ProviderProfile, now: datetime | None = None
) -> RatingSummary:
    """The provider's aggregates: count, share positive over 12 months, Bayesian mean."""
    return provider_rating_summaries(provider_ids=[provider.pk], now=now)[provider.pk]


def provider_bayesian_mean(provider: ProviderProfile) -> float | None:
    """The provider's Bayesian mean (1 to 5) for the planner; None while it is unrated."""
    return provider_rating_summary(provider=provider).bayesian_mean


def recipient_rating_summaries(
    *, organization_ids: Iterable[int], now: datetime | None = None
) -> dict[int, RatingSummary]:
    """Each recipient's count and share positive (manual and payment ratings together)."""
    organization_ids = list(organization_ids)
    rows = _aggregates(
        Rating.objects.filter(kind=RatingKind.RECIPIENT, recipient_id__in=organization_ids),
        group="recipient_id",
        now=now,
    )
    return {
        organization_id: (
            RatingSummary(
                count=row["n"],
                count_12_months=row["n_recent"],
                positive_12_months=row["positive_recent"],
            )
            if (row := rows.get(organization_id))
            else EMPTY_SUMMARY
        )
        for organization_id in organization_ids
    }


def recipient_rating_summary(
    *, organization: Organization, now: datetime | None = None
) -> RatingSummary:
    """The recipient's aggregates: count and share positive over 12 months."""
    return recipient_rating_summaries(organization_ids=[organization.pk], now=now)[organization.pk]


@dataclass(frozen=True)
class Rateable:
    """Something the organization may rate now: a lease, or a planned job and one provider of
    it (recipient side) / the job's recipient (provider side)."""

    kind: str
    provider: ProviderProfile
    recipient: Organization
    closes_at: datetime
    lease: Lease | None = None
    job: Job | None = None

    @property
    def subject(self) -> str:
        return f"Lease #{self.lease.pk}" if self.lease is not None else f"Job #{self.job.pk}"


def rateables_of(*, organization: Organization, now: datetime | None = None) -> list[Rateable]:
    """What the organization may rate now and has not yet rated, window closing soonest first."""
    now = now or timezone.now()
    earliest = now - RATING_WINDOW
    provider = ProviderProfile.objects.filter(organization=organization).first()
    rateables: list[Rateable] = []

    in_window = Q(ends_at__lte=now, ends_at__gte=earliest)
    leases = Lease.objects.filter(in_window).select_related(
        "block__provider__organization", "winner"
    )
    for lease in leases.filter(winner=organization).exclude(
        ratings__kind=RatingKind.PROVIDER, ratings__source=RatingSource.MANUAL
    ):
        rateables.append(
            Rateable(
                kind=RatingKind.PROVIDER,
                provider=lease.block.provider,
                recipient=organization,
                lease=lease,
                closes_at=lease.ends_at + RATING_WINDOW,
            )
        )
    if provider is not None:
        for lease in leases.filter(block__provider=provider).exclude(
            ratings__kind=RatingKind.RECIPIENT, ratings__source=RatingSource.MANUAL
        ):
            rateables.append(
                Rateable(
                    kind=RatingKind.RECIPIENT,
                    provider=provider,
                    recipient=lease.winner,
                    lease=lease,
                    closes_at=lease.ends_at + RATING_WINDOW,
                )
            )

    jobs = Job.objects.filter(
        plan__isnull=False,
        lease__isnull=True,
        status__in=JOB_ENDED,
        finished_at__lte=now,
        finished_at__gte=earliest,
    ).select_related("plan", "organization")
    if provider is not None:
        jobs_of_provider = (
            Q(items__provider=provider)
            | Q(plan__lines__provider=provider)
            | Q(plan__assemblage_provider=provider)
        )
        jobs = jobs.filter(Q(organization=organization) | jobs_of_provider)
    else:
        jobs = jobs.filter(organization=organization)
    for job in jobs.distinct():
        done = Rating.objects.filter(job=job, source=RatingSource.MANUAL)
        closes_at = job.finished_at + RATING_WINDOW
        providers = job_providers(job)
        if job.organization_id == organization.pk:
            rated = set(done.filter(kind=RatingKind.PROVIDER).values_list("provider_id", flat=True))
            rateables.extend(
                Rateable(
                    kind=RatingKind.PROVIDER,
                    provider=job_provider,
                    recipient=organization,
                    job=job,
                    closes_at=closes_at,
                )
                for job_provider in providers
                if job_provider.pk not in rated
            )
        if (
            provider is not None
            and provider.pk in {p.pk for p in providers}
            and not done.filter(kind=RatingKind.RECIPIENT, provider=provider).exists()
        ):
            rateables.append(
                Rateable(
                    kind=RatingKind.RECIPIENT,
                    provider=provider,
                    recipient=job.organization,
                    job=job,
                    closes_at=closes_at,
                )
            )
    rateables.sort(key=lambda rateable: rateable.closes_at)
    return rateables
