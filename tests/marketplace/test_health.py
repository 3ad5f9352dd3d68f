"""Health endpoints for load balancers: /healthz answers while the process runs; /readyz
answers 200 only when the database and the cache answer, else 503 naming what failed."""

import pytest

pytestmark = pytest.mark.django_db


def test_healthz_answers_without_touching_anything(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_is_ready_when_the_database_and_the_cache_answer(client):
    response = client.get("/readyz")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["ok"] and body["checks"]["cache"]["ok"]


def test_readyz_stays_ready_but_degraded_when_the_cache_is_down(client, settings):
    # a Redis cache on a port nobody listens on: what a stopped Redis looks like
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
        }
    }
    response = client.get("/readyz")

    # every server shares the cache: its outage must not take them all out of rotation
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["cache"]["ok"] is False
    assert body["checks"]["cache"]["detail"] == "ConnectionError"  # no address shown


def test_readyz_is_unavailable_when_the_database_is_down(client, monkeypatch):
    from marketplace import health

    def refused():
        raise health.connection.Database.OperationalError("connection to 10.0.0.9 refused")

    monkeypatch.setattr(health, "_database", refused)

    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
    assert "10.0.0.9" not in response.content.decode()
