"""A provider manages its routing paths; hops are its own network ids, ingress first."""

import pytest

from providers.models import RoutingPath
from tests.api.helpers import assert_problem
from tests.factories import NetworkFactory, RoutingPathFactory, RoutingPathHopFactory

pytestmark = pytest.mark.django_db

PATHS = "/api/v1/routing-paths/"


@pytest.fixture
def networks(provider_a):
    return [NetworkFactory(provider=provider_a, name=name) for name in ("Edge", "Core", "Exit")]


def test_routing_path_is_created_with_hops_in_order(client_a, provider_a, networks):
    edge, core, exit_ = networks
    hops = [exit_.pk, edge.pk, core.pk]

    response = client_a.post(
        PATHS, {"name": "Long way", "capacity_mbps": 400, "hops": hops}, format="json"
    )

    assert response.status_code == 201
    assert response.json() == {
        "id": response.json()["id"],
        "name": "Long way",
        "capacity_mbps": 400,
        "hops": hops,
    }
    path = RoutingPath.objects.get(provider=provider_a)
    assert [hop.network for hop in path.hops.order_by("position")] == [exit_, edge, core]


def test_routing_path_hops_are_replaced_with_patch(client_a, provider_a, networks):
    edge, core, exit_ = networks
    path = RoutingPathFactory(provider=provider_a, capacity_mbps=100)
    RoutingPathHopFactory(path=path, network=edge, position=0)

    response = client_a.patch(f"{PATHS}{path.pk}/", {"hops": [core.pk, exit_.pk]}, format="json")

    assert response.status_code == 200
    assert response.json()["hops"] == [core.pk, exit_.pk]
    assert response.json()["capacity_mbps"] == 100
    assert [hop.network for hop in path.hops.order_by("position")] == [core, exit_]


def test_patch_without_hops_keeps_them(client_a, provider_a, networks):
    edge, core, _ = networks
    path = RoutingPathFactory(provider=provider_a)
    RoutingPathHopFactory(path=path, network=edge, position=0)
    RoutingPathHopFactory(path=path, network=core, position=1)

    response = client_a.patch(f"{PATHS}{path.pk}/", {"capacity_mbps": 10}, format="json")

    assert response.status_code == 200
    assert response.json()["hops"] == [edge.pk, core.pk]
    path.refresh_from_db()
    assert path.capacity_mbps == 10


def test_routing_path_needs_at_least_one_hop(client_a):
    response = client_a.post(
        PATHS, {"name": "Empty", "capacity_mbps": 1, "hops": []}, format="json"
    )

    body = assert_problem(response, status=400, code="validation_failed")
    assert body["errors"]["hops"] == ["A routing path needs at least one hop."]


def test_unknown_network_id_as_hop_is_422(client_a, networks):
    response = client_a.post(
        PATHS,
        {"name": "Ghost", "capacity_mbps": 1, "hops": [networks[0].pk, 999999]},
        format="json",
    )

    body = assert_problem(response, status=422, code="validation_failed")
    assert body["errors"]["hops"] == ["Network 999999 is not one of your networks."]


def test_network_name_as_hop_is_refused(client_a, networks):
    response = client_a.post(
        PATHS, {"name": "Named", "capacity_mbps": 1, "hops": [["Edge"]]}, format="json"
    )

    assert_problem(response, status=400, code="validation_failed")


@pytest.mark.parametrize("capacity", [0, -5, 1.5, "100"])
def test_capacity_must_be_a_positive_integer(client_a, networks, capacity):
    response = client_a.post(
        PATHS, {"name": "P", "capacity_mbps": capacity, "hops": [networks[0].pk]}, format="json"
    )

    body = assert_problem(response, status=400, code="validation_failed")
    assert "capacity_mbps" in body["errors"]
    assert not RoutingPath.objects.exists()


def test_routing_path_is_deleted_with_its_hops(client_a, provider_a, networks):
    path = RoutingPathFactory(provider=provider_a)
    RoutingPathHopFactory(path=path, network=networks[0], position=0)

    response = client_a.delete(f"{PATHS}{path.pk}/")

    assert response.status_code == 204
    assert not RoutingPath.objects.exists()
    # The network is free again.
    assert client_a.delete(f"/api/v1/networks/{networks[0].pk}/").status_code == 204
