import uuid

from rest_framework.test import APIClient

from marketplace.api.throttling import PrincipalRateThrottle
from tests.api.helpers import assert_problem
from tests.factories import AuctionFactory, buyer

NETWORKS = "/api/v1/networks/"


def test_each_api_key_has_its_own_rate_limit(
    monkeypatch, provider_a, provider_b, issue_key, key_client
):
    monkeypatch.setattr(PrincipalRateThrottle, "rate", "3/day", raising=False)  # one window
    busy = key_client(issue_key(provider_a.organization))
    quiet = key_client(issue_key(provider_b.organization))
    for _ in range(3):
        assert busy.get(NETWORKS).status_code == 200
    body = assert_problem(busy.get(NETWORKS), status=429, code="throttled")
    assert body["retry_after_seconds"] > 0
    # Another partner is not slowed down by the busy one.
    assert quiet.get(NETWORKS).status_code == 200


def test_bidding_has_its_own_tighter_limit(settings, issue_key, key_client):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {
            **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
            "bids": "2/day",  # a day: no window ends during the test
        },
    }
    organization, _user = buyer()
    client = key_client(issue_key(organization))
    url = f"/api/v1/auctions/{AuctionFactory().pk}/bids/"
    assert client.post(url, {"amount_minor": 1000, "max_amount_minor": 1500}).status_code == 201
    assert client.post(url, {"amount_minor": 1000, "max_amount_minor": 9000}).status_code == 201
    third = client.post(url, {"amount_minor": 1000, "max_amount_minor": 99000})
    assert_problem(third, status=429, code="throttled")
    # Reading is not limited by the bid throttle.
    assert client.get(url).status_code == 200


def test_anonymous_calls_are_limited_per_address(db, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {
            **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
            "anon": "2/day",
        },
    }
    # addresses of their own: a day's counters outlive the test database in a shared Redis
    busy, quiet = (f"2001:db8:{uuid.uuid4().hex[:4]}:{uuid.uuid4().hex[:4]}::1" for _ in "ab")
    anonymous = APIClient(REMOTE_ADDR=busy)
    for _ in range(2):
        assert anonymous.get("/api/v1/auctions/").status_code == 200

    body = assert_problem(anonymous.get("/api/v1/auctions/"), status=429, code="throttled")

    assert body["retry_after_seconds"] > 0
    # a caller from another address is not slowed down
    assert APIClient(REMOTE_ADDR=quiet).get("/api/v1/auctions/").status_code == 200


def test_a_signed_in_user_has_a_bucket_of_its_own(db, monkeypatch):
    monkeypatch.setattr(PrincipalRateThrottle, "rate", "2/day", raising=False)
    busy, quiet = APIClient(), APIClient()
    busy.force_login(buyer()[1])
    quiet.force_login(buyer()[1])
    for _ in range(2):
        assert busy.get("/api/v1/auctions/").status_code == 200

    assert_problem(busy.get("/api/v1/auctions/"), status=429, code="throttled")
    assert quiet.get("/api/v1/auctions/").status_code == 200
