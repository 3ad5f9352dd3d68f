"""Rate limits of the API, each counted atomically (marketplace.ratelimit: the cache's atomic
increment, the database's upsert while the cache is down): anonymous calls per client address,
calls per API key or signed-in user, and a tighter limit on placing bids."""

from django.conf import settings
from rest_framework.throttling import BaseThrottle

from marketplace.ratelimit import client_address, rate_count, user_ident


class AtomicRateThrottle(BaseThrottle):
    """A DRF throttle over marketplace.ratelimit, counting each API key or signed-in user in
    a bucket of its own (`ident`). `rate` is DEFAULT_THROTTLE_RATES[scope] unless a subclass
    sets it; a rate of None turns the throttle off."""

    scope: str
    rate: str | None = None

    def __init__(self):
        self.retry_after = None

    def ident(self, request) -> str | None:
        """The bucket the request counts in; None when this throttle does not apply. An API
        key by its random prefix, a signed-in user by ratelimit.user_ident (both outlive a
        test database's ids in a shared Redis); anonymous requests are not counted here."""
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return None
        api_key = getattr(user, "api_key", None)
        if api_key is not None:
            return f"key-{api_key.prefix}"
        return user_ident(user)

    def allow_request(self, request, view):
        rate = self.rate or settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"].get(self.scope)
        ident = self.ident(request)
        if rate is None or ident is None:
            return True
        decision = rate_count(scope=self.scope, ident=ident, rate=rate)
        self.retry_after = decision.retry_after
        return decision.allowed

    def wait(self):
        return self.retry_after


class AnonThrottle(AtomicRateThrottle):
    """Calls without a key or session, per client address."""

    scope = "anon"

    def ident(self, request):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            return None
        return client_address(request)


class PrincipalRateThrottle(AtomicRateThrottle):
    """Calls of one API key or one signed-in user: each has its own bucket."""

    scope = "user"


class BidRateThrottle(AtomicRateThrottle):
    """A tighter limit on placing bids (SPEC §8), per key or user; a signed-in user's API bids
    share the bucket of its page and websocket bids (marketplace.ratelimit.bid_rate_count).
    The rate is DEFAULT_THROTTLE_RATES["bids"] (API_THROTTLE_BIDS)."""

    scope = "bids"
