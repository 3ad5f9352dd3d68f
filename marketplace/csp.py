"""The Content-Security-Policy of every page: Django's own (SECURE_CSP, enforced by
django.middleware.csp), with the sources Stripe.js needs added when each response is built.

The Stripe sources are read from billing.stripe_gateway, the module that decides where pages
load Stripe.js from (`stripe_js_url()`), so the policy always allows the script the card pages
actually load: https://js.stripe.com with a Stripe key, localstripe's fake one at LOCALSTRIPE_URL
without. They cannot be computed in the settings module (the gateway reads the settings, which
are not ready yet then), and computing them per response also follows the settings tests change.
"""

from urllib.parse import urlsplit

# What real Stripe.js needs besides its own origin (Stripe's integration security guide): its
# other script hosts, the iframes of Elements and of 3D Secure, and its API.
STRIPE_SCRIPT_HOSTS = ["https://*.js.stripe.com"]
STRIPE_FRAME_HOSTS = ["https://*.js.stripe.com", "https://hooks.stripe.com"]
STRIPE_API_ORIGIN = "https://api.stripe.com"


def stripe_sources() -> dict[str, list[str]]:
    """The sources Stripe.js needs, per directive, for the Stripe the gateway talks to."""
    # Imported here: the settings module imports this one before the apps are loaded.
    from billing.stripe_gateway import stripe_js_url, uses_localstripe

    script = urlsplit(stripe_js_url())
    origin = f"{script.scheme}://{script.netloc}"
    if uses_localstripe():
        # localstripe's fake Stripe.js calls the API at the origin it was loaded from and
        # mounts plain inputs in the page (no iframes).
        return {"script-src": [origin], "connect-src": [origin]}
    return {
        "script-src": [origin, *STRIPE_SCRIPT_HOSTS],
        "frame-src": [origin, *STRIPE_FRAME_HOSTS],
        "connect-src": [STRIPE_API_ORIGIN],
    }


class ContentSecurityPolicy(dict):
    """SECURE_CSP: directive -> list of sources. Django's middleware reads `items()` for every
    response; they add the sources of `stripe_sources()` at that moment. A directive only
    Stripe needs (frame-src) then lists only Stripe's: no page frames one of the exchange's."""

    def items(self):
        policy = {directive: list(sources) for directive, sources in super().items()}
        for directive, sources in stripe_sources().items():
            policy[directive] = [*policy.get(directive, ()), *sources]
        return policy.items()
