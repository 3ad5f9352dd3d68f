"""Health checks for load balancers and operators: `/healthz` says the process answers;
`/readyz` says it can serve (the database answers, and the cache, which holds the API's rate
limits, answers too). Each check is timed; none writes anything but one cache key."""

import time
from dataclasses import dataclass

from django.core.cache import cache
from django.db import connection


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
        return Check(
            name, False, (time.perf_counter() - started) * 1000, f"{type(exc).__name__}: {exc}"
        )
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
