"""Rate limits with atomic counters (SPEC §8): sign-in attempts and bids. A limit is a fixed
window ("10/minute"): the first request of a window creates its counter in the cache (an add,
which only one request wins), every request increments it with the cache's atomic increment
(Redis INCR with REDIS_URL; a process-local lock in the embedded default), and the counter
expires with its window. Unlike DRF's cache throttle, which reads a history, changes it and
writes it back, concurrent requests can never all pass on a stale read. When the cache does not
answer (Redis stopped), nothing is limited and a warning is logged: signing in and bidding go
on."""

import ipaddress
import logging
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache

logger = logging.getLogger(__name__)

PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
# DRF's spellings, which API_THROTTLE_* rates used before: 600/min, 600/m, 10/s, 5/h, 100/d
PERIODS.update({"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600, "d": 86400})


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    count: int
    limit: int
    retry_after: int  # seconds until the window ends


def rate_parse(rate: str) -> tuple[int, int]:
    """ "10/minute" (or 10/5minute, second, hour, day) as (limit, window in seconds)."""
    try:
        count, period = rate.split("/")
        digits = "".join(ch for ch in period if ch.isdigit())
        unit = period[len(digits) :]
        return int(count), int(digits or 1) * PERIODS[unit]
    except (ValueError, KeyError):
        raise ValueError(f"Not a rate: {rate!r} (e.g. 10/minute).") from None


def rate_count(*, scope: str, ident: str, rate: str) -> RateDecision:
    """Count one request of `ident` in `scope` against `rate`; whether it is allowed."""
    limit, window = rate_parse(rate)
    now = int(time.time())
    start = now - now % window
    key = f"ratelimit:{scope}:{ident}:{start}"
    try:
        for _ in range(2):  # the counter may expire between the add and the increment: again
            cache.add(key, 0, timeout=window + 5)
            try:
                count = cache.incr(key)
                break
            except ValueError:
                continue
        else:
            count = limit + 1  # no counter kept: refuse rather than allow without a limit
    except Exception:  # the cache (Redis) is down: sign-in and bids go on, unlimited, said
        logger.warning("Rate limit %s not counted: the cache does not answer", scope)
        return RateDecision(True, 0, limit, window)
    return RateDecision(count <= limit, count, limit, max(1, start + window - now))


def client_address(request) -> str:
    """The client's address as a rate-limit key: behind the TLS proxy (BEHIND_TLS_PROXY), the
    last address of X-Forwarded-For, the one the proxy itself added (whatever the client sent
    before it); else the socket's. An IPv6 address counts by its /64 network, which one
    client holds whole."""
    address = request.META.get("REMOTE_ADDR", "") or ""
    if getattr(settings, "BEHIND_TLS_PROXY", False):
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")[-1].strip()
        address = forwarded or address
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address or "unknown"
    if parsed.version == 6:
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


def bid_rate_count(user) -> RateDecision:
    """One bid of a signed-in user, from a page or a websocket, against the bids' rate (the
    API's API_THROTTLE_BIDS; the API counts a session user in the same bucket)."""
    rate = settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["bids"]
    # the user's id and the moment it joined: counters in a shared Redis outlive a (test)
    # database, whose ids start again
    joined = int(user.date_joined.timestamp() * 1_000_000) if user.date_joined else 0
    return rate_count(scope="bids", ident=f"user-{user.pk}-{joined}", rate=rate)
