import pytest
from playwright.sync_api import expect

from providers.models import ProviderProfile, ProviderStatus

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_newcomer_signs_up_registers_as_provider_and_sees_awaiting_verification(browser_page):
    page, url = browser_page
    page.goto(url + "/")
    page.get_by_role("link", name="Sign up").first.click()
    page.get_by_label("Full name").fill("Nina Noc")
    page.get_by_label("E-mail address").fill("nina@fiber.example")
    page.get_by_label("Password", exact=True).fill("plum-orbit-lantern-42")
    page.get_by_label("Password again").fill("plum-orbit-lantern-42")
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()

    page.get_by_role("link", name="Register as a provider").first.click()
    page.get_by_label("New organization's name").fill("Fiber Co")
    page.get_by_label("Legal name").fill("Fiber Co Ltd")
    page.get_by_label("Contact person").fill("Nina Noc")
    page.get_by_label("Contact e-mail").fill("noc@fiber.example")
    page.locator("#id_networks-0-name").fill("Metro")
    page.locator("#id_networks-0-technology").select_option("fiber")
    page.locator("#id_networks-0-region").fill("eu-west")
    # A fourth network row added by the page's script, beyond the three blank ones served.
    page.get_by_role("button", name="+ another network").click()
    page.locator("#id_networks-3-name").fill("Core")
    page.locator("#id_networks-3-technology").select_option("ethernet")
    page.locator("#id_networks-3-region").fill("eu-west")
    page.locator("#id_paths-0-name").fill("Metro to core")
    page.locator("#id_paths-0-capacity_mbps").fill("10000")
    page.locator("#id_paths-0-hops").fill("Metro > Core")
    page.get_by_label("Segmentation", exact=True).check()
    page.locator("#id_offers-segmentation__per_gb").fill("1.80")
    page.get_by_role("button", name="Submit the application").click()

    expect(page.get_by_test_id("provider-status")).to_have_text("Awaiting verification")
    expect(page.get_by_role("status").first).to_contain_text("awaiting verification")
    provider = ProviderProfile.objects.get(legal_name="Fiber Co Ltd")
    assert provider.status == ProviderStatus.PENDING
    assert [h.network.name for h in provider.routing_paths.get().hops.order_by("position")] == [
        "Metro",
        "Core",
    ]
