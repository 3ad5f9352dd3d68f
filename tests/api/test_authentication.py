"""Who may call the API: API keys, their scopes, and the browser session with CSRF."""

from datetime import datetime

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from marketplace.models import ApiKey, ApiKeyScope, Role
from marketplace.services import api_key_revoke
from providers.models import Network
from tests.api.helpers import assert_problem
from tests.factories import PASSWORD, NetworkFactory, member_of

pytestmark = pytest.mark.django_db

NETWORKS = "/api/v1/networks/"
NEW_NETWORK = {"name": "Metro ring", "technology": "fiber", "region": "eu-west"}


def test_valid_api_key_reads_its_providers_networks(client_a, provider_a):
    NetworkFactory(provider=provider_a, name="Backbone")

    response = client_a.get(NETWORKS)

    assert response.status_code == 200
    assert [n["name"] for n in response.json()["results"]] == ["Backbone"]


def test_api_key_use_is_recorded(client_a, provider_a):
    client_a.get(NETWORKS)

    assert ApiKey.objects.get(organization=provider_a.organization).last_used_at is not None


def test_private_resource_without_credentials_is_401_problem(db):
    response = APIClient().get(NETWORKS)

    assert_problem(response, status=401, code="not_authenticated")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_malformed_authorization_header_is_401_invalid_api_key(key_client):
    response = key_client("two parts").get(NETWORKS)

    assert_problem(response, status=401, code="invalid_api_key")


def test_unknown_api_key_is_401_invalid_api_key(key_client):
    response = key_client("sx_deadbeef_not-a-real-key").get(NETWORKS)

    assert_problem(response, status=401, code="invalid_api_key")


def test_revoked_api_key_is_401_api_key_revoked(provider_a, issue_key, key_client):
    key = issue_key(provider_a.organization)
    record = ApiKey.objects.get(organization=provider_a.organization)
    api_key_revoke(api_key=record, user=record.created_by)

    response = key_client(key).get(NETWORKS)

    assert_problem(response, status=401, code="api_key_revoked")


def test_read_scoped_key_may_read(provider_a, issue_key, key_client):
    client = key_client(issue_key(provider_a.organization, scope=ApiKeyScope.READ))

    assert client.get(NETWORKS).status_code == 200


def test_read_scoped_key_cannot_create_403_insufficient_scope(provider_a, issue_key, key_client):
    client = key_client(issue_key(provider_a.organization, scope=ApiKeyScope.READ))

    response = client.post(NETWORKS, NEW_NETWORK, format="json")

    assert_problem(response, status=403, code="insufficient_scope")
    assert not Network.objects.exists()


def test_read_scoped_key_cannot_delete_403_insufficient_scope(provider_a, issue_key, key_client):
    network = NetworkFactory(provider=provider_a)
    client = key_client(issue_key(provider_a.organization, scope=ApiKeyScope.READ))

    response = client.delete(f"{NETWORKS}{network.pk}/")

    assert_problem(response, status=403, code="insufficient_scope")
    assert Network.objects.filter(pk=network.pk).exists()


def test_write_scoped_key_creates_a_network(client_a, provider_a):
    response = client_a.post(NETWORKS, NEW_NETWORK, format="json")

    assert response.status_code == 201
    assert response.json() == {"id": response.json()["id"], **NEW_NETWORK}
    assert Network.objects.get(provider=provider_a).name == "Metro ring"


def test_key_of_an_organization_without_provider_profile_is_403_not_a_provider(
    recipient_org, issue_key, key_client
):
    client = key_client(issue_key(recipient_org))

    assert_problem(client.get(NETWORKS), status=403, code="not_a_provider")
    assert_problem(client.get("/api/v1/offers/"), status=403, code="not_a_provider")
    assert_problem(client.get("/api/v1/routing-paths/"), status=403, code="not_a_provider")


def test_key_of_a_deactivated_organization_is_401(provider_a, issue_key, key_client):
    key = issue_key(provider_a.organization)
    provider_a.organization.is_active = False
    provider_a.organization.save()

    assert_problem(key_client(key).get(NETWORKS), status=401, code="invalid_api_key")


def test_signed_in_provider_member_reads_networks_through_the_session(provider_a, login_client):
    NetworkFactory(provider=provider_a, name="Backbone")
    client = login_client(member_of(provider_a.organization, role=Role.MEMBER))

    response = client.get(NETWORKS)

    assert response.status_code == 200
    assert [n["name"] for n in response.json()["results"]] == ["Backbone"]


def test_signed_in_owner_creates_through_the_session(provider_a, login_client):
    client = login_client(member_of(provider_a.organization, role=Role.OWNER))

    response = client.post(NETWORKS, NEW_NETWORK, content_type="application/json")

    assert response.status_code == 201
    assert Network.objects.filter(provider=provider_a, name="Metro ring").exists()


def test_signed_in_plain_member_cannot_change_the_catalogue(provider_a, login_client):
    client = login_client(member_of(provider_a.organization, role=Role.MEMBER))

    response = client.post(NETWORKS, NEW_NETWORK, content_type="application/json")

    assert_problem(response, status=403, code="manager_role_required")
    assert not Network.objects.exists()


def test_signed_in_user_of_a_recipient_organization_is_403_not_a_provider(
    recipient_org, login_client
):
    client = login_client(member_of(recipient_org))

    assert_problem(client.get(NETWORKS), status=403, code="not_a_provider")


def test_session_post_without_csrf_token_is_refused(provider_a):
    user = member_of(provider_a.organization)
    client = Client(enforce_csrf_checks=True)
    assert client.login(email=user.email, password=PASSWORD)

    response = client.post(NETWORKS, NEW_NETWORK, content_type="application/json")

    body = assert_problem(response, status=403, code="csrf_failed")
    assert "CSRF" in body["detail"]
    assert not Network.objects.exists()


def test_session_post_with_csrf_token_is_accepted(provider_a):
    user = member_of(provider_a.organization)
    client = Client(enforce_csrf_checks=True)
    assert client.login(email=user.email, password=PASSWORD)
    token = "a" * 16 + "B" * 16  # a CSRF secret: 32 characters of [a-zA-Z0-9]
    client.cookies["csrftoken"] = token

    response = client.post(
        NETWORKS, NEW_NETWORK, content_type="application/json", headers={"X-CSRFToken": token}
    )

    assert response.status_code == 201


def test_api_key_requests_need_no_csrf_token(provider_a, issue_key):
    client = Client(enforce_csrf_checks=True)

    response = client.post(
        NETWORKS,
        NEW_NETWORK,
        content_type="application/json",
        headers={"Authorization": f"Bearer {issue_key(provider_a.organization)}"},
    )

    assert response.status_code == 201


def test_session_acts_for_the_organization_chosen_in_the_session(
    provider_a, provider_b, login_client
):
    NetworkFactory(provider=provider_a, name="Alpha net")
    NetworkFactory(provider=provider_b, name="Beta net")
    user = member_of(provider_a.organization)
    member_of(provider_b.organization, user=user)
    client = login_client(user)
    session = client.session
    session["organization_id"] = provider_b.organization_id
    session.save()

    response = client.get(NETWORKS)

    assert [n["name"] for n in response.json()["results"]] == ["Beta net"]


def test_times_are_iso_8601_utc(client_a, provider_a):
    client_a.post(
        "/api/v1/offers/",
        {
            "service": "segmentation",
            "price_per_gb_minor": 100,
            "price_per_minute_minor": 5,
            "currency": "EUR",
        },
        format="json",
    )

    created_at = client_a.get("/api/v1/offers/").json()["results"][0]["created_at"]

    assert created_at.endswith("Z")
    assert abs((datetime.fromisoformat(created_at) - timezone.now()).total_seconds()) < 60
