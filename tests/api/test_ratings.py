"""The ratings API: listing what the caller's organization gave and received, giving a rating
(with its problem codes and the Idempotency-Key), replying once, the provider's public `rating`
aggregate, and isolation between organizations."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from billing.models import Rating
from billing.ratings import recipient_rating_from_payment
from marketplace.models import ApiKeyScope
from tests.api.helpers import assert_problem
from tests.factories import (
    LeaseFactory,
    OrganizationFactory,
    PlannedJobFactory,
    ProviderRatingFactory,
    RecipientRatingFactory,
    UserFactory,
    WorkItemFactory,
    member_of,
)

pytestmark = pytest.mark.django_db

URL = "/api/v1/ratings/"


def ended_lease(*, days_ago: float = 1, **kwargs):
    ends_at = timezone.now() - timedelta(days=days_ago)
    return LeaseFactory(
        block__starts_at=ends_at - timedelta(hours=3), block__ends_at=ends_at, **kwargs
    )


def provider_rating_body(lease, **changes):
    body = {
        "kind": "provider",
        "lease": lease.pk,
        "satisfied": True,
        "quality": 5,
        "communication": 4,
        "delivery": 4,
        "comment": "Quick setup.",
    }
    body.update(changes)
    return body


@pytest.fixture
def lease(provider_a, recipient_org):
    """A lease of provider A's block won by the recipient, ended yesterday."""
    return ended_lease(block__provider=provider_a, winner=recipient_org)


@pytest.fixture
def recipient_client(recipient_org, issue_key, key_client) -> APIClient:
    return key_client(issue_key(recipient_org))


# --- authentication and permissions --------------------------------------------------------------


def test_anonymous_callers_get_401():
    client = APIClient()
    assert_problem(client.get(URL), status=401, code="not_authenticated")
    assert_problem(client.post(URL, {}, format="json"), status=401, code="not_authenticated")


def test_a_read_only_key_cannot_rate(lease, recipient_org, issue_key, key_client):
    client = key_client(issue_key(recipient_org, scope=ApiKeyScope.READ))
    response = client.post(URL, provider_rating_body(lease), format="json")
    assert_problem(response, status=403, code="insufficient_scope")
    assert client.get(URL).status_code == 200


def test_a_user_without_organization_gets_403():
    client = APIClient()
    client.force_authenticate(UserFactory())
    assert_problem(client.get(URL), status=403, code="organization_required")


def test_rating_another_organizations_lease_is_403_not_a_party(lease, client_b):
    response = client_b.post(URL, provider_rating_body(lease), format="json")
    assert_problem(response, status=403, code="not_a_party")
    response = client_b.post(
        URL, {"kind": "recipient", "lease": lease.pk, "paid_satisfactorily": True}, format="json"
    )
    assert_problem(response, status=403, code="not_a_party")


def test_an_unknown_lease_is_not_a_party_either(recipient_client):
    body = provider_rating_body(LeaseFactory.build(pk=999999))
    assert_problem(recipient_client.post(URL, body, format="json"), status=403, code="not_a_party")


def test_a_recipient_that_is_no_provider_cannot_rate_recipients(lease, recipient_client):
    response = recipient_client.post(
        URL, {"kind": "recipient", "lease": lease.pk, "paid_satisfactorily": True}, format="json"
    )
    assert_problem(response, status=403, code="not_a_party")


def test_another_organizations_rating_is_404(lease, client_b):
    rating = ProviderRatingFactory(lease=lease, provider=lease.block.provider)
    assert_problem(client_b.get(f"{URL}{rating.pk}/"), status=404, code="not_found")
    response = client_b.post(f"{URL}{rating.pk}/reply/", {"text": "Hi"}, format="json")
    assert_problem(response, status=404, code="rating_not_found")


# --- giving a rating -----------------------------------------------------------------------------


def test_the_recipient_rates_the_provider_of_its_lease(lease, recipient_client):
    response = recipient_client.post(URL, provider_rating_body(lease), format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["kind"] == "provider"
    assert body["direction"] == "given"
    assert body["automatic"] is False
    assert body["provider"] == {"slug": "alpha", "name": "Alpha Networks"}
    assert (body["satisfied"], body["paid_satisfactorily"]) == (True, None)
    assert (body["quality"], body["communication"], body["delivery"]) == (5, 4, 4)
    assert body["lease"] == lease.pk
    rating = Rating.objects.get()
    assert rating.author is not None  # the key's creator answers for it


def test_the_provider_rates_the_recipient_of_its_lease(lease, client_a):
    response = client_a.post(
        URL,
        {"kind": "recipient", "lease": lease.pk, "paid_satisfactorily": False, "comment": "Late."},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["kind"], body["paid_satisfactorily"], body["satisfied"]) == (
        "recipient",
        False,
        None,
    )
    assert body["quality"] is None


def test_a_second_rating_of_the_same_lease_is_409_already_rated(lease, recipient_client):
    recipient_client.post(URL, provider_rating_body(lease), format="json")
    response = recipient_client.post(
        URL, provider_rating_body(lease, satisfied=False), format="json"
    )
    assert_problem(response, status=409, code="already_rated")
    assert Rating.objects.count() == 1


def test_rating_after_61_days_is_409_rating_window_closed(
    provider_a, recipient_org, recipient_client
):
    late = ended_lease(days_ago=61, block__provider=provider_a, winner=recipient_org)
    response = recipient_client.post(URL, provider_rating_body(late), format="json")
    assert_problem(response, status=409, code="rating_window_closed")


def test_rating_a_running_lease_is_409_rating_not_open(provider_a, recipient_org, recipient_client):
    running = LeaseFactory(block__provider=provider_a, winner=recipient_org)
    response = recipient_client.post(URL, provider_rating_body(running), format="json")
    assert_problem(response, status=409, code="rating_not_open")


@pytest.mark.parametrize(
    ("changes", "field", "status"),
    [
        # the shape of a field: 400
        ({"quality": 6}, "quality", 400),
        ({"quality": "4"}, "quality", 400),
        # which fields a rating of its kind takes: 422
        ({"delivery": None}, "delivery", 422),
        ({"paid_satisfactorily": True}, "paid_satisfactorily", 422),
        ({"job": 1}, "non_field_errors", 422),
        ({"provider": "alpha"}, "provider", 422),
    ],
)
def test_invalid_ratings_are_refused_with_the_field(
    lease, recipient_client, changes, field, status
):
    body = {k: v for k, v in provider_rating_body(lease, **changes).items() if v is not None}
    body_problem = assert_problem(
        recipient_client.post(URL, body, format="json"), status=status, code="validation_failed"
    )
    assert field in body_problem["errors"]
    assert not Rating.objects.exists()


def test_a_rating_with_an_idempotency_key_is_given_once(lease, recipient_client):
    headers = {"HTTP_IDEMPOTENCY_KEY": "rate-lease-1"}
    first = recipient_client.post(URL, provider_rating_body(lease), format="json", **headers)
    again = recipient_client.post(URL, provider_rating_body(lease), format="json", **headers)
    assert first.status_code == again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert Rating.objects.count() == 1


def test_the_recipient_rates_a_provider_of_a_planned_job(
    provider_a, provider_b, recipient_org, recipient_client
):
    job = PlannedJobFactory(organization=recipient_org)
    WorkItemFactory(job=job, provider=provider_a)
    WorkItemFactory(job=job, provider=provider_b)
    body = {
        "kind": "provider",
        "job": job.pk,
        "provider": "beta",
        "satisfied": False,
        "quality": 2,
        "communication": 3,
        "delivery": 2,
    }
    response = recipient_client.post(URL, body, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["provider"]["slug"] == "beta"
    assert response.json()["job"] == job.pk
    missing = {k: v for k, v in body.items() if k != "provider"}
    response = recipient_client.post(URL, missing, format="json")
    assert_problem(response, status=422, code="validation_failed")


# --- listing -------------------------------------------------------------------------------------


def test_the_list_holds_ratings_given_and_received_filtered_by_direction(
    lease, recipient_client, client_a
):
    given = ProviderRatingFactory(lease=lease, provider=lease.block.provider)
    received = RecipientRatingFactory(lease=lease, provider=lease.block.provider)
    automatic = recipient_rating_from_payment(
        organization=lease.winner, provider=lease.block.provider, paid=True, reference="ch_1"
    )
    ProviderRatingFactory()  # between other organizations

    def ids(client, query=""):
        return {row["id"] for row in client.get(f"{URL}{query}").json()["results"]}

    assert ids(recipient_client) == {given.pk, received.pk, automatic.pk}
    assert ids(recipient_client, "?direction=given") == {given.pk}
    assert ids(recipient_client, "?direction=received") == {received.pk, automatic.pk}
    assert ids(recipient_client, "?direction=received&kind=provider") == set()
    # the provider's side: it received the provider rating and gave the recipient rating; the
    # automatic rating is nobody's, it is only received
    assert ids(client_a, "?direction=received") == {given.pk}
    assert ids(client_a, "?direction=given") == {received.pk}
    row = recipient_client.get(f"{URL}{automatic.pk}/").json()
    assert (row["automatic"], row["direction"], row["paid_satisfactorily"]) == (
        True,
        "received",
        True,
    )


def test_a_bad_direction_filter_is_400(recipient_client):
    response = recipient_client.get(f"{URL}?direction=sideways")
    assert_problem(response, status=400, code="validation_failed")


def test_an_organization_sees_nothing_of_others_ratings(lease, issue_key, key_client):
    ProviderRatingFactory(lease=lease, provider=lease.block.provider)
    RecipientRatingFactory(lease=lease, provider=lease.block.provider)
    outsider = key_client(issue_key(OrganizationFactory()))
    assert outsider.get(URL).json()["results"] == []


def test_a_signed_in_member_lists_its_organizations_ratings(lease):
    rating = ProviderRatingFactory(lease=lease, provider=lease.block.provider)
    client = Client()
    client.force_login(member_of(lease.winner))
    rows = client.get(URL).json()["results"]
    assert [row["id"] for row in rows] == [rating.pk]


# --- replies -------------------------------------------------------------------------------------


def test_the_rated_provider_replies_once(lease, client_a):
    rating = ProviderRatingFactory(lease=lease, provider=lease.block.provider)
    response = client_a.post(f"{URL}{rating.pk}/reply/", {"text": "Thank you!"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["reply"] == "Thank you!"
    assert response.json()["replied_at"]
    response = client_a.post(f"{URL}{rating.pk}/reply/", {"text": "Edited"}, format="json")
    assert_problem(response, status=409, code="already_replied")


def test_the_rater_replying_is_403_not_the_rated_party(lease, recipient_client):
    rating = ProviderRatingFactory(lease=lease, provider=lease.block.provider)
    response = recipient_client.post(f"{URL}{rating.pk}/reply/", {"text": "Me"}, format="json")
    assert_problem(response, status=403, code="not_the_rated_party")


def test_an_empty_reply_is_400(lease, client_a):
    rating = ProviderRatingFactory(lease=lease, provider=lease.block.provider)
    response = client_a.post(f"{URL}{rating.pk}/reply/", {"text": ""}, format="json")
    assert_problem(response, status=400, code="validation_failed")


# --- aggregates ----------------------------------------------------------------------------------


def test_the_provider_directory_shows_each_providers_rating(provider_a, provider_b):
    ProviderRatingFactory(lease__block__provider=provider_a, quality=5, communication=5, delivery=5)
    ProviderRatingFactory(
        lease__block__provider=provider_a, quality=4, communication=4, delivery=3, positive=False
    )
    detail = APIClient().get("/api/v1/providers/alpha/").json()
    assert detail["rating"] == {
        "count": 2,
        "count_12_months": 2,
        "share_positive_12_months": 0.5,
        "bayesian_mean": 3.38,  # (15 + 5 + 11/3) / 7
    }
    listing = APIClient().get("/api/v1/providers/").json()["results"]
    ratings = {row["slug"]: row["rating"] for row in listing}
    assert ratings["alpha"]["count"] == 2
    assert ratings["beta"] == {
        "count": 0,
        "count_12_months": 0,
        "share_positive_12_months": None,
        "bayesian_mean": None,
    }


def test_the_summary_gives_the_callers_own_aggregates(lease, recipient_client, client_a):
    ProviderRatingFactory(lease=lease, provider=lease.block.provider)
    recipient_rating_from_payment(
        organization=lease.winner, provider=lease.block.provider, paid=False, reference="ch_2"
    )
    mine = recipient_client.get(f"{URL}summary/").json()
    assert mine["as_provider"] is None
    assert mine["as_recipient"]["count"] == 1
    assert mine["as_recipient"]["share_positive_12_months"] == 0.0
    theirs = client_a.get(f"{URL}summary/").json()
    assert theirs["as_provider"]["count"] == 1
    assert theirs["as_provider"]["bayesian_mean"] == pytest.approx((15 + 4) / 6, abs=0.01)
