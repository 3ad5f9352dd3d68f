from marketplace.api.throttling import PrincipalRateThrottle
from tests.api.helpers import assert_problem

NETWORKS = "/api/v1/networks/"


def test_each_api_key_has_its_own_rate_limit(
    monkeypatch, provider_a, provider_b, issue_key, key_client
):
    monkeypatch.setattr(PrincipalRateThrottle, "rate", "3/minute", raising=False)
    busy = key_client(issue_key(provider_a.organization))
    quiet = key_client(issue_key(provider_b.organization))
    for _ in range(3):
        assert busy.get(NETWORKS).status_code == 200
    body = assert_problem(busy.get(NETWORKS), status=429, code="throttled")
    assert body["retry_after_seconds"] > 0
    # Another partner is not slowed down by the busy one.
    assert quiet.get(NETWORKS).status_code == 200
