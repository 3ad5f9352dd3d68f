"""Health checks for load balancers and operators: `/healthz` says the process answers;
`/readyz` says it can serve: the database answers (else 503). The cache (Redis, shared by all
servers) is reported too, but its outage only degrades the site (live updates, the API's rate
limits): failing every server's readiness together would take the whole site down. Each check
is timed; the body names a failure's kind, the log its details; only one cache key is
written."""

import logging
import time
from dataclasses import dataclass

from django.core.cache import cache
from django.db import connection

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    milliseconds: float
    detail: str = ""


def _timed(name: str, probe) -> Check:
    started = time.perf_counter()
    try:
        probe()
    except Exception as exc:  # any failure makes the check fail, and says why
        elapsed = (time.perf_counter() - started) * 1000
        logger.warning("Readiness check %s failed: %s: %s", name, type(exc).__name__, exc)
        return Check(name, False, elapsed, type(exc).__name__)  # no addresses or names shown
    return Check(name, True, (time.perf_counter() - started) * 1000)


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        if cursor.fetchone()[0] != 1:
            raise RuntimeError("the database answered SELECT 1 wrongly")


def _cache() -> None:
    key = "health:probe"
    cache.set(key, "ok", timeout=10)
    if cache.get(key) != "ok":
        raise RuntimeError("the cache did not keep a value")


def readiness_checks() -> list[Check]:
    return [_timed("database", _database), _timed("cache", _cache)]
