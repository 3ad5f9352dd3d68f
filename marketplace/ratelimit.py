"""Rate limits with atomic counters (SPEC §8): sign-in attempts, bids and API calls. A limit
is a fixed window ("10/minute"): the first request of a window creates its counter in the cache
(SET NX, which only one request wins), every request increments it with the cache's atomic
increment (with REDIS_URL both in one round trip to Redis; a process-local lock in the
embedded default), and the counter expires with its window. Unlike DRF's cache throttle,
which reads a history, changes it and writes it back, concurrent requests can never all pass
on a stale read.

When the cache does not answer (Redis stopped), the counters move to the database: one upsert
per request (INSERT … ON CONFLICT DO UPDATE … RETURNING, atomic on PostgreSQL and SQLite), so
every process still shares one count and the limits hold through the outage. A process that saw
the cache fail goes straight to the database for CACHE_RETRY_SECONDS rather than wait for the
cache's time-out on every request. Only if the database fails too is a request let through
unlimited (with a warning): the outage is then not the limiter's to report."""

import hashlib
import ipaddress
import logging
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.core import checks
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from django.core.signals import setting_changed
from django.db import InterfaceError, OperationalError, connection, transaction
from django.dispatch import receiver
from django.utils import timezone

from marketplace.models import RateCounter

logger = logging.getLogger(__name__)

# After the cache fails, how long a process counts in the database before trying it again.
CACHE_RETRY_SECONDS = 5.0
_cache_retry_at = 0.0  # time.monotonic() before which this process skips the cache

# Units of a rate, as in "10/minute": the names, their plurals and DRF's abbreviations
# (600/min, 600/m, 10/s, 5/h, 100/d), which API_THROTTLE_* rates were written in before.
PERIODS = {
    **dict.fromkeys(("second", "seconds", "sec", "secs", "s"), 1),
    **dict.fromkeys(("minute", "minutes", "min", "mins", "m"), 60),
    **dict.fromkeys(("hour", "hours", "hr", "hrs", "h"), 3600),
    **dict.fromkeys(("day", "days", "d"), 86400),
}
RATE_PATTERN = re.compile(r"\s*(\d+)\s*/\s*(\d*)\s*([a-z]+)\s*", re.IGNORECASE)


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    count: int
    limit: int
    retry_after: int  # seconds until the window ends


def rate_parse(rate: str) -> tuple[int, int]:
    """ "10/minute" (or 10/5minutes, seconds, hours, days; see PERIODS) as (limit, window in
    seconds)."""
    match = RATE_PATTERN.fullmatch(rate or "")
    unit = match and PERIODS.get(match[3].lower())
    if not unit or not int(match[2] or 1):
        raise ValueError(
            f"Not a rate: {rate!r}. Write a count per period, e.g. 10/minute, 600/min, "
            "5/15minutes, 100/day."
        )
    return int(match[1]), int(match[2] or 1) * unit


def rate_settings_check(app_configs=None, **kwargs) -> list[checks.Error]:
    """System check: every configured rate can be read, so a mistyped one stops the server at
    start rather than failing each request it limits."""
    rates = {
        "LOGIN_RATE_PER_ADDRESS": settings.LOGIN_RATE_PER_ADDRESS,
        "LOGIN_RATE_PER_ACCOUNT": settings.LOGIN_RATE_PER_ACCOUNT,
    }
    for scope, rate in settings.REST_FRAMEWORK.get("DEFAULT_THROTTLE_RATES", {}).items():
        if rate is not None:
            rates[f"API_THROTTLE_{scope.upper()}"] = rate
    errors = []
    for name, rate in rates.items():
        try:
            rate_parse(rate)
        except ValueError as error:
            errors.append(checks.Error(f"{name}: {error}", id="marketplace.E001"))
    return errors


def rate_count(*, scope: str, ident: str, rate: str) -> RateDecision:
    """Count one request of `ident` in `scope` against `rate`; whether it is allowed."""
    global _cache_retry_at
    limit, window = rate_parse(rate)
    now = int(time.time())
    start = now - now % window
    key = f"ratelimit:{scope}:{ident}:{start}"
    retry_after = max(1, start + window - now)
    count = None
    if time.monotonic() >= _cache_retry_at:
        try:
            count = _cache_count(key, window)
        except Exception as error:  # the cache backend's own connection errors
            _cache_retry_at = time.monotonic() + CACHE_RETRY_SECONDS
            logger.warning(
                "Rate limit %s counted in the database: the cache does not answer (%s)",
                scope,
                type(error).__name__,
            )
    if count is None:
        try:
            count = _database_count(key, expires=start + window)
        except (OperationalError, InterfaceError):
            logger.warning("Rate limit %s not counted: neither cache nor database answers", scope)
            return RateDecision(True, 0, limit, retry_after)
    return RateDecision(count <= limit, count, limit, retry_after)


def _cache_count(key: str, window: int) -> int:
    backend = caches["default"]
    if isinstance(backend, RedisCache):
        # One round trip: create the window's counter if it is new, then INCR it (Django's
        # add and incr take three: SET NX, EXISTS, INCR). Django keeps integers unpickled, so
        # the counter stays readable with cache.get.
        full_key = backend.make_and_validate_key(key)
        client = backend._cache.get_client(full_key, write=True)
        pipeline = client.pipeline(transaction=False)
        pipeline.set(full_key, 0, ex=window + 5, nx=True)
        pipeline.incr(full_key)
        return pipeline.execute()[1]
    for _ in range(2):  # the counter may expire between the add and the increment: again
        backend.add(key, 0, timeout=window + 5)
        try:
            return backend.incr(key)
        except ValueError:
            continue
    return 2**31  # no counter kept: refuse rather than allow without a limit


def _database_count(key: str, *, expires: int) -> int:
    """The window's counter in the database (RateCounter), incremented atomically: concurrent
    upserts of one bucket serialize on its row."""
    quote = connection.ops.quote_name
    # only the model's own names are formatted in, quoted; the values are parameters
    table, bucket, count, expires_at = map(
        quote, (RateCounter._meta.db_table, "bucket", "count", "expires_at")
    )
    sql = (
        f"INSERT INTO {table} ({bucket}, {count}, {expires_at}) VALUES (%s, 1, %s) "  # noqa: S608
        f"ON CONFLICT ({bucket}) DO UPDATE SET {count} = {table}.{count} + 1 RETURNING {count}"
    )
    if len(key) > 255 or not key.isprintable():  # e.g. what was typed at sign-in: its digest
        key = "ratelimit:sha256:" + hashlib.sha256(key.encode()).hexdigest()
    ends = datetime.fromtimestamp(expires, tz=UTC)
    if not settings.USE_TZ:
        ends = timezone.make_naive(ends)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, [key, connection.ops.adapt_datetimefield_value(ends)])
        return cursor.fetchone()[0]


def rate_counters_delete_expired() -> int:
    """Delete the database's counters whose window is over; how many."""
    deleted, _ = RateCounter.objects.filter(expires_at__lt=timezone.now()).delete()
    return deleted


@receiver(setting_changed)
def _cache_retry_reset(*, setting, **kwargs):
    global _cache_retry_at
    if setting == "CACHES":  # a new cache is tried at once
        _cache_retry_at = 0.0


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


def user_ident(user) -> str:
    """A signed-in user's bucket: its id and the moment it joined (counters in a shared Redis
    outlive a test database, whose ids start again)."""
    joined = int(user.date_joined.timestamp() * 1_000_000) if user.date_joined else 0
    return f"user-{user.pk}-{joined}"


def bid_rate_count(user) -> RateDecision:
    """One bid of a signed-in user, from a page or a websocket, against the bids' rate (the
    API's API_THROTTLE_BIDS; the API counts a session user in the same bucket)."""
    rate = settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["bids"]
    return rate_count(scope="bids", ident=user_ident(user), rate=rate)
