"""The Content-Security-Policy of the pages (SECURE_CSP, Django's CSP middleware, marketplace.csp):
every page is served with it; scripts and styles come from the exchange or carry the
response's nonce; no page has an inline event handler or style attribute the policy would
refuse; Stripe.js's sources follow the Stripe the gateway talks to. That the pages work under it
in a browser is tests/browser/test_csp.py."""

import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from marketplace.models import OrganizationKind
from tests.factories import (
    AuctionFactory,
    OrganizationFactory,
    StaffUserFactory,
    VerifiedProviderFactory,
    WebhookEndpointFactory,
    buyer,
    buying_group,
    member_of,
)

pytestmark = pytest.mark.django_db

NONCE_SOURCE = re.compile(r"^'nonce-([A-Za-z0-9_-]{16,})'$")
INLINE_HANDLER = re.compile(r"\son[a-z]+=", re.IGNORECASE)
STYLE_ATTRIBUTE = re.compile(r"<[a-z][^<>]*\sstyle=", re.IGNORECASE)
TAG = re.compile(r"<(script|style)\b([^>]*)>", re.IGNORECASE)
DATA_BLOCK = re.compile(r"""\stype=["']application/(ld\+)?json["']""")
TEMPLATES = Path(settings.BASE_DIR) / "templates"

# Every page, whatever the Stripe: the directives that do not name Stripe.
FIXED_DIRECTIVES = {
    "default-src": ["'self'"],
    "img-src": ["'self'", "data:"],
    "object-src": ["'none'"],
    "base-uri": ["'self'"],
    "form-action": ["'self'"],
    "frame-ancestors": ["'none'"],
}


def _policy(response) -> dict[str, list[str]]:
    header = response.headers["Content-Security-Policy"]
    directives = [part.split() for part in header.split(";") if part.strip()]
    return {name: sources for name, *sources in directives}


def _nonce(policy: dict[str, list[str]]) -> str:
    """The nonce the response's script-src allows (the same one for style-src)."""
    nonces = [m.group(1) for s in policy["script-src"] if (m := NONCE_SOURCE.match(s))]
    assert len(nonces) == 1, policy["script-src"]
    assert f"'nonce-{nonces[0]}'" in policy["style-src"]
    return nonces[0]


def _inline_tags(html: str) -> list[tuple[str, str]]:
    """(tag, attributes) of each inline <script> and <style> (not data blocks)."""
    return [
        (tag.lower(), attributes)
        for tag, attributes in TAG.findall(html)
        if "src=" not in attributes and not DATA_BLOCK.search(attributes)
    ]


def _assert_page_keeps_to_its_policy(response) -> list[tuple[str, str]]:
    """The page is served with the policy and uses nothing inline that it refuses; returns its
    inline scripts and styles."""
    assert response.status_code == 200
    policy = _policy(response)
    for directive, sources in FIXED_DIRECTIVES.items():
        assert policy[directive] == sources, directive
    assert policy["script-src"][0] == "'self'"
    assert policy["style-src"][0] == "'self'"
    assert policy["connect-src"][0] == "'self'"
    for directive in ("script-src", "style-src"):
        assert "'unsafe-inline'" not in policy[directive]
        assert "'unsafe-eval'" not in policy[directive]
    assert "style-src-attr" not in policy

    html = response.content.decode()
    assert not INLINE_HANDLER.search(html), INLINE_HANDLER.search(html)
    assert not STYLE_ATTRIBUTE.search(html), STYLE_ATTRIBUTE.search(html)
    inline = _inline_tags(html)
    if inline:
        nonce = _nonce(policy)
        for tag, attributes in inline:
            assert f'nonce="{nonce}"' in attributes, (tag, attributes)
    return inline


def _signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


# --- the pages -----------------------------------------------------------------------------------


def test_the_home_page_is_served_with_the_policy():
    _assert_page_keeps_to_its_policy(Client().get(reverse("home")))


def test_the_login_page_is_served_with_the_policy():
    _assert_page_keeps_to_its_policy(Client().get(reverse("login")))


def test_the_auction_list_is_served_with_the_policy():
    AuctionFactory()
    _assert_page_keeps_to_its_policy(Client().get(reverse("auction_list")))


def test_a_group_admins_auction_page_gives_its_group_script_the_nonce():
    # A group's admin has two organizations (the organization switcher) and the group's lines,
    # which the page's inline script follows.
    _group, admin, _member = buying_group()
    auction = AuctionFactory(closes_at=timezone.now() + timedelta(minutes=30))
    response = _signed_in(admin).get(reverse("auction_detail", args=[auction.pk]))
    html = response.content.decode()
    assert "data-submit-on-change" in html and "data-group-handle" in html
    inline = _assert_page_keeps_to_its_policy(response)
    assert [tag for tag, _ in inline] == ["script"]
    # the live feed's configuration is a data block the policy does not apply to
    assert 'id="auction-live-config" type="application/json"' in html


def test_the_new_job_page_is_served_with_the_policy():
    _, user = buyer()
    _assert_page_keeps_to_its_policy(_signed_in(user).get(reverse("job_new")))


def test_the_cards_page_gives_its_stripe_script_the_nonce_and_allows_localstripe(
    stripe_on_localstripe,
):
    organization = OrganizationFactory(kind=OrganizationKind.RECIPIENT)
    response = _signed_in(member_of(organization)).get(reverse("card_list"))
    html = response.content.decode()
    inline = _assert_page_keeps_to_its_policy(response)
    assert [tag for tag, _ in inline] == ["script"]
    assert f'<script src="{stripe_on_localstripe.url}/js.stripe.com/v3/">' in html
    policy = _policy(response)
    assert policy["script-src"][2:] == [stripe_on_localstripe.url]
    assert policy["connect-src"] == ["'self'", stripe_on_localstripe.url]


def test_the_groups_page_is_served_with_the_policy():
    _group, admin, _member = buying_group()
    _assert_page_keeps_to_its_policy(_signed_in(admin).get(reverse("group_list")))


def test_the_api_docs_give_swagger_uis_inline_script_and_style_the_nonce():
    response = Client().get(reverse("api-docs"))
    inline = _assert_page_keeps_to_its_policy(response)
    assert sorted(tag for tag, _ in inline) == ["script", "style"]
    assert "swagger-ui-bundle.js" in response.content.decode()


def test_the_admin_login_is_served_with_the_policy():
    _assert_page_keeps_to_its_policy(Client().get(reverse("admin:login")))


def test_the_staff_admin_index_is_served_with_the_policy():
    _assert_page_keeps_to_its_policy(_signed_in(StaffUserFactory()).get(reverse("admin:index")))


def test_the_console_webhook_endpoint_page_confirms_without_inline_handlers():
    provider = VerifiedProviderFactory()
    endpoint = WebhookEndpointFactory(provider=provider)
    client = _signed_in(member_of(provider.organization))
    url = reverse("console:providers_webhookendpoint_change", args=[endpoint.pk])
    response = client.get(url)
    _assert_page_keeps_to_its_policy(response)
    html = response.content.decode()
    assert 'data-confirm="The current secret stops working at once. Rotate it?"' in html
    assert "js/site.js" in html


def test_the_console_ratings_page_is_served_with_the_policy():
    provider = VerifiedProviderFactory()
    client = _signed_in(member_of(provider.organization))
    response = client.get(reverse("console:billing_rating_changelist"))
    _assert_page_keeps_to_its_policy(response)
    assert "css/console.css" in response.content.decode()


def test_each_response_has_a_nonce_of_its_own():
    first, second = (Client().get(reverse("api-docs")) for _ in range(2))
    assert _nonce(_policy(first)) != _nonce(_policy(second))


# --- Stripe's sources --------------------------------------------------------------------------


def test_with_a_stripe_key_the_policy_allows_stripe_js_its_frames_and_its_api(settings):
    settings.STRIPE_SECRET_KEY = "sk_live_exchange"
    settings.STRIPE_PUBLISHABLE_KEY = "pk_live_exchange"
    response = Client().get(reverse("api-docs"))
    policy = _policy(response)
    assert policy["script-src"][2:] == ["https://js.stripe.com", "https://*.js.stripe.com"]
    assert policy["frame-src"] == [
        "https://js.stripe.com",
        "https://*.js.stripe.com",
        "https://hooks.stripe.com",
    ]
    assert policy["connect-src"] == ["'self'", "https://api.stripe.com"]
    assert "127.0.0.1" not in response.headers["Content-Security-Policy"]


def test_without_a_stripe_key_the_policy_allows_only_localstripes_origin(settings):
    settings.STRIPE_SECRET_KEY = ""
    settings.LOCALSTRIPE_URL = "http://127.0.0.1:8499/"
    response = Client().get(reverse("home"))
    policy = _policy(response)
    assert policy["script-src"][-1] == "http://127.0.0.1:8499"
    assert policy["connect-src"] == ["'self'", "http://127.0.0.1:8499"]
    assert "frame-src" not in policy
    assert "stripe.com" not in response.headers["Content-Security-Policy"]


# --- the templates ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "template", sorted(TEMPLATES.rglob("*.html")), ids=lambda path: str(path.relative_to(TEMPLATES))
)
def test_no_template_has_an_inline_handler_style_attribute_or_script_without_the_nonce(template):
    # Pages these tests do not render (the authentication page, e-mails, ...) keep to the
    # policy too.
    source = template.read_text()
    assert not INLINE_HANDLER.search(source)
    assert not STYLE_ATTRIBUTE.search(source)
    for _tag, attributes in _inline_tags(source):
        assert 'nonce="{{ csp_nonce }}"' in attributes, (template, attributes)
