"""Rate limits: each API key and each signed-in user has its own bucket."""

import logging

from django.conf import settings
from rest_framework.throttling import AnonRateThrottle, BaseThrottle, UserRateThrottle

from marketplace.ratelimit import bid_rate_count, rate_count

logger = logging.getLogger(__name__)


class _FailOpen:
    """When the cache (Redis) does not answer, the request goes on unlimited and a warning is
    logged, as marketplace.ratelimit does: an outage of the counters is no outage of the API."""

    def allow_request(self, request, view):
        try:
            return super().allow_request(request, view)
        except Exception as error:  # the cache backend's own connection errors
            logger.warning(
                "API rate limit %s not counted: the cache does not answer (%s)",
                self.scope,
                type(error).__name__,
            )
            return True


class AnonThrottle(_FailOpen, AnonRateThrottle):
    """DRF's limit on anonymous calls, failing open when the cache is down."""


class PrincipalRateThrottle(_FailOpen, UserRateThrottle):
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
