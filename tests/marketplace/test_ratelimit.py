"""Rate limits with atomic counters: sign-in attempts per account and per address, counted
so that requests at once cannot slip through together (the cache's atomic increment: Redis
INCR on PostgreSQL + Redis, a locked counter in the embedded default), and counted in the
database while the cache does not answer."""

import threading
import time
import uuid
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connections
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from marketplace import ratelimit, taskqueue
from marketplace.models import RateCounter
from marketplace.ratelimit import rate_count, rate_parse, rate_settings_check
from tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db


def test_rates_are_read_as_a_count_per_window():
    assert rate_parse("10/minute") == (10, 60)
    assert rate_parse("5/15minute") == (5, 900)
    # plurals and DRF's abbreviations, which API_THROTTLE_* rates were written in before
    assert [rate_parse(r) for r in ("120/minutes", "5/hours", "60/min", "10/s", "100/d")] == [
        (120, 60),
        (5, 3600),
        (60, 60),
        (10, 1),
        (100, 86400),
    ]
    for wrong in ("ten per minute", "5/month", "5/0minute", "5/"):
        with pytest.raises(ValueError, match="Not a rate"):
            rate_parse(wrong)


def test_a_rate_setting_that_cannot_be_read_stops_the_server_at_its_checks(settings):
    assert rate_settings_check() == []
    settings.LOGIN_RATE_PER_ACCOUNT = "10 a minute"
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {
            **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
            "anon": "5/fortnight",
            "user": None,  # no limit: allowed
        },
    }

    errors = rate_settings_check()

    assert [(e.id, e.msg.split(":")[0]) for e in errors] == [
        ("marketplace.E001", "LOGIN_RATE_PER_ACCOUNT"),
        ("marketplace.E001", "API_THROTTLE_ANON"),
    ]
    assert "Not a rate: '5/fortnight'" in errors[1].msg


def test_requests_at_once_are_counted_exactly():
    scope, allowed = f"test-{uuid.uuid4().hex}", []
    barrier = threading.Barrier(20)

    def hit():
        barrier.wait()
        for _ in range(5):
            allowed.append(rate_count(scope=scope, ident="one", rate="37/day").allowed)

    threads = [threading.Thread(target=hit) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(allowed) == 100
    assert allowed.count(True) == 37  # never more, never fewer


@pytest.mark.skipif(
    not settings.REDIS_URL, reason="Redis counters need the Redis run of CI (REDIS_URL=redis://…)"
)
def test_redis_counters_expire_with_their_window_and_read_as_numbers():
    from django.core.cache import cache, caches

    scope, ident = f"test-{uuid.uuid4().hex}", "one"
    for _ in range(3):
        decision = rate_count(scope=scope, ident=ident, rate="5/hour")

    assert (decision.count, decision.allowed) == (3, True)
    now = int(time.time())
    key = f"ratelimit:{scope}:{ident}:{now - now % 3600}"
    assert cache.get(key) == 3
    backend = caches["default"]
    client = backend._cache.get_client(write=False)
    assert 0 < client.ttl(backend.make_and_validate_key(key)) <= 3600 + 5


def test_sign_in_attempts_for_one_account_are_limited_and_say_how_long_to_wait(settings):
    settings.LOGIN_RATE_PER_ACCOUNT = "3/day"  # a day: no window ends during the test
    # addresses of their own: the counters of a day outlive the test database in Redis
    user, other = (UserFactory(email=f"{uuid.uuid4().hex}@example.com") for _ in range(2))
    client = Client()
    for _ in range(3):
        response = client.post(reverse("login"), {"username": user.email, "password": "wrong"})
        assert response.status_code == 200  # the form again, with its usual error

    # the fourth, even with the right password, is refused
    response = client.post(reverse("login"), {"username": user.email, "password": PASSWORD})

    assert response.status_code == 429
    assert 1 <= int(response["Retry-After"]) <= 86_400
    assert "Too many sign-in attempts: wait" in response.content.decode()
    assert "_auth_user_id" not in client.session
    # another account is not slowed down by this one
    response = Client().post(reverse("login"), {"username": other.email, "password": PASSWORD})
    assert response.status_code == 302


def test_sign_in_attempts_from_one_address_are_limited(settings):
    settings.LOGIN_RATE_PER_ADDRESS = "2/day"
    settings.LOGIN_RATE_PER_ACCOUNT = "100/day"
    address = "2001:db8:" + ":".join(uuid.uuid4().hex[i : i + 4] for i in range(0, 16, 4)) + "::1"
    client = Client(REMOTE_ADDR=address)
    for _ in range(2):
        client.post(reverse("login"), {"username": UserFactory().email, "password": "wrong"})

    response = client.post(reverse("login"), {"username": UserFactory().email, "password": "x"})

    assert response.status_code == 429


STOPPED_REDIS = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": "redis://127.0.0.1:1/0",  # what a stopped Redis looks like
    }
}


def test_sign_in_stays_limited_in_the_database_while_the_cache_is_down(
    settings, caplog, monkeypatch
):
    settings.CACHES = STOPPED_REDIS
    monkeypatch.setattr(ratelimit, "CACHE_RETRY_SECONDS", 3600)  # however slow the requests
    settings.LOGIN_RATE_PER_ACCOUNT = "2/day"
    user = UserFactory(email=f"{uuid.uuid4().hex}@example.com")
    for _ in range(2):
        response = Client().post(reverse("login"), {"username": user.email, "password": "x"})
        assert response.status_code == 200  # the form again, with its usual error

    response = Client().post(reverse("login"), {"username": user.email, "password": PASSWORD})

    assert response.status_code == 429
    assert "Too many sign-in attempts: wait" in response.content.decode()
    # the counters are the database's, shared by every process
    account = RateCounter.objects.get(bucket__contains=":login-account:")
    assert account.count == 3
    # a process that saw the cache fail does not wait for it again on each request
    warnings = [r for r in caplog.records if "counted in the database" in r.getMessage()]
    assert len(warnings) == 1
    # within its limit, another account signs in
    other = UserFactory(email=f"{uuid.uuid4().hex}@example.com")
    response = Client().post(reverse("login"), {"username": other.email, "password": PASSWORD})
    assert response.status_code == 302


def test_bids_through_the_api_stay_limited_while_the_cache_is_down(settings):
    from tests.factories import AuctionFactory, buyer

    settings.CACHES = STOPPED_REDIS
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {
            **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
            "bids": "2/day",
        },
    }
    _organization, user = buyer()
    client = Client()
    client.force_login(user)
    auction = AuctionFactory()
    url = f"/api/v1/auctions/{auction.pk}/bids/"
    for amount in (1000, 1200):
        response = client.post(url, {"amount_minor": amount}, content_type="application/json")
        assert response.status_code == 201

    response = client.post(url, {"amount_minor": 1500}, content_type="application/json")

    assert response.status_code == 429
    assert response.json()["code"] == "throttled"
    # the page's form counts in the same bucket
    response = client.post(f"/auctions/{auction.pk}/", {"amount": "16.00", "client_bid_id": "p"})
    assert response.status_code == 429
    assert auction.bids.count() == 2


@pytest.mark.django_db(transaction=True)
def test_database_counters_count_requests_at_once_exactly(settings):
    settings.CACHES = STOPPED_REDIS
    scope, allowed = f"test-{uuid.uuid4().hex}", []
    barrier = threading.Barrier(10)

    def hit():
        barrier.wait()
        try:
            for _ in range(5):
                allowed.append(rate_count(scope=scope, ident="one", rate="23/day").allowed)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=hit) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(allowed) == 50
    assert allowed.count(True) == 23  # never more, never fewer
    assert RateCounter.objects.get(bucket__startswith=f"ratelimit:{scope}:").count == 50


def test_counters_of_windows_that_are_over_are_pruned(settings):
    from marketplace.tasks import rate_counters_prune

    settings.CACHES = STOPPED_REDIS
    rate_count(scope="test-minute", ident=uuid.uuid4().hex, rate="5/minute")
    rate_count(scope="test-day", ident=uuid.uuid4().hex, rate="5/day")
    RateCounter.objects.filter(bucket__contains=":test-minute:").update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )

    assert rate_counters_prune() == 1

    assert [c.bucket.split(":")[1] for c in RateCounter.objects.all()] == ["test-day"]
    # every worker runs it among its periodic jobs
    assert "marketplace.tasks.rate_counters_prune" in taskqueue._periodic_jobs


def test_bids_from_the_page_share_the_users_limit_and_say_how_long_to_wait(settings, client):
    from auctions.models import Bid
    from tests.factories import AuctionFactory, buyer

    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {
            **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
            "bids": "2/day",
        },
    }
    _organization, user = buyer()
    client.force_login(user)
    auction = AuctionFactory()
    url = f"/auctions/{auction.pk}/"
    for amount in ("10.00", "12.00"):
        assert client.post(url, {"amount": amount, "client_bid_id": amount}).status_code == 302

    response = client.post(url, {"amount": "15.00", "client_bid_id": "third"})

    assert response.status_code == 429
    assert "Too many bids: wait" in response.content.decode()
    assert Bid.objects.filter(auction=auction).count() == 2


def test_look_alike_spellings_of_an_account_share_its_limit(settings):
    settings.LOGIN_RATE_PER_ACCOUNT = "2/day"
    user = UserFactory(email=f"alice{uuid.uuid4().hex[:8]}@example.com")
    full_width_a = "\uff41" + user.email[1:]  # the form reads it as the same address
    for typed in (user.email.upper(), f"  {full_width_a} "):
        Client().post(reverse("login"), {"username": typed, "password": "wrong"})

    response = Client().post(reverse("login"), {"username": user.email, "password": PASSWORD})

    assert response.status_code == 429


def test_a_refused_sign_in_checks_no_password(settings):
    from django.contrib.auth.signals import user_login_failed

    settings.LOGIN_RATE_PER_ACCOUNT = "1/day"
    user = UserFactory(email=f"{uuid.uuid4().hex}@example.com")
    Client().post(reverse("login"), {"username": user.email, "password": "wrong"})
    checked = []

    def failed(**kwargs):
        checked.append(kwargs)

    user_login_failed.connect(failed)
    try:
        response = Client().post(reverse("login"), {"username": user.email, "password": "x"})
    finally:
        user_login_failed.disconnect(failed)

    assert response.status_code == 429
    assert checked == []


def test_the_staff_admin_sign_in_is_limited_too(settings):
    settings.LOGIN_RATE_PER_ACCOUNT = "2/day"
    staff = UserFactory(email=f"{uuid.uuid4().hex}@example.com", is_staff=True)
    for _ in range(2):
        Client().post("/admin/login/", {"username": staff.email, "password": "wrong"})

    response = Client().post("/admin/login/", {"username": staff.email, "password": PASSWORD})

    assert response.status_code == 429
    assert "Too many sign-in attempts" in response.content.decode()
    # within the limit, staff sign in and land on the admin
    other = UserFactory(email=f"{uuid.uuid4().hex}@example.com", is_staff=True)
    response = Client().post("/admin/login/", {"username": other.email, "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == reverse("admin:index")


def test_behind_the_proxy_the_address_is_the_one_the_proxy_added_and_ipv6_counts_by_64(
    settings, rf
):
    from marketplace.ratelimit import client_address

    settings.BEHIND_TLS_PROXY = True
    spoofed = rf.get("/", HTTP_X_FORWARDED_FOR="1.2.3.4, 198.51.100.7", REMOTE_ADDR="10.0.0.2")
    assert client_address(spoofed) == "198.51.100.7"
    v6 = rf.get("/", HTTP_X_FORWARDED_FOR="2001:db8:1:2:aaaa::1", REMOTE_ADDR="10.0.0.2")
    assert client_address(v6) == "2001:db8:1:2::/64"
    settings.BEHIND_TLS_PROXY = False
    assert client_address(spoofed) == "10.0.0.2"
