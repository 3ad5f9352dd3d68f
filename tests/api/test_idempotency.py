"""Idempotency-Key on creating POSTs: a retried create happens once."""

import threading

import pytest
from django.db import connection

from marketplace.models import IdempotencyRecord
from providers.models import Network, Offer
from tests.api.helpers import assert_problem

pytestmark = pytest.mark.django_db

NETWORKS = "/api/v1/networks/"
NEW_NETWORK = {"name": "Metro ring", "technology": "fiber", "region": "eu-west"}


def post(client, url, data, key=None):
    headers = {"Idempotency-Key": key} if key is not None else {}
    return client.post(url, data, format="json", headers=headers)


def test_replay_with_same_key_and_body_returns_the_first_response_and_creates_once(client_a):
    first = post(client_a, NETWORKS, NEW_NETWORK, key="create-metro-1")
    second = post(client_a, NETWORKS, NEW_NETWORK, key="create-metro-1")

    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first
    assert Network.objects.count() == 1


def test_same_key_with_different_body_is_422_idempotency_key_reused(client_a):
    post(client_a, NETWORKS, NEW_NETWORK, key="k1")

    response = post(client_a, NETWORKS, {**NEW_NETWORK, "name": "Other ring"}, key="k1")

    assert_problem(response, status=422, code="idempotency_key_reused")
    assert list(Network.objects.values_list("name", flat=True)) == ["Metro ring"]


def test_same_key_on_another_resource_is_422_idempotency_key_reused(client_a):
    post(client_a, NETWORKS, NEW_NETWORK, key="k1")
    offer = {
        "service": "segmentation",
        "price_per_gb_minor": 1,
        "price_per_minute_minor": 1,
        "currency": "USD",
    }

    response = post(client_a, "/api/v1/offers/", offer, key="k1")

    assert_problem(response, status=422, code="idempotency_key_reused")
    assert not Offer.objects.exists()


def test_without_the_header_each_post_creates(client_a):
    first = post(client_a, NETWORKS, NEW_NETWORK)
    second = post(client_a, NETWORKS, {**NEW_NETWORK, "name": "Second ring"})

    assert first.status_code == second.status_code == 201
    assert Network.objects.count() == 2
    assert not IdempotencyRecord.objects.exists()


def test_without_the_header_a_repeat_is_processed_again_not_replayed(client_a):
    post(client_a, NETWORKS, NEW_NETWORK)

    repeat = post(client_a, NETWORKS, NEW_NETWORK)

    body = assert_problem(repeat, status=409, code="already_exists")
    assert "already has a network with this name" in body["detail"]
    assert Network.objects.count() == 1


def test_request_still_in_progress_is_409_idempotency_in_progress(client_a, provider_a):
    first = post(client_a, NETWORKS, NEW_NETWORK, key="slow")
    # As a concurrent request sees the record before the first one stored its response.
    IdempotencyRecord.objects.filter(key="slow").update(response_status=None, response_body=None)

    response = post(client_a, NETWORKS, NEW_NETWORK, key="slow")

    assert first.status_code == 201
    assert_problem(response, status=409, code="idempotency_in_progress")
    assert Network.objects.count() == 1


def test_key_longer_than_255_characters_is_400_invalid_idempotency_key(client_a):
    response = post(client_a, NETWORKS, NEW_NETWORK, key="k" * 256)

    assert_problem(response, status=400, code="invalid_idempotency_key")
    assert not Network.objects.exists()


def test_key_of_255_characters_is_accepted(client_a):
    response = post(client_a, NETWORKS, NEW_NETWORK, key="k" * 255)

    assert response.status_code == 201


def test_failed_create_stores_nothing_so_the_key_can_be_retried(client_a):
    bad = post(client_a, NETWORKS, {**NEW_NETWORK, "technology": "carrier-pigeon"}, key="retry")

    good = post(client_a, NETWORKS, NEW_NETWORK, key="retry")

    assert_problem(bad, status=400, code="validation_failed")
    assert good.status_code == 201
    assert Network.objects.count() == 1


def test_record_is_stored_with_the_created_response(client_a, provider_a):
    response = post(client_a, NETWORKS, NEW_NETWORK, key="stored")

    record = IdempotencyRecord.objects.get(key="stored")
    assert record.organization == provider_a.organization
    assert record.method == "POST"
    assert record.path == NETWORKS
    assert record.response_status == 201
    assert record.response_body == response.json()


def test_keys_are_kept_per_organization(client_a, client_b):
    first = post(client_a, NETWORKS, NEW_NETWORK, key="shared-key")
    second = post(client_b, NETWORKS, NEW_NETWORK, key="shared-key")

    assert first.status_code == second.status_code == 201
    assert "Idempotent-Replayed" not in second
    assert Network.objects.count() == 2


def test_read_scoped_key_with_idempotency_key_still_cannot_create(
    provider_a, issue_key, key_client
):
    client = key_client(issue_key(provider_a.organization, scope="read"))

    response = post(client, NETWORKS, NEW_NETWORK, key="k1")

    assert_problem(response, status=403, code="insufficient_scope")
    assert not IdempotencyRecord.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_with_the_same_key_create_once(provider_a, issue_key, key_client):
    key = issue_key(provider_a.organization)
    barrier = threading.Barrier(2)
    responses = []

    def send():
        try:
            client = key_client(key)
            barrier.wait()
            responses.append(post(client, NETWORKS, NEW_NETWORK, key="race"))
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(r.status_code for r in responses) == [201, 201]
    assert responses[0].json() == responses[1].json()
    assert sorted(r.get("Idempotent-Replayed", "") for r in responses) == ["", "true"]
    assert Network.objects.count() == 1
