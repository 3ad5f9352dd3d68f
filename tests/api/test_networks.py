"""A provider manages its own networks through the API."""

import pytest

from providers.models import Network
from tests.api.helpers import assert_problem
from tests.factories import (
    NetworkFactory,
    ProviderProfileFactory,
    RoutingPathFactory,
    RoutingPathHopFactory,
)

pytestmark = pytest.mark.django_db

NETWORKS = "/api/v1/networks/"


def test_network_detail(client_a, provider_a):
    network = NetworkFactory(provider=provider_a, name="Backbone", technology="5g", region="apac")

    response = client_a.get(f"{NETWORKS}{network.pk}/")

    assert response.json() == {
        "id": network.pk,
        "name": "Backbone",
        "technology": "5g",
        "region": "apac",
    }


def test_network_is_renamed_with_patch(client_a, provider_a):
    network = NetworkFactory(provider=provider_a, name="Old", region="eu-west")

    response = client_a.patch(f"{NETWORKS}{network.pk}/", {"name": " New "}, format="json")

    assert response.status_code == 200
    assert response.json()["name"] == "New"
    network.refresh_from_db()
    assert (network.name, network.region) == ("New", "eu-west")


def test_network_is_replaced_with_put(client_a, provider_a):
    network = NetworkFactory(provider=provider_a)

    response = client_a.put(
        f"{NETWORKS}{network.pk}/",
        {"name": "Sat link", "technology": "satellite", "region": "global"},
        format="json",
    )

    assert response.status_code == 200
    network.refresh_from_db()
    assert (network.name, network.technology, network.region) == (
        "Sat link",
        "satellite",
        "global",
    )


def test_duplicate_network_name_is_409_already_exists(client_a, provider_a):
    NetworkFactory(provider=provider_a, name="Backbone")

    response = client_a.post(
        NETWORKS, {"name": "Backbone", "technology": "fiber", "region": "x"}, format="json"
    )

    body = assert_problem(response, status=409, code="already_exists")
    assert body["errors"]["non_field_errors"] == [
        "This provider already has a network with this name."
    ]


def test_two_providers_may_use_the_same_network_name(client_a, client_b):
    data = {"name": "Backbone", "technology": "fiber", "region": "x"}

    assert client_a.post(NETWORKS, data, format="json").status_code == 201
    assert client_b.post(NETWORKS, data, format="json").status_code == 201


def test_unknown_technology_and_missing_fields_are_listed_in_errors(client_a):
    response = client_a.post(NETWORKS, {"technology": "carrier-pigeon"}, format="json")

    body = assert_problem(response, status=400, code="validation_failed")
    assert set(body["errors"]) == {"name", "technology", "region"}


def test_unused_network_is_deleted(client_a, provider_a):
    network = NetworkFactory(provider=provider_a)

    response = client_a.delete(f"{NETWORKS}{network.pk}/")

    assert response.status_code == 204
    assert not Network.objects.exists()


def test_deleting_a_network_used_by_a_path_is_409_network_in_use(client_a, provider_a):
    network = NetworkFactory(provider=provider_a, name="Backbone")
    path = RoutingPathFactory(provider=provider_a, name="Core path")
    RoutingPathHopFactory(path=path, network=network, position=0)

    response = client_a.delete(f"{NETWORKS}{network.pk}/")

    body = assert_problem(response, status=409, code="network_in_use")
    assert body["routing_paths"] == ["Core path"]
    assert Network.objects.filter(pk=network.pk).exists()


def test_provider_awaiting_verification_may_prepare_its_networks(issue_key, key_client):
    pending = ProviderProfileFactory()
    client = key_client(issue_key(pending.organization))

    response = client.post(
        NETWORKS, {"name": "Backbone", "technology": "fiber", "region": "x"}, format="json"
    )

    assert response.status_code == 201
    assert Network.objects.get().provider == pending
