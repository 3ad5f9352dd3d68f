"""Rate limits: each API key and each signed-in user has its own bucket."""

from django.conf import settings
from rest_framework.throttling import BaseThrottle, UserRateThrottle

from marketplace.ratelimit import bid_rate_count, rate_count


class PrincipalRateThrottle(UserRateThrottle):
    """Like DRF's user throttle, but an API key counts as itself (keys have no user id)."""

    def get_cache_key(self, request, view):
        api_key = getattr(request.user, "api_key", None)
        if api_key is not None:
            return self.cache_format % {"scope": self.scope, "ident": f"key-{api_key.pk}"}
        return super().get_cache_key(request, view)


class BidRateThrottle(BaseThrottle):
    """A tighter limit on placing bids, per key or user (SPEC §8: rate limits on bidding),
    counted atomically (marketplace.ratelimit), so bids sent at once cannot all slip through
    on a stale count. The rate is DEFAULT_THROTTLE_RATES["bids"] (API_THROTTLE_BIDS)."""

    scope = "bids"

    def __init__(self):
        self.retry_after = None

    def allow_request(self, request, view):
        api_key = getattr(request.user, "api_key", None)
        if api_key is None:  # a signed-in user: the same bucket as its page and websocket bids
            decision = bid_rate_count(request.user)
        else:  # a key by its random prefix: counters outlive a test database in a shared Redis
            rate = settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"][self.scope]
            decision = rate_count(scope=self.scope, ident=f"key-{api_key.prefix}", rate=rate)
        self.retry_after = decision.retry_after
        return decision.allowed

    def wait(self):
        return self.retry_after
