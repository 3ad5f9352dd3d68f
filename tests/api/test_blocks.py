"""A provider lists blocks of service time through the API and sees only its own."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from auctions.models import ServiceBlock
from marketplace.models import ApiKeyScope, Role
from providers.models import ProviderStatus
from tests.api.helpers import assert_problem
from tests.factories import ProviderProfileFactory, member_of

pytestmark = pytest.mark.django_db
pytest_plugins = ["tests.api.auction_fixtures"]

BLOCKS = "/api/v1/blocks/"


def in_days(days: float) -> str:
    return (timezone.now() + timedelta(days=days)).isoformat()


def new_block(**changes) -> dict:
    block = {
        "starts_at": in_days(3),
        "ends_at": in_days(3.5),
        "max_rate_mbps": 1000,
        "min_rate_mbps": 200,
        "seats": 4,
        "data_cap_gb": 500,
        "description": "Evening peak, metro ring",
    }
    return {**block, **changes}


def test_verified_provider_lists_a_block(client_a, provider_a):
    response = client_a.post(BLOCKS, new_block(), format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["max_rate_mbps"], body["min_rate_mbps"], body["seats"]) == (1000, 200, 4)
    assert body["data_cap_gb"] == 500
    assert body["starts_at"].endswith("Z")
    block = ServiceBlock.objects.get(pk=body["id"])
    assert block.provider == provider_a
    assert block.description == "Evening peak, metro ring"


def test_seats_default_to_one_and_the_data_cap_to_none(client_a):
    data = new_block()
    del data["seats"], data["data_cap_gb"], data["description"]

    response = client_a.post(BLOCKS, data, format="json")

    assert response.status_code == 201, response.content
    assert (response.json()["seats"], response.json()["data_cap_gb"]) == (1, None)


def test_block_ending_before_it_starts_is_refused(client_a):
    response = client_a.post(
        BLOCKS, new_block(starts_at=in_days(3), ends_at=in_days(2)), format="json"
    )

    body = assert_problem(response, status=422, code="validation_failed")
    assert "must end after it starts" in body["detail"]
    assert not ServiceBlock.objects.exists()


def test_guaranteed_rate_above_the_maximum_is_refused(client_a):
    response = client_a.post(BLOCKS, new_block(max_rate_mbps=100, min_rate_mbps=200), format="json")

    body = assert_problem(response, status=422, code="validation_failed")
    assert "cannot exceed the maximum rate" in body["detail"]
    assert not ServiceBlock.objects.exists()


def test_block_starting_in_the_past_is_refused(client_a):
    response = client_a.post(
        BLOCKS, new_block(starts_at=in_days(-1), ends_at=in_days(1)), format="json"
    )

    body = assert_problem(response, status=422, code="validation_failed")
    assert "starts_at" in body["errors"]


@pytest.mark.parametrize("value", ["1000", 1000.0, True, 0, -5])
def test_rates_must_be_positive_json_integers(client_a, value):
    response = client_a.post(BLOCKS, new_block(max_rate_mbps=value), format="json")

    body = assert_problem(response, status=400, code="validation_failed")
    assert "max_rate_mbps" in body["errors"]
    assert not ServiceBlock.objects.exists()


def test_times_and_rates_are_required(client_a):
    response = client_a.post(BLOCKS, {}, format="json")

    body = assert_problem(response, status=400, code="validation_failed")
    assert set(body["errors"]) == {"starts_at", "ends_at", "max_rate_mbps", "min_rate_mbps"}


def test_unverified_provider_cannot_list_blocks(issue_key, key_client):
    pending = ProviderProfileFactory(status=ProviderStatus.PENDING)
    client = key_client(issue_key(pending.organization))

    response = client.post(BLOCKS, new_block(), format="json")

    body = assert_problem(response, status=403, code="provider_not_verified")
    assert "only verified providers can sell" in body["detail"]
    assert not ServiceBlock.objects.exists()


def test_buyer_organization_is_403_not_a_provider(recipient_org, issue_key, key_client):
    client = key_client(issue_key(recipient_org))

    assert_problem(client.get(BLOCKS), status=403, code="not_a_provider")
    assert_problem(
        client.post(BLOCKS, new_block(), format="json"), status=403, code="not_a_provider"
    )


def test_anonymous_caller_is_401(block_of_a):
    client = APIClient()

    assert_problem(client.get(BLOCKS), status=401, code="not_authenticated")
    assert_problem(client.get(f"{BLOCKS}{block_of_a.pk}/"), status=401, code="not_authenticated")
    assert_problem(
        client.post(BLOCKS, new_block(), format="json"), status=401, code="not_authenticated"
    )


def test_read_only_key_reads_blocks_but_cannot_list_one(
    provider_a, block_of_a, issue_key, key_client
):
    client = key_client(issue_key(provider_a.organization, scope=ApiKeyScope.READ))

    assert client.get(BLOCKS).status_code == 200
    response = client.post(BLOCKS, new_block(), format="json")

    assert_problem(response, status=403, code="insufficient_scope")
    assert ServiceBlock.objects.count() == 1


def test_list_shows_only_the_callers_own_blocks(client_a, block_of_a, block_of_b):
    response = client_a.get(BLOCKS)

    assert response.status_code == 200
    assert [b["id"] for b in response.json()["results"]] == [block_of_a.pk]


def test_own_block_is_readable(client_a, block_of_a):
    response = client_a.get(f"{BLOCKS}{block_of_a.pk}/")

    assert response.status_code == 200
    assert response.json()["max_rate_mbps"] == block_of_a.max_rate_mbps


def test_another_providers_block_is_404(client_a, block_of_b):
    assert_problem(client_a.get(f"{BLOCKS}{block_of_b.pk}/"), status=404, code="not_found")


def test_blocks_cannot_be_changed_or_deleted_through_the_api(client_a, block_of_a):
    url = f"{BLOCKS}{block_of_a.pk}/"

    assert_problem(client_a.delete(url), status=405, code="method_not_allowed")
    assert_problem(
        client_a.patch(url, {"seats": 9}, format="json"), status=405, code="method_not_allowed"
    )
    assert ServiceBlock.objects.get().seats == block_of_a.seats


def test_idempotency_key_lists_the_block_once(client_a):
    headers = {"Idempotency-Key": "block-evening-1"}
    data = new_block()

    first = client_a.post(BLOCKS, data, format="json", headers=headers)
    second = client_a.post(BLOCKS, data, format="json", headers=headers)

    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second["Idempotent-Replayed"] == "true"
    assert ServiceBlock.objects.count() == 1


def test_signed_in_owner_lists_a_block_through_the_session(provider_a, login_client):
    client = login_client(member_of(provider_a.organization, role=Role.OWNER))

    response = client.post(BLOCKS, new_block(), content_type="application/json")

    assert response.status_code == 201, response.content
    assert ServiceBlock.objects.filter(provider=provider_a).exists()


def test_signed_in_plain_member_reads_blocks_but_cannot_list_one(
    provider_a, block_of_a, login_client
):
    client = login_client(member_of(provider_a.organization, role=Role.MEMBER))

    assert client.get(BLOCKS).status_code == 200
    response = client.post(BLOCKS, new_block(), content_type="application/json")

    assert_problem(response, status=403, code="manager_role_required")
    assert ServiceBlock.objects.count() == 1


def test_block_times_are_returned_in_utc(client_a):
    starts = (timezone.now() + timedelta(days=2)).replace(microsecond=0)
    data = new_block(
        starts_at=starts.astimezone(timezone.get_fixed_timezone(120)).isoformat(),
        ends_at=(starts + timedelta(hours=2)).isoformat(),
    )

    response = client_a.post(BLOCKS, data, format="json")

    assert response.status_code == 201, response.content
    assert response.json()["starts_at"] == starts.strftime("%Y-%m-%dT%H:%M:%SZ")
