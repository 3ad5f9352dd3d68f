import pytest
from django.core.exceptions import PermissionDenied
from django.test import Client
from django.urls import reverse

from marketplace.models import AuditLogEntry, Organization, OrganizationKind, Role
from providers.models import Network, Offer, ProviderProfile, ProviderStatus, RoutingPath
from providers.services import ProviderNotVerified, provider_assert_can_sell, provider_verify
from tests.factories import (
    OfferFactory,
    OrganizationFactory,
    ProviderProfileFactory,
    StaffUserFactory,
    UserFactory,
    VerifiedProviderFactory,
    member_of,
)

pytestmark = pytest.mark.django_db


def application(**overrides):
    data = {
        "organization": "new",
        "organization_name": "Fiber Co",
        "legal_name": "Fiber Co Ltd",
        "contact_name": "Nina Noc",
        "contact_email": "noc@fiber.example",
        "contact_phone": "+44 20 7946 0000",
        "website": "",
        "description": "Metro fiber in London",
        "currency": "USD",
        "work_location": "exchange",
        "networks-TOTAL_FORMS": "3",
        "networks-INITIAL_FORMS": "0",
        "networks-0-name": "Metro",
        "networks-0-technology": "fiber",
        "networks-0-region": "eu-west",
        "networks-1-name": "Core",
        "networks-1-technology": "ethernet",
        "networks-1-region": "eu-west",
        "paths-TOTAL_FORMS": "2",
        "paths-INITIAL_FORMS": "0",
        "paths-0-name": "Metro to core",
        "paths-0-capacity_mbps": "10000",
        "paths-0-hops": "Metro > Core",
        "offers-segmentation__offered": "on",
        "offers-segmentation__per_gb": "1.80",
        "offers-segmentation__per_minute": "0.12",
        "offers-anonymize-ip__offered": "on",
        "offers-anonymize-ip__per_gb": "0.4",
        "offers-anonymize-ip__per_minute": "0",
    }
    data.update(overrides)
    return data


def test_application_creates_a_provider_awaiting_verification_with_its_catalogue(login_client):
    user = UserFactory()
    client = login_client(user)
    response = client.post(reverse("provider_apply"), application())
    assert response.status_code == 302, response.content.decode()[:2000]
    provider = ProviderProfile.objects.get(legal_name="Fiber Co Ltd")
    assert provider.status == ProviderStatus.PENDING
    assert provider.organization.kind == OrganizationKind.PROVIDER
    assert provider.organization.memberships.get(user=user).role == Role.OWNER
    assert sorted(provider.networks.values_list("name", flat=True)) == ["Core", "Metro"]
    path = RoutingPath.objects.get(provider=provider)
    assert path.capacity_mbps == 10000
    assert [hop.network.name for hop in path.hops.order_by("position")] == ["Metro", "Core"]
    offers = {o.service: o for o in provider.offers.all()}
    assert offers["segmentation"].price_per_gb_minor == 180
    assert offers["segmentation"].price_per_minute_minor == 12
    assert offers["anonymize-ip"].price_per_gb_minor == 40
    dashboard = client.get(reverse("dashboard")).content.decode()
    assert "Awaiting verification" in dashboard
    assert provider.work_location == "exchange"


def test_a_provider_can_register_to_run_its_services_with_its_own_partner_agent(login_client):
    client = login_client(UserFactory())

    response = client.post(reverse("provider_apply"), application(work_location="partner"))

    assert response.status_code == 302, response.content.decode()[:2000]
    assert ProviderProfile.objects.get(legal_name="Fiber Co Ltd").work_location == "partner"


def test_an_existing_recipient_organization_can_apply_and_becomes_both():
    organization = OrganizationFactory(kind=OrganizationKind.RECIPIENT)
    owner = member_of(organization)
    client = Client()
    client.force_login(owner)
    client.post(reverse("provider_apply"), application(organization=str(organization.pk)))
    organization.refresh_from_db()
    assert organization.kind == OrganizationKind.BOTH
    assert organization.provider_profile.legal_name == "Fiber Co Ltd"


def test_a_hop_through_an_unknown_network_is_an_error_and_nothing_is_created(login_client):
    client = login_client(UserFactory())
    response = client.post(
        reverse("provider_apply"), application(**{"paths-0-hops": "Metro > Nowhere"})
    )
    assert response.status_code == 200
    assert "Unknown network(s)" in response.content.decode()
    assert "Nowhere" in response.content.decode()
    assert not ProviderProfile.objects.exists()
    assert not Organization.objects.exists()
    assert not Network.objects.exists()


@pytest.mark.parametrize(
    ("price", "message"),
    [("abc", "is not an amount"), ("-1", "cannot be negative"), ("0.001", "at most 2 decimal")],
)
def test_bad_prices_are_refused_with_a_clear_message(login_client, price, message):
    client = login_client(UserFactory())
    response = client.post(
        reverse("provider_apply"), application(**{"offers-segmentation__per_gb": price})
    )
    assert response.status_code == 200
    assert message in response.content.decode()
    assert 'value="Fiber Co Ltd"' in response.content.decode()  # what was typed is kept
    assert not Offer.objects.exists()


def test_an_application_without_any_offer_is_refused(login_client):
    client = login_client(UserFactory())
    data = {k: v for k, v in application().items() if not k.endswith("__offered")}
    response = client.post(reverse("provider_apply"), data)
    assert "Offer at least one service." in response.content.decode()
    assert not ProviderProfile.objects.exists()


def test_staff_verify_in_admin_records_who_and_when():
    staff = StaffUserFactory()
    provider = ProviderProfileFactory()
    client = Client()
    client.force_login(staff)
    response = client.post(
        reverse("admin:providers_providerprofile_changelist"),
        {"action": "verify_selected", "_selected_action": [provider.pk]},
    )
    assert response.status_code == 302
    provider.refresh_from_db()
    assert provider.status == ProviderStatus.VERIFIED
    assert provider.verified_by == staff
    assert provider.verified_at is not None
    assert AuditLogEntry.objects.filter(action="provider.verified", actor=staff).exists()


def test_a_non_staff_user_cannot_verify():
    provider = ProviderProfileFactory()
    owner = member_of(provider.organization)
    with pytest.raises(PermissionDenied, match="Only exchange staff"):
        provider_verify(provider=provider, staff_user=owner)
    client = Client()
    client.force_login(owner)
    response = client.get(reverse("admin:providers_providerprofile_changelist"))
    assert response.status_code == 302  # to the admin login
    provider.refresh_from_db()
    assert provider.status == ProviderStatus.PENDING


def test_unverified_providers_cannot_sell_and_are_not_listed():
    pending = ProviderProfileFactory()
    OfferFactory(provider=pending)
    verified = VerifiedProviderFactory()
    OfferFactory(provider=verified)
    with pytest.raises(ProviderNotVerified, match="only verified providers can sell"):
        provider_assert_can_sell(provider=pending)
    provider_assert_can_sell(provider=verified)

    client = Client()
    listing = client.get(reverse("provider_list")).content.decode()
    assert verified.legal_name in listing
    assert pending.legal_name not in listing
    assert (
        client.get(reverse("provider_detail", args=[pending.organization.slug])).status_code == 404
    )
    detail = client.get(
        reverse("provider_detail", args=[verified.organization.slug])
    ).content.decode()
    assert "2.50 USD" in detail


def test_the_application_page_needs_a_signed_in_user():
    response = Client().get(reverse("provider_apply"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
