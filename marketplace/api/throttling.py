"""Rate limits: each API key and each signed-in user has its own bucket."""

from rest_framework.throttling import UserRateThrottle


class PrincipalRateThrottle(UserRateThrottle):
    """Like DRF's user throttle, but an API key counts as itself (keys have no user id)."""

    def get_cache_key(self, request, view):
        api_key = getattr(request.user, "api_key", None)
        if api_key is not None:
            return self.cache_format % {"scope": self.scope, "ident": f"key-{api_key.pk}"}
        return super().get_cache_key(request, view)


class BidRateThrottle(PrincipalRateThrottle):
    """A tighter limit on placing bids, per key or user (SPEC §8: rate limits on bidding)."""

    scope = "bids"
