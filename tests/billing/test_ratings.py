"""Ratings through the services, the pages and the planner: the 60-day window, once per side,
the one public reply, recipient ratings set from payments, the aggregates (Bayesian mean and
12-month share positive) on provider and auction pages, and the planner's minimum rating."""

import threading
from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from billing.models import Rating, RatingKind, RatingSource
from billing.ratings import (
    PRIOR_MEAN,
    PRIOR_WEIGHT,
    RatingRefused,
    Scores,
    provider_rating_create,
    provider_rating_summary,
    rateables_of,
    rating_reply,
    recipient_rating_create,
    recipient_rating_from_payment,
    recipient_rating_summary,
)
from segmentation.service_requests import RequestSpec, provider_rating, service_request_create
from tests.factories import (
    AuctionFactory,
    LeaseFactory,
    OfferFactory,
    OrganizationFactory,
    PlannedJobFactory,
    ProviderRatingFactory,
    RecipientRatingFactory,
    RoutingPathFactory,
    RoutingPathHopFactory,
    SegmentationProfileFactory,
    VerifiedProviderFactory,
    WorkItemFactory,
    member_of,
)

pytestmark = pytest.mark.django_db

GOOD = Scores(quality=5, communication=4, delivery=5)


def ended_lease(*, days_ago: float = 1, **kwargs):
    """A lease whose block ended `days_ago` days ago."""
    ends_at = timezone.now() - timedelta(days=days_ago)
    return LeaseFactory(
        block__starts_at=ends_at - timedelta(hours=3), block__ends_at=ends_at, **kwargs
    )


def rate_provider(lease, *, organization=None, now=None, scores=GOOD, satisfied=True, **kwargs):
    return provider_rating_create(
        organization=organization or lease.winner,
        user=None,
        lease=lease,
        satisfied=satisfied,
        scores=scores,
        comment="Fast and clear.",
        now=now,
        **kwargs,
    )


def rate_recipient(lease, *, provider=None, now=None, paid=True):
    return recipient_rating_create(
        provider=provider or lease.block.provider,
        user=None,
        lease=lease,
        paid_satisfactorily=paid,
        comment="Paid on time.",
        now=now,
    )


def refused(function, *args, **kwargs) -> str:
    with pytest.raises(RatingRefused) as refusal:
        function(*args, **kwargs)
    return refusal.value.code


def rated(provider, *scores_list, days_ago=1, positive=True):
    """Ratings of `provider`, one per (quality, communication, delivery), each on a lease of
    its own created `days_ago` days ago."""
    for quality, communication, delivery in scores_list:
        ProviderRatingFactory(
            lease__block__provider=provider,
            quality=quality,
            communication=communication,
            delivery=delivery,
            positive=positive,
            created_at=timezone.now() - timedelta(days=days_ago),
        )


# --- the window ----------------------------------------------------------------------------------


def test_the_recipient_rates_the_provider_on_day_59_after_the_lease_ended():
    lease = ended_lease(days_ago=59)
    rating = rate_provider(lease)
    assert (rating.kind, rating.source, rating.provider, rating.recipient) == (
        RatingKind.PROVIDER,
        RatingSource.MANUAL,
        lease.block.provider,
        lease.winner,
    )
    assert (rating.quality, rating.communication, rating.delivery) == (5, 4, 5)
    assert rating.positive is True


def test_a_rating_on_day_61_is_refused_as_the_window_closed():
    lease = ended_lease(days_ago=61)
    assert refused(rate_provider, lease) == "rating_window_closed"
    assert refused(rate_recipient, lease) == "rating_window_closed"
    assert not Rating.objects.exists()


def test_day_60_is_the_last_day_to_rate():
    lease = ended_lease(days_ago=1)
    last_moment = lease.ends_at + timedelta(days=60)
    assert rate_provider(lease, now=last_moment).created_at == last_moment
    assert (
        refused(rate_recipient, lease, now=last_moment + timedelta(seconds=1))
        == "rating_window_closed"
    )


def test_a_lease_still_running_cannot_be_rated_yet():
    lease = LeaseFactory()  # ends in two hours
    assert refused(rate_provider, lease) == "rating_not_open"


# --- once per side, parties only -----------------------------------------------------------------


def test_each_side_rates_a_lease_once():
    lease = ended_lease()
    rate_provider(lease)
    rate_recipient(lease)
    assert refused(rate_provider, lease, satisfied=False) == "already_rated"
    assert refused(rate_recipient, lease, paid=False) == "already_rated"
    assert Rating.objects.filter(lease=lease).count() == 2


def test_the_database_refuses_a_second_rating_of_one_side_of_a_lease():
    first = ProviderRatingFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        ProviderRatingFactory(lease=first.lease)


def test_the_database_refuses_scores_out_of_range_and_scores_on_recipient_ratings():
    with pytest.raises(IntegrityError), transaction.atomic():
        ProviderRatingFactory(quality=6)
    with pytest.raises(IntegrityError), transaction.atomic():
        RecipientRatingFactory(quality=3)


def test_only_the_lease_winner_rates_its_provider():
    lease = ended_lease()
    stranger = OrganizationFactory()
    assert refused(rate_provider, lease, organization=stranger) == "not_a_party"


def test_only_the_leases_provider_rates_its_recipient():
    lease = ended_lease()
    assert refused(rate_recipient, lease, provider=VerifiedProviderFactory()) == "not_a_party"


def test_scores_out_of_range_are_refused_by_the_service():
    lease = ended_lease()
    assert (
        refused(rate_provider, lease, scores=Scores(quality=0, communication=3, delivery=3))
        == "invalid_rating"
    )


@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="two submits racing on separate connections need PostgreSQL's row locks; "
    "SQLite serializes whole transactions",
)
@pytest.mark.django_db(transaction=True)
def test_two_concurrent_submits_of_one_rating_store_one():
    lease = ended_lease()
    outcomes = []
    start = threading.Barrier(2)

    def submit():
        try:
            start.wait()
            rate_provider(lease)
            outcomes.append("created")
        except RatingRefused as refusal:
            outcomes.append(refusal.code)
        finally:
            connection.close()

    threads = [threading.Thread(target=submit) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == ["already_rated", "created"]
    assert Rating.objects.filter(lease=lease).count() == 1


# --- planned jobs --------------------------------------------------------------------------------


def planned_job(*providers, **kwargs):
    job = PlannedJobFactory(**kwargs)
    for provider in providers:
        WorkItemFactory(job=job, provider=provider)
    return job


def test_the_recipient_rates_each_provider_of_a_planned_job_once():
    first, second = VerifiedProviderFactory(), VerifiedProviderFactory()
    job = planned_job(first, second)
    for provider in (first, second):
        provider_rating_create(
            organization=job.organization,
            user=None,
            job=job,
            provider=provider,
            satisfied=True,
            scores=GOOD,
        )
    code = refused(
        provider_rating_create,
        organization=job.organization,
        user=None,
        job=job,
        provider=first,
        satisfied=False,
        scores=GOOD,
    )
    assert code == "already_rated"
    assert set(Rating.objects.filter(job=job).values_list("provider", flat=True)) == {
        first.pk,
        second.pk,
    }


def test_a_provider_that_took_no_part_in_a_job_is_not_rated_for_it():
    job = planned_job(VerifiedProviderFactory())
    code = refused(
        provider_rating_create,
        organization=job.organization,
        user=None,
        job=job,
        provider=VerifiedProviderFactory(),
        satisfied=True,
        scores=GOOD,
    )
    assert code == "not_a_party"


def test_each_provider_of_a_planned_job_rates_its_recipient_once():
    first, second = VerifiedProviderFactory(), VerifiedProviderFactory()
    job = planned_job(first, second)
    for provider in (first, second):
        recipient_rating_create(provider=provider, user=None, job=job, paid_satisfactorily=True)
    code = refused(
        recipient_rating_create, provider=first, user=None, job=job, paid_satisfactorily=False
    )
    assert code == "already_rated"
    assert Rating.objects.filter(job=job, kind=RatingKind.RECIPIENT).count() == 2


def test_a_planned_job_is_rated_within_60_days_of_finishing():
    provider = VerifiedProviderFactory()
    late = planned_job(provider, finished_at=timezone.now() - timedelta(days=61))
    running = planned_job(provider, status="processing", finished_at=None)
    for job, code in ((late, "rating_window_closed"), (running, "rating_not_open")):
        assert (
            refused(
                provider_rating_create,
                organization=job.organization,
                user=None,
                job=job,
                provider=provider,
                satisfied=True,
                scores=GOOD,
            )
            == code
        )


def test_a_job_run_under_a_lease_is_rated_through_the_lease():
    lease = ended_lease()
    job = planned_job(lease.block.provider, lease=lease, organization=lease.winner)
    code = refused(
        provider_rating_create,
        organization=lease.winner,
        user=None,
        job=job,
        provider=lease.block.provider,
        satisfied=True,
        scores=GOOD,
    )
    assert code == "rate_the_lease"


def test_what_an_organization_may_rate_lists_unrated_leases_and_job_providers():
    lease = ended_lease()
    ended_lease(days_ago=70, winner=lease.winner)  # too late
    LeaseFactory(winner=lease.winner)  # still running
    provider = VerifiedProviderFactory()
    job = planned_job(provider, organization=lease.winner)

    subjects = {(r.kind, r.lease, r.job) for r in rateables_of(organization=lease.winner)}
    assert subjects == {(RatingKind.PROVIDER, lease, None), (RatingKind.PROVIDER, None, job)}

    rate_provider(lease)
    assert [r.job for r in rateables_of(organization=lease.winner)] == [job]
    seller = rateables_of(organization=lease.block.provider.organization)
    assert [(r.kind, r.lease) for r in seller] == [(RatingKind.RECIPIENT, lease)]
    assert [r.job for r in rateables_of(organization=provider.organization)] == [job]


# --- replies -------------------------------------------------------------------------------------


def test_the_rated_provider_replies_once_and_cannot_change_it():
    rating = ProviderRatingFactory()
    provider_org = rating.provider.organization
    replied = rating_reply(
        rating_id=rating.pk, organization=provider_org, user=None, text="Thanks for the feedback."
    )
    assert replied.reply == "Thanks for the feedback."
    assert replied.replied_at is not None
    code = refused(
        rating_reply, rating_id=rating.pk, organization=provider_org, user=None, text="Edited."
    )
    assert code == "already_replied"
    rating.refresh_from_db()
    assert rating.reply == "Thanks for the feedback."


def test_the_rater_cannot_reply_to_its_own_rating():
    rating = ProviderRatingFactory()
    code = refused(
        rating_reply, rating_id=rating.pk, organization=rating.recipient, user=None, text="Me too."
    )
    assert code == "not_the_rated_party"


def test_an_outsider_cannot_see_or_reply_to_a_rating():
    rating = ProviderRatingFactory()
    code = refused(
        rating_reply, rating_id=rating.pk, organization=OrganizationFactory(), user=None, text="Hi"
    )
    assert code == "rating_not_found"


def test_the_rated_recipient_replies_to_a_recipient_rating():
    rating = RecipientRatingFactory(positive=False)
    replied = rating_reply(
        rating_id=rating.pk, organization=rating.recipient, user=None, text="Paid on day 3."
    )
    assert replied.reply == "Paid on day 3."
    code = refused(
        rating_reply,
        rating_id=rating.pk,
        organization=rating.provider.organization,
        user=None,
        text="No.",
    )
    assert code == "not_the_rated_party"


def test_an_empty_reply_is_refused():
    rating = ProviderRatingFactory()
    code = refused(
        rating_reply,
        rating_id=rating.pk,
        organization=rating.provider.organization,
        user=None,
        text=" ",
    )
    assert code == "reply_empty"


# --- ratings from payments -----------------------------------------------------------------------


def test_a_paid_charge_rates_the_recipient_positive_automatically():
    lease = ended_lease()
    rating = recipient_rating_from_payment(
        organization=lease.winner,
        provider=lease.block.provider,
        lease=lease,
        paid=True,
        reference="charge-1",
    )
    assert (rating.kind, rating.source, rating.positive) == (
        RatingKind.RECIPIENT,
        RatingSource.PAYMENT,
        True,
    )
    assert rating.author is None
    # the provider may still give its own rating of the lease
    assert rate_recipient(lease).source == RatingSource.MANUAL


def test_a_failed_charge_rates_negative_until_it_is_paid():
    lease = ended_lease()
    kwargs = {
        "organization": lease.winner,
        "provider": lease.block.provider,
        "reference": "charge-2",
    }
    failed = recipient_rating_from_payment(paid=False, **kwargs)
    assert failed.positive is False
    assert recipient_rating_summary(organization=lease.winner).positive_12_months == 0

    paid = recipient_rating_from_payment(paid=True, **kwargs)
    assert paid.pk == failed.pk
    assert paid.positive is True
    assert Rating.objects.filter(source=RatingSource.PAYMENT).count() == 1
    assert recipient_rating_summary(organization=lease.winner).positive_12_months == 1


def test_a_disputed_charge_turns_the_rating_negative():
    provider, recipient = VerifiedProviderFactory(), OrganizationFactory()
    kwargs = {"organization": recipient, "provider": provider, "reference": "charge-3"}
    recipient_rating_from_payment(paid=True, **kwargs)
    assert recipient_rating_from_payment(paid=False, **kwargs).positive is False


def test_the_same_payment_outcome_twice_changes_nothing():
    provider, recipient = VerifiedProviderFactory(), OrganizationFactory()
    kwargs = {"organization": recipient, "provider": provider, "reference": "charge-4"}
    first = recipient_rating_from_payment(paid=True, **kwargs)
    again = recipient_rating_from_payment(paid=True, **kwargs)
    assert again.pk == first.pk
    assert again.updated_at == first.updated_at
    assert Rating.objects.count() == 1
    other = recipient_rating_from_payment(paid=True, **{**kwargs, "reference": "charge-5"})
    assert other.pk != first.pk


def test_one_payment_of_a_consolidated_statement_rates_the_recipient_for_each_provider():
    recipient = OrganizationFactory()
    first, second = VerifiedProviderFactory(), VerifiedProviderFactory()
    for provider in (first, second, first):
        recipient_rating_from_payment(
            organization=recipient, provider=provider, paid=True, reference="statement:S-1"
        )
    assert sorted(Rating.objects.values_list("provider", flat=True)) == [first.pk, second.pk]
    assert recipient_rating_summary(organization=recipient).count == 2


def test_a_payment_reference_of_another_recipient_is_refused():
    provider = VerifiedProviderFactory()
    recipient_rating_from_payment(
        organization=OrganizationFactory(), provider=provider, paid=True, reference="ch-9"
    )
    code = refused(
        recipient_rating_from_payment,
        organization=OrganizationFactory(),
        provider=provider,
        paid=False,
        reference="ch-9",
    )
    assert code == "invalid_rating"


def test_a_payment_for_a_lease_between_other_parties_is_refused():
    lease = ended_lease()
    code = refused(
        recipient_rating_from_payment,
        organization=OrganizationFactory(),
        provider=lease.block.provider,
        lease=lease,
        paid=True,
        reference="charge-6",
    )
    assert code == "not_a_party"


def test_a_payment_without_a_reference_is_refused():
    code = refused(
        recipient_rating_from_payment,
        organization=OrganizationFactory(),
        provider=VerifiedProviderFactory(),
        paid=True,
        reference="",
    )
    assert code == "invalid_rating"


# --- aggregates ----------------------------------------------------------------------------------


def test_the_prior_is_five_ratings_of_three():
    assert (PRIOR_MEAN, PRIOR_WEIGHT) == (3.0, 5)


def test_an_unrated_provider_has_no_mean_and_no_share():
    summary = provider_rating_summary(provider=VerifiedProviderFactory())
    assert (summary.count, summary.bayesian_mean, summary.share_positive) == (0, None, None)


def test_the_bayesian_mean_of_two_ratings():
    provider = VerifiedProviderFactory()
    rated(provider, (5, 5, 5), (4, 4, 3))
    # means 5 and 11/3: (5 * 3.0 + 5 + 11/3) / (5 + 2) = 71/21
    summary = provider_rating_summary(provider=provider)
    assert summary.count == 2
    assert summary.bayesian_mean == pytest.approx(71 / 21)
    assert round(summary.bayesian_mean, 2) == 3.38
    assert summary.share_positive == 1.0


def test_share_positive_counts_the_last_12_months_and_the_mean_all_ratings():
    provider = VerifiedProviderFactory()
    rated(provider, (5, 5, 5), days_ago=10)
    rated(provider, (4, 4, 3), days_ago=300, positive=False)
    rated(provider, (1, 2, 3), days_ago=400, positive=False)
    summary = provider_rating_summary(provider=provider)
    assert (summary.count, summary.count_12_months, summary.positive_12_months) == (3, 2, 1)
    assert summary.share_positive == 0.5
    # means 5, 11/3 and 2: (15 + 32/3) / 8 = 77/24
    assert summary.bayesian_mean == pytest.approx(77 / 24)
    assert summary.as_dict() == {
        "count": 3,
        "count_12_months": 2,
        "share_positive_12_months": 0.5,
        "bayesian_mean": 3.21,
    }


def test_a_recipients_aggregates_count_manual_and_payment_ratings():
    lease = ended_lease()
    RecipientRatingFactory(lease=lease, provider=lease.block.provider, recipient=lease.winner)
    recipient_rating_from_payment(
        organization=lease.winner, provider=lease.block.provider, paid=False, reference="c-7"
    )
    old = recipient_rating_from_payment(
        organization=lease.winner, provider=lease.block.provider, paid=False, reference="c-8"
    )
    Rating.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=366))
    summary = recipient_rating_summary(organization=lease.winner)
    assert (summary.count, summary.count_12_months, summary.positive_12_months) == (3, 2, 1)
    assert summary.percent_positive == 50
    assert summary.bayesian_mean is None


# --- the planner ---------------------------------------------------------------------------------


def provider_with_path(name):
    provider = VerifiedProviderFactory(legal_name=name)
    OfferFactory(provider=provider, service="segmentation", price_per_gb_minor=100)
    path = RoutingPathFactory(provider=provider, capacity_mbps=1000)
    RoutingPathHopFactory(path=path, position=0)
    return provider


def test_the_planner_reads_the_providers_bayesian_mean():
    provider = VerifiedProviderFactory()
    assert provider_rating(provider) is None
    rated(provider, (4, 4, 4))
    assert provider_rating(provider) == pytest.approx((15 + 4) / 6)


def test_a_minimum_rating_of_3_reaches_a_provider_rated_4_and_not_one_rated_2():
    good, poor, unrated = (
        provider_with_path("Good Net"),
        provider_with_path("Poor Net"),
        provider_with_path("New Net"),
    )
    rated(good, (4, 4, 4))
    rated(poor, (2, 2, 2))
    organization = OrganizationFactory()
    profile = SegmentationProfileFactory(organization=organization, min_provider_rating=3)
    service_request = service_request_create(
        organization=organization,
        user=member_of(organization),
        spec=RequestSpec(
            profile=profile, data_bytes=10**9, deadline=timezone.now() + timedelta(hours=2)
        ),
    )
    assert list(service_request.broadcast_to.all()) == [good]
    assert unrated not in service_request.broadcast_to.all()


# --- pages ---------------------------------------------------------------------------------------


def rated_provider():
    """A verified provider with ratings (5,5,5) positive and (4,4,3) negative, the second with
    a comment and the provider's reply."""
    provider = VerifiedProviderFactory(organization__slug="rated", legal_name="Rated Net")
    rated(provider, (5, 5, 5))
    rating = ProviderRatingFactory(
        lease__block__provider=provider,
        quality=4,
        communication=4,
        delivery=3,
        positive=False,
        comment="Slow to answer tickets.",
        recipient__name="Secret Buyer Inc",
    )
    rating_reply(
        rating_id=rating.pk,
        organization=provider.organization,
        user=None,
        text="We added a night shift.",
    )
    return provider


def test_the_provider_directory_and_page_show_its_aggregates_and_public_ratings(client):
    rated_provider()
    directory = client.get(reverse("provider_list")).content.decode()
    assert "★ 3.4" in directory  # 71/21
    assert "2 ratings" in directory
    assert "50% positive in the last 12 months" in directory

    page = client.get(reverse("provider_detail", args=["rated"])).content.decode()
    assert "★ 3.4" in page
    assert "Slow to answer tickets." in page
    assert "We added a night shift." in page
    assert "Secret Buyer Inc" not in page


def test_every_auction_shows_its_providers_rating(client):
    provider = rated_provider()
    auction = AuctionFactory(block__provider=provider)
    listing = client.get(reverse("auction_list")).content.decode()
    assert "★ 3.4" in listing
    detail = client.get(reverse("auction_detail", args=[auction.pk])).content.decode()
    assert "★ 3.4" in detail
    assert "2 ratings" in detail


def test_an_unrated_providers_auction_says_so(client):
    AuctionFactory()
    assert "No ratings yet" in client.get(reverse("auction_list")).content.decode()


def test_the_winner_of_an_ended_lease_rates_the_provider_from_the_auction_page():
    lease = ended_lease()
    winner = Client()
    winner.force_login(member_of(lease.winner))
    page = winner.get(reverse("auction_detail", args=[lease.auction.pk])).content.decode()
    assert "Rate the provider" in page
    assert reverse("rating_new_lease", args=[lease.pk]) in page


def test_the_provider_of_an_ended_lease_rates_the_recipient_from_its_auction_page():
    lease = ended_lease()
    seller = Client()
    seller.force_login(member_of(lease.block.provider.organization))
    page = seller.get(reverse("auction_detail", args=[lease.auction.pk])).content.decode()
    assert "Rate the recipient" in page
    rate_recipient(lease)
    page = seller.get(reverse("auction_detail", args=[lease.auction.pk])).content.decode()
    assert "You rated the recipient of this lease: positive" in page


def test_recipient_ratings_are_not_shown_on_the_providers_page(client):
    rating = RecipientRatingFactory(comment="Paid three weeks late.", positive=False)
    page = client.get(
        reverse("provider_detail", args=[rating.provider.organization.slug])
    ).content.decode()
    assert "Paid three weeks late." not in page
    assert "No ratings yet" in page


def test_the_recipient_rates_the_provider_on_the_ratings_page():
    lease = ended_lease()
    client = Client()
    client.force_login(member_of(lease.winner))
    listing = client.get(reverse("rating_list")).content.decode()
    assert "Rate the provider" in listing
    assert f"Lease #{lease.pk}" in listing

    url = reverse("rating_new_lease", args=[lease.pk])
    assert "Quality" in client.get(url).content.decode()
    response = client.post(
        url,
        {
            "satisfied": "yes",
            "quality": "5",
            "communication": "4",
            "delivery": "3",
            "comment": "Good.",
        },
    )
    assert response.status_code == 302
    rating = Rating.objects.get()
    assert (rating.positive, rating.quality, rating.delivery, rating.comment) == (
        True,
        5,
        3,
        "Good.",
    )
    assert "already rated" in client.get(url).content.decode()
    again = client.post(
        url, {"satisfied": "no", "quality": "1", "communication": "1", "delivery": "1"}
    )
    assert "already rated" in again.content.decode()
    assert Rating.objects.count() == 1


def test_the_rating_form_refuses_a_closed_window():
    lease = ended_lease(days_ago=61)
    client = Client()
    client.force_login(member_of(lease.winner))
    response = client.post(
        reverse("rating_new_lease", args=[lease.pk]),
        {"satisfied": "yes", "quality": "5", "communication": "5", "delivery": "5"},
    )
    assert response.status_code == 200
    assert "this window closed" in response.content.decode()
    assert not Rating.objects.exists()


def test_the_provider_rates_its_lease_holder_on_the_ratings_page():
    lease = ended_lease()
    client = Client()
    client.force_login(member_of(lease.block.provider.organization))
    url = reverse("rating_new_lease", args=[lease.pk])
    assert "Did the recipient pay satisfactorily?" in client.get(url).content.decode()
    client.post(url, {"paid_satisfactorily": "no", "comment": "Paid late."})
    rating = Rating.objects.get()
    assert (rating.kind, rating.positive, rating.recipient) == (
        RatingKind.RECIPIENT,
        False,
        lease.winner,
    )


def test_another_organizations_lease_has_no_rating_page():
    lease = ended_lease()
    client = Client()
    client.force_login(member_of(OrganizationFactory()))
    assert client.get(reverse("rating_new_lease", args=[lease.pk])).status_code == 404


def test_the_recipient_rates_a_provider_of_a_planned_job_on_its_page():
    provider = VerifiedProviderFactory()
    job = planned_job(provider)
    client = Client()
    client.force_login(member_of(job.organization))
    url = reverse("rating_new_job_provider", args=[job.pk, provider.pk])
    assert url in client.get(reverse("rating_list")).content.decode()
    client.post(url, {"satisfied": "yes", "quality": "4", "communication": "4", "delivery": "4"})
    assert Rating.objects.get().job == job


def test_the_rated_party_replies_once_on_the_ratings_page():
    rating = ProviderRatingFactory()
    client = Client()
    client.force_login(member_of(rating.provider.organization))
    assert "Reply publicly" in client.get(reverse("rating_list")).content.decode()
    client.post(reverse("rating_reply", args=[rating.pk]), {"text": "Thank you."})
    client.post(reverse("rating_reply", args=[rating.pk]), {"text": "Changed my mind."})
    rating.refresh_from_db()
    assert rating.reply == "Thank you."
    assert "Reply publicly" not in client.get(reverse("rating_list")).content.decode()


def test_an_outsider_replying_gets_a_404():
    rating = ProviderRatingFactory()
    client = Client()
    client.force_login(member_of(OrganizationFactory()))
    response = client.post(reverse("rating_reply", args=[rating.pk]), {"text": "Hi"})
    assert response.status_code == 404


def test_the_console_lists_the_providers_ratings_and_lease_holders_to_rate():
    lease = ended_lease()
    mine = ProviderRatingFactory(lease__block__provider=lease.block.provider)
    theirs = ProviderRatingFactory()
    client = Client()
    client.force_login(member_of(lease.block.provider.organization))
    response = client.get(reverse("console:billing_rating_changelist"))
    assert response.status_code == 200
    assert {r.pk for r in response.context["cl"].result_list} == {mine.pk}
    page = response.content.decode()
    assert reverse("rating_new_lease", args=[lease.pk]) in page
    assert theirs.recipient.name not in page
    url = reverse("console:billing_rating_change", args=[theirs.pk])
    assert client.get(url).status_code == 404
