"""A provider's key sees and changes only its own networks, routing paths and offers."""

import pytest

from providers.models import Network, Offer, RoutingPath, Service
from tests.api.helpers import assert_problem
from tests.factories import NetworkFactory, OfferFactory, RoutingPathFactory, RoutingPathHopFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def objects_of_b(provider_b):
    network = NetworkFactory(provider=provider_b, name="Beta backbone")
    path = RoutingPathFactory(provider=provider_b, name="Beta path")
    RoutingPathHopFactory(path=path, network=network, position=0)
    offer = OfferFactory(provider=provider_b, service=Service.DEDUPE)
    return {"networks": network, "routing-paths": path, "offers": offer}


CHANGES = {
    "networks": {"name": "Taken over", "technology": "dsl", "region": "x"},
    "routing-paths": {"name": "Taken over", "capacity_mbps": 1, "hops": []},
    "offers": {
        "service": "dedupe",
        "price_per_gb_minor": 0,
        "price_per_minute_minor": 0,
        "currency": "USD",
    },
}
RESOURCES = list(CHANGES)


@pytest.mark.parametrize("resource", RESOURCES)
def test_another_providers_object_is_404_to_read(resource, client_a, objects_of_b):
    response = client_a.get(f"/api/v1/{resource}/{objects_of_b[resource].pk}/")

    assert_problem(response, status=404, code="not_found")


@pytest.mark.parametrize("resource", RESOURCES)
def test_another_providers_object_is_404_to_replace(resource, client_a, objects_of_b):
    response = client_a.put(
        f"/api/v1/{resource}/{objects_of_b[resource].pk}/", CHANGES[resource], format="json"
    )

    assert_problem(response, status=404, code="not_found")


@pytest.mark.parametrize("resource", RESOURCES)
def test_another_providers_object_is_404_to_patch(resource, client_a, objects_of_b):
    response = client_a.patch(
        f"/api/v1/{resource}/{objects_of_b[resource].pk}/", {"is_active": False}, format="json"
    )

    assert_problem(response, status=404, code="not_found")


@pytest.mark.parametrize("resource", RESOURCES)
def test_another_providers_object_is_404_to_delete(resource, client_a, objects_of_b):
    response = client_a.delete(f"/api/v1/{resource}/{objects_of_b[resource].pk}/")

    assert_problem(response, status=404, code="not_found")


def test_another_providers_objects_are_unchanged_after_attempts(client_a, objects_of_b):
    for resource in RESOURCES:
        url = f"/api/v1/{resource}/{objects_of_b[resource].pk}/"
        client_a.put(url, CHANGES[resource], format="json")
        client_a.delete(url)

    assert Network.objects.get().name == "Beta backbone"
    assert RoutingPath.objects.get().name == "Beta path"
    assert Offer.objects.get().is_active


@pytest.mark.parametrize("resource", RESOURCES)
def test_lists_show_only_the_callers_own_objects(resource, client_a, provider_a, objects_of_b):
    own_network = NetworkFactory(provider=provider_a, name="Alpha backbone")
    own_path = RoutingPathFactory(provider=provider_a, name="Alpha path")
    RoutingPathHopFactory(path=own_path, network=own_network, position=0)
    own_offer = OfferFactory(provider=provider_a)
    own = {"networks": own_network, "routing-paths": own_path, "offers": own_offer}

    response = client_a.get(f"/api/v1/{resource}/")

    assert response.status_code == 200
    assert [item["id"] for item in response.json()["results"]] == [own[resource].pk]


def test_routing_path_cannot_use_another_providers_network(client_a, provider_a, objects_of_b):
    own = NetworkFactory(provider=provider_a)

    response = client_a.post(
        "/api/v1/routing-paths/",
        {"name": "Sneaky", "capacity_mbps": 100, "hops": [own.pk, objects_of_b["networks"].pk]},
        format="json",
    )

    body = assert_problem(response, status=422, code="validation_failed")
    assert "hops" in body["errors"]
    assert not RoutingPath.objects.filter(provider=provider_a).exists()


def test_routing_path_update_cannot_switch_to_another_providers_network(
    client_a, provider_a, objects_of_b
):
    own = NetworkFactory(provider=provider_a)
    path = RoutingPathFactory(provider=provider_a)
    RoutingPathHopFactory(path=path, network=own, position=0)

    response = client_a.patch(
        f"/api/v1/routing-paths/{path.pk}/", {"hops": [objects_of_b["networks"].pk]}, format="json"
    )

    assert_problem(response, status=422, code="validation_failed")
    assert [hop.network for hop in path.hops.all()] == [own]
