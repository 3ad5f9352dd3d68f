import pytest
from django.contrib.contenttypes.models import ContentType
from django.test import Client
from django.urls import reverse

from marketplace.models import Role
from providers.models import Network, Offer, RoutingPath
from tests.factories import (
    PASSWORD,
    NetworkFactory,
    OfferFactory,
    OrganizationFactory,
    RoutingPathHopFactory,
    VerifiedProviderFactory,
    member_of,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_providers():
    """Provider A (whose owner is signed in) and provider B, each with a full catalogue."""
    a, b = VerifiedProviderFactory(), VerifiedProviderFactory()
    objects = {}
    for provider in (a, b):
        hop = RoutingPathHopFactory(path__provider=provider, position=0)
        objects[provider.pk] = {
            "network": hop.network,
            "routingpath": hop.path,
            "offer": OfferFactory(provider=provider),
        }
    owner = member_of(a.organization)
    client = Client()
    client.force_login(owner)
    return client, a, b, objects


def console_urls(model_name, pk):
    return [
        ("get", reverse(f"console:providers_{model_name}_change", args=[pk])),
        ("post", reverse(f"console:providers_{model_name}_change", args=[pk])),
        ("get", reverse(f"console:providers_{model_name}_delete", args=[pk])),
        ("post", reverse(f"console:providers_{model_name}_delete", args=[pk])),
        ("get", reverse(f"console:providers_{model_name}_history", args=[pk])),
    ]


@pytest.mark.parametrize("model_name", ["network", "routingpath", "offer"])
def test_every_console_url_of_another_providers_object_is_404(two_providers, model_name):
    client, _a, b, objects = two_providers
    target = objects[b.pk][model_name]
    before = type(target).objects.filter(pk=target.pk).values().get()
    for method, url in console_urls(model_name, target.pk):
        data = {"post": "yes", "name": "hijacked", "capacity_mbps": 1} if method == "post" else None
        response = getattr(client, method)(url, data)
        assert response.status_code in (403, 404), (
            f"{method.upper()} {url} gave {response.status_code}"
        )
    content_type = ContentType.objects.get_for_model(target)
    shortcut = reverse("console:view_on_site", args=[content_type.pk, target.pk])
    assert client.get(shortcut).status_code == 404
    assert type(target).objects.filter(pk=target.pk).values().get() == before


@pytest.mark.parametrize("model_name", ["network", "routingpath", "offer"])
def test_the_console_lists_only_the_providers_own_objects(two_providers, model_name):
    client, a, _b, objects = two_providers
    response = client.get(reverse(f"console:providers_{model_name}_changelist"))
    assert response.status_code == 200
    shown = {obj.pk for obj in response.context["cl"].result_list}
    assert shown == {objects[a.pk][model_name].pk}
    own_change = reverse(
        f"console:providers_{model_name}_change", args=[objects[a.pk][model_name].pk]
    )
    assert client.get(own_change).status_code == 200


def test_a_network_added_in_the_console_belongs_to_the_signed_in_provider(two_providers):
    client, a, b, _objects = two_providers
    response = client.post(
        reverse("console:providers_network_add"),
        {"name": "Radio", "technology": "5g", "region": "us-east", "provider": b.pk},
    )
    assert response.status_code == 302
    assert Network.objects.get(name="Radio").provider == a


def test_a_duplicate_network_name_is_a_form_error_not_a_crash(two_providers):
    client, a, _b, objects = two_providers
    existing = objects[a.pk]["network"]
    response = client.post(
        reverse("console:providers_network_add"),
        {"name": existing.name, "technology": "fiber", "region": "eu-west"},
    )
    assert response.status_code == 200
    assert "already has a network with this name" in response.content.decode()
    assert Network.objects.filter(provider=a, name=existing.name).count() == 1


def _path_form(name, hops):
    data = {
        "name": name,
        "capacity_mbps": "500",
        "hops-TOTAL_FORMS": str(len(hops)),
        "hops-INITIAL_FORMS": "0",
        "hops-MIN_NUM_FORMS": "0",
        "hops-MAX_NUM_FORMS": "1000",
    }
    for i, (position, network_id) in enumerate(hops):
        data[f"hops-{i}-position"] = str(position)
        data[f"hops-{i}-network"] = str(network_id)
    return data


def test_a_routing_path_cannot_hop_through_another_providers_network(two_providers):
    client, a, b, objects = two_providers
    foreign = objects[b.pk]["network"]
    response = client.post(
        reverse("console:providers_routingpath_add"), _path_form("Sneaky", [(0, foreign.pk)])
    )
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert not RoutingPath.objects.filter(name="Sneaky").exists()
    own = objects[a.pk]["network"]
    second = NetworkFactory(provider=a, name="Core")
    response = client.post(
        reverse("console:providers_routingpath_add"),
        _path_form("Ingress to core", [(0, own.pk), (1, second.pk)]),
    )
    assert response.status_code == 302
    path = RoutingPath.objects.get(name="Ingress to core")
    assert path.provider == a
    assert [h.network_id for h in path.hops.order_by("position")] == [own.pk, second.pk]


def test_a_routing_path_without_hops_is_refused(two_providers):
    client, *_ = two_providers
    response = client.post(reverse("console:providers_routingpath_add"), _path_form("Empty", []))
    assert "needs at least one hop" in response.content.decode()
    assert not RoutingPath.objects.filter(name="Empty").exists()


def test_a_plain_member_sees_the_console_but_cannot_change_anything(two_providers):
    _client, a, _b, objects = two_providers
    member = member_of(a.organization, role=Role.MEMBER)
    client = Client()
    client.force_login(member)
    offer = objects[a.pk]["offer"]
    assert client.get(reverse("console:providers_offer_changelist")).status_code == 200
    response = client.post(
        reverse("console:providers_offer_change", args=[offer.pk]),
        {
            "service": offer.service,
            "price_per_gb_minor": 1,
            "price_per_minute_minor": 1,
            "currency": "USD",
        },
    )
    assert response.status_code == 403
    assert (
        client.post(
            reverse("console:providers_offer_delete", args=[offer.pk]), {"post": "yes"}
        ).status_code
        == 403
    )
    assert Offer.objects.get(pk=offer.pk).price_per_gb_minor == offer.price_per_gb_minor


def test_the_console_is_closed_to_users_without_a_provider_organization():
    buyer = member_of(OrganizationFactory())
    client = Client()
    client.force_login(buyer)
    response = client.get(reverse("console:index"), follow=True)
    assert response.redirect_chain[-1][0] == reverse("provider_apply")
    assert "register yours as a provider" in response.content.decode()


def test_signing_in_for_the_console_uses_the_portal_login_and_returns_to_the_console():
    provider = VerifiedProviderFactory()
    owner = member_of(provider.organization)
    client = Client()
    response = client.get(reverse("console:providers_network_changelist"), follow=True)
    login_url, _status = response.redirect_chain[-1]
    assert login_url.startswith(reverse("login"))
    response = client.post(
        login_url, {"username": owner.email, "password": PASSWORD, "next": response.context["next"]}
    )
    assert response["Location"] == reverse("console:providers_network_changelist")
    assert client.get(response["Location"]).status_code == 200
