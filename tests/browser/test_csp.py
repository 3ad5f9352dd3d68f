"""The pages work under their Content-Security-Policy in Chromium: the cards page loads
localstripe's Stripe.js and mounts its card Element, an auction page's websocket goes live, and
the API docs' Swagger UI renders, the staff admin works, the console's buttons still ask to be
confirmed (site.js, no inline handler), and Chromium refuses nothing on the way (no CSP violation
event, no console message about the policy).

As in test_cards, the real server (`manage.py serve`) runs in a process of its own on the test
database, its gateway on the session's localstripe (no Stripe key), so its policy allows
localstripe's origin."""

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from marketplace.models import OrganizationKind
from tests.factories import (
    PASSWORD,
    AuctionFactory,
    OrganizationFactory,
    StaffUserFactory,
    WebhookEndpointFactory,
    buyer,
    member_of,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Runs before the page's own scripts (Playwright injects it past the policy): records every
# violation Chromium reports to the page.
VIOLATIONS_RECORDED = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", function (event) {
  window.cspViolations.push(event.violatedDirective + " " + event.blockedURI);
});
"""
POLICY_WORDS = ("content security policy", "refused to")


@pytest.fixture
def server(localstripe_server):
    """The server on localstripe (tests/browser/conftest.py); its address."""
    return localstripe_server


@pytest.fixture
def chromium(server, chromium_browser):
    """Debian's Chromium (closed before the server stops)."""
    return chromium_browser


def _policy(response) -> dict[str, list[str]]:
    """The Content-Security-Policy the response came with: directive -> sources."""
    header = response.headers["content-security-policy"]
    directives = [part.split() for part in header.split(";") if part.strip()]
    return {name: sources for name, *sources in directives}


class WatchedPage:
    """A page in a context of its own, with what Chromium said about the policy."""

    def __init__(self, browser):
        self.page = browser.new_context().new_page()
        self.page.set_default_timeout(15000)
        self.console: list[str] = []
        self.page.on("console", lambda message: self.console.append(message.text))
        self.page.add_init_script(VIOLATIONS_RECORDED)

    def sign_in(self, server: str, user, path: str) -> None:
        self.page.goto(f"{server}/accounts/login/?next={path}")
        self.page.locator("input[name=username]").fill(user.email)
        self.page.locator("input[name=password]").fill(PASSWORD)
        self.page.get_by_role("button", name="Log in").click()
        expect(self.page).to_have_url(f"{server}{path}")

    def assert_nothing_refused(self) -> None:
        about_policy = [
            text for text in self.console if any(word in text.lower() for word in POLICY_WORDS)
        ]
        assert about_policy == []
        assert self.page.evaluate("window.cspViolations") == []


def test_the_cards_page_loads_localstripes_stripe_js_and_mounts_the_card_element(
    server, chromium, stripe_on_localstripe
):
    organization = OrganizationFactory(kind=OrganizationKind.RECIPIENT)
    watched = WatchedPage(chromium)
    watched.sign_in(server, member_of(organization), "/billing/cards/")
    policy = _policy(watched.page.reload())
    assert policy["script-src"][-1] == stripe_on_localstripe.url

    element = watched.page.get_by_test_id("card-element")
    expect(element.locator("input")).to_have_count(5)
    expect(element.get_by_placeholder("number", exact=True)).to_be_editable()
    watched.assert_nothing_refused()


def test_an_auction_page_goes_live_over_its_websocket(server, chromium):
    auction = AuctionFactory(closes_at=timezone.now() + timedelta(minutes=10))
    _, user = buyer()
    watched = WatchedPage(chromium)
    watched.sign_in(server, user, f"/auctions/{auction.pk}/")
    assert _policy(watched.page.reload())["connect-src"][0] == "'self'"

    expect(watched.page.locator("#auction-live")).to_have_attribute("data-connection", "live")
    expect(watched.page.get_by_test_id("price")).to_have_text("10.00 USD")
    watched.assert_nothing_refused()


def test_the_api_docs_render_swagger_ui(server, chromium):
    watched = WatchedPage(chromium)
    assert "'nonce-" in _policy(watched.page.goto(f"{server}/api/docs/"))["script-src"][1]

    expect(watched.page.locator(".swagger-ui .info .title")).to_contain_text(
        "Segment Exchange partner API"
    )
    expect(watched.page.locator(".swagger-ui .opblock").first).to_be_visible()
    # an operation opens (Swagger UI's own scripts and styles at work)
    watched.page.locator(".swagger-ui .opblock-summary").first.click()
    expect(watched.page.locator(".swagger-ui .opblock-body").first).to_be_visible()
    watched.assert_nothing_refused()


def test_the_staff_admin_signs_in_and_renders(server, chromium):
    staff = StaffUserFactory()
    watched = WatchedPage(chromium)
    policy = _policy(watched.page.goto(f"{server}/admin/login/"))
    assert policy["style-src"][1].startswith("'nonce-")
    watched.page.locator("input[name=username]").fill(staff.email)
    watched.page.locator("input[name=password]").fill(PASSWORD)
    watched.page.get_by_role("button", name="Log in").click()

    expect(watched.page.locator("#site-name")).to_be_visible()
    expect(watched.page.locator("#content-main .module").first).to_be_visible()
    # the admin's own script (theme.js) runs: its toggle switches the theme
    watched.page.locator("button.theme-toggle").first.click()
    expect(watched.page.locator("html")).to_have_attribute("data-theme", "dark")
    watched.assert_nothing_refused()


def test_the_consoles_rotate_button_asks_to_be_confirmed(server, chromium):
    endpoint = WebhookEndpointFactory()
    secret = endpoint.secret
    path = f"/console/providers/webhookendpoint/{endpoint.pk}/change/"
    watched = WatchedPage(chromium)
    watched.sign_in(server, member_of(endpoint.provider.organization), path)
    rotate = watched.page.get_by_role("button", name="Rotate the signing secret")

    watched.page.once("dialog", lambda dialog: dialog.dismiss())
    rotate.click()
    expect(watched.page).to_have_url(f"{server}{path}")
    endpoint.refresh_from_db()
    assert endpoint.secret == secret

    watched.page.once("dialog", lambda dialog: dialog.accept())
    rotate.click()
    expect(watched.page.locator(".messagelist")).to_be_visible()
    endpoint.refresh_from_db()
    assert endpoint.secret != secret
    watched.assert_nothing_refused()
