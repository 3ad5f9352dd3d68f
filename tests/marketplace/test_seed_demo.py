import pytest
from django.core.management import call_command
from django.test import Client

from marketplace.management.commands.seed_demo import DEMO_PASSWORD, STAFF_EMAIL
from marketplace.models import Organization, User
from providers.models import Network, Offer, ProviderProfile, ProviderStatus, RoutingPath

pytestmark = pytest.mark.django_db


def _counts():
    return [
        m.objects.count()
        for m in (User, Organization, ProviderProfile, Network, RoutingPath, Offer)
    ]


def test_seed_demo_creates_verified_providers_and_buyers_and_is_idempotent(capsys):
    call_command("seed_demo")
    first = _counts()
    call_command("seed_demo")
    assert _counts() == first
    providers = ProviderProfile.objects.all()
    assert providers.count() == 3
    assert {p.status for p in providers} == {ProviderStatus.VERIFIED}
    assert all(p.verified_by.email == STAFF_EMAIL for p in providers)
    assert all(p.routing_paths.exists() and p.offers.exists() for p in providers)
    buyers = Organization.objects.filter(kind="recipient")
    assert buyers.count() == 2
    assert "buyer@acme.demo" in capsys.readouterr().out
    assert Client().login(email="buyer@acme.demo", password=DEMO_PASSWORD)
    staff = Client()
    assert staff.login(email=STAFF_EMAIL, password=DEMO_PASSWORD)
    assert staff.get("/admin/").status_code == 200
