"""Leases through the partner API: the leaseholder, the members of a leaseholding buying group
and the block's provider see a lease; anyone else gets the 404 of a lease that does not exist."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from marketplace.models import ApiKeyScope
from marketplace.services import api_key_create
from tests.api.helpers import assert_problem
from tests.factories import (
    LeaseFactory,
    OrganizationFactory,
    ServiceBlockFactory,
    buying_group,
    group_joined,
    member_of,
)

pytestmark = pytest.mark.django_db

LEASES = "/api/v1/leases/"


def lease_url(lease) -> str:
    return f"{LEASES}{lease.pk}/"


def ids(response) -> list[int]:
    assert response.status_code == 200, response.content
    return [lease["id"] for lease in response.json()["results"]]


@pytest.fixture
def holder(recipient_org):
    member_of(recipient_org)
    return recipient_org


@pytest.fixture
def lease(provider_a, holder):
    """A lease of provider A's block, held by the recipient, running now."""
    return LeaseFactory(block__provider=provider_a, winner=holder, price_minor=125_000)


@pytest.fixture
def holder_client(holder, issue_key, key_client) -> APIClient:
    return key_client(issue_key(holder))


def test_leaseholder_sees_its_lease_with_price_times_and_seats(holder_client, lease, provider_a):
    response = holder_client.get(lease_url(lease))

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["id"] == lease.pk
    assert body["auction"] == lease.auction_id
    assert body["group_offer"] is None
    assert body["block"] == lease.block_id
    assert body["provider"] == {"slug": "alpha", "name": "Alpha Networks"}
    assert body["leaseholder"]["slug"] == lease.winner.slug
    assert body["price_minor"] == 125_000
    assert body["currency"] == "USD"
    assert body["seats"] == lease.block.seats
    assert body["status"] == "active"
    assert body["starts_at"].endswith("Z") and body["ends_at"].endswith("Z")
    assert body["created_at"].endswith("Z")


def test_leaseholder_lists_its_leases_soonest_first(holder_client, holder, provider_a, lease):
    later = LeaseFactory(
        block__provider=provider_a,
        winner=holder,
        block__starts_at=timezone.now() + timedelta(days=2),
        block__ends_at=timezone.now() + timedelta(days=3),
    )
    LeaseFactory(block__provider=provider_a)  # someone else's

    assert ids(holder_client.get(LEASES)) == [lease.pk, later.pk]


def test_provider_sees_the_leases_of_its_blocks(client_a, lease):
    assert ids(client_a.get(LEASES)) == [lease.pk]
    assert client_a.get(lease_url(lease)).status_code == 200


def test_another_provider_gets_404_for_a_lease_of_someone_elses_block(client_b, lease):
    response = client_b.get(lease_url(lease))

    assert_problem(response, status=404, code="lease_not_found")
    assert ids(client_b.get(LEASES)) == []


def test_another_recipient_gets_the_same_404_as_for_a_missing_lease(issue_key, key_client, lease):
    stranger = OrganizationFactory()
    member_of(stranger)
    client = key_client(issue_key(stranger))

    theirs = assert_problem(client.get(lease_url(lease)), status=404, code="lease_not_found")
    missing = assert_problem(client.get(f"{LEASES}999999/"), status=404, code="lease_not_found")

    assert theirs["detail"] == missing["detail"]
    assert ids(client.get(LEASES)) == []


def test_member_of_a_buying_group_sees_the_groups_lease(key_client, provider_a):
    group, _admin, _member = buying_group()
    payer = group_joined(group, cap_minor=10_000)
    group_lease = LeaseFactory(block__provider=provider_a, winner=group.organization)
    # the payer's own organization's key, created by the payer: it acts as the group member
    _, key = api_key_create(
        organization=payer.paying_organization,
        name="payer key",
        scope=ApiKeyScope.READ,
        created_by=payer.user,
    )
    client = key_client(key)

    assert ids(client.get(LEASES)) == [group_lease.pk]
    body = client.get(lease_url(group_lease)).json()
    assert body["leaseholder"]["slug"] == group.organization.slug


def test_a_key_of_an_organization_outside_the_group_sees_none_of_its_creators_groups(
    key_client, provider_a
):
    group, _admin, _member = buying_group()
    sponsored = group_joined(group, role="sponsored")
    group_lease = LeaseFactory(block__provider=provider_a, winner=group.organization)
    # the sponsored member also runs an unrelated organization, with a key of its own
    unrelated = OrganizationFactory()
    member_of(unrelated, user=sponsored.user)
    _, key = api_key_create(
        organization=unrelated, name="ci", scope=ApiKeyScope.READ, created_by=sponsored.user
    )
    client = key_client(key)

    assert ids(client.get(LEASES)) == []
    assert_problem(client.get(lease_url(group_lease)), status=404, code="lease_not_found")


def test_without_a_key_the_leases_are_401(lease):
    response = APIClient().get(LEASES)

    assert response.status_code == 401


def test_a_read_only_key_reads_leases(holder, issue_key, key_client, lease):
    client = key_client(issue_key(holder, scope=ApiKeyScope.READ))

    assert ids(client.get(LEASES)) == [lease.pk]


def test_leases_cannot_be_created_through_the_api(holder_client, lease):
    response = holder_client.post(LEASES, {"block": lease.block_id}, format="json")

    assert_problem(response, status=405, code="method_not_allowed")


# --- filters -------------------------------------------------------------------------------------


@pytest.fixture
def provider_holding_a_lease(provider_a, provider_b):
    """Provider A holds a lease of provider B's block, and leases a block of its own."""
    held = LeaseFactory(block__provider=provider_b, winner=provider_a.organization)
    provided = LeaseFactory(block__provider=provider_a)
    return held, provided


def test_role_filter_separates_held_from_provided_leases(client_a, provider_holding_a_lease):
    held, provided = provider_holding_a_lease

    assert sorted(ids(client_a.get(LEASES))) == sorted([held.pk, provided.pk])
    assert ids(client_a.get(LEASES, {"role": "holder"})) == [held.pk]
    assert ids(client_a.get(LEASES, {"role": "provider"})) == [provided.pk]


def test_active_and_status_filters_follow_the_lease_times(holder_client, holder, provider_a):
    now = timezone.now()
    running = LeaseFactory(block__provider=provider_a, winner=holder)
    upcoming = LeaseFactory(
        block__provider=provider_a,
        winner=holder,
        block__starts_at=now + timedelta(days=1),
        block__ends_at=now + timedelta(days=2),
    )
    ended = LeaseFactory(
        block__provider=provider_a,
        winner=holder,
        block__starts_at=now - timedelta(days=2),
        block__ends_at=now - timedelta(days=1),
    )

    assert ids(holder_client.get(LEASES, {"active": "true"})) == [running.pk]
    assert ids(holder_client.get(LEASES, {"active": "false"})) == [ended.pk, upcoming.pk]
    assert ids(holder_client.get(LEASES, {"status": "upcoming"})) == [upcoming.pk]
    assert ids(holder_client.get(LEASES, {"status": "ended"})) == [ended.pk]
    body = holder_client.get(lease_url(upcoming)).json()
    assert body["status"] == "upcoming"


def test_provider_auction_and_block_filters(holder_client, holder, provider_a, provider_b, lease):
    other = LeaseFactory(block__provider=provider_b, winner=holder)

    assert ids(holder_client.get(LEASES, {"provider": "beta"})) == [other.pk]
    assert ids(holder_client.get(LEASES, {"auction": lease.auction_id})) == [lease.pk]
    assert ids(holder_client.get(LEASES, {"block": other.block_id})) == [other.pk]
    assert ids(holder_client.get(LEASES, {"provider": "nobody"})) == []


def test_an_empty_filter_value_is_no_filter(holder_client, lease):
    assert ids(holder_client.get(LEASES, {"role": "", "active": "", "auction": ""})) == [lease.pk]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"role": "buyer"}, "role"),
        ({"status": "soon"}, "status"),
        ({"active": "maybe"}, "active"),
        ({"auction": "abc"}, "auction"),
        ({"auction": "1.5"}, "auction"),
        ({"block": "-3"}, "block"),
        ({"provider": "not a slug"}, "provider"),
    ],
)
def test_bad_filter_value_is_400_validation_failed(holder_client, lease, params, field):
    response = holder_client.get(LEASES, params)

    body = assert_problem(response, status=400, code="validation_failed")
    assert field in body["errors"]


def test_leases_are_paginated(holder_client, holder, provider_a):
    blocks = ServiceBlockFactory.create_batch(3, provider=provider_a)
    for block in blocks:
        LeaseFactory(block=block, auction__block=block, winner=holder)

    first = holder_client.get(LEASES, {"page": 1})

    assert first.json()["count"] == 3
    assert_problem(holder_client.get(LEASES, {"page": 9}), status=404, code="not_found")
