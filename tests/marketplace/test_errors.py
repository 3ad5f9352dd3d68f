"""Error answers: problem details under /api/ even where no DRF view answers (an unknown path,
a body over the size limit, a server error), readable pages elsewhere; nothing saved."""

import json

import pytest
from django.db import OperationalError
from django.test import Client
from django.urls import path

from auctions.models import Bid
from marketplace import urls as project_urls
from tests.factories import AuctionFactory, buyer

pytestmark = pytest.mark.django_db


def _failing_view(request):
    raise RuntimeError("boom")


urlpatterns = [
    *project_urls.urlpatterns,
    path("api/test-failure/", _failing_view),
    path("test-failure/", _failing_view),
]
handler400 = project_urls.handler400
handler404 = project_urls.handler404
handler500 = project_urls.handler500


def test_an_api_body_over_the_limit_is_413_problem_and_places_no_bid(client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    auction = AuctionFactory()
    _, user = buyer()
    client.force_login(user)
    body = json.dumps({"amount_minor": auction.start_price_minor, "pad": "x" * 20_000})
    response = client.post(
        f"/api/v1/auctions/{auction.pk}/bids/", body, content_type="application/json"
    )
    assert response.status_code == 413
    assert response["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "payload_too_large"
    assert "10,000 bytes" in problem["detail"]
    assert not Bid.objects.exists()


def test_a_form_over_the_limit_gets_a_413_page_and_places_no_bid(client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    auction = AuctionFactory()
    _, user = buyer()
    client.force_login(user)
    response = client.post(f"/auctions/{auction.pk}/", {"amount": "10.00", "pad": "x" * 20_000})
    assert response.status_code == 413
    assert "over the limit of 10,000 bytes" in response.content.decode()
    assert not Bid.objects.exists()


def test_an_unknown_api_path_is_a_404_problem(client):
    response = client.get("/api/v1/no-such-resource/")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "not_found"


def test_an_unknown_page_is_a_404_page(client):
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    assert "There is nothing at this address." in response.content.decode()


@pytest.mark.urls("tests.marketplace.test_errors")
def test_a_server_error_in_the_api_is_a_500_problem_without_a_traceback():
    client = Client(raise_request_exception=False)
    response = client.get("/api/test-failure/")
    assert response.status_code == 500
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "server_error"
    assert "boom" not in response.content.decode()


@pytest.mark.urls("tests.marketplace.test_errors")
def test_a_server_error_on_a_page_is_a_plain_500_page():
    client = Client(raise_request_exception=False)
    response = client.get("/test-failure/")
    assert response.status_code == 500
    assert "Server error (500)" in response.content.decode()
    assert "boom" not in response.content.decode()


def _database_gone(request):
    raise OperationalError("connection to server at 127.0.0.1 failed: Connection refused")


urlpatterns += [
    path("api/test-database-gone/", _database_gone),
    path("test-database-gone/", _database_gone),
]


@pytest.fixture
def database_down(monkeypatch):
    """The database stops answering once the view failed (the real outage, with a PostgreSQL
    server stopped, is tests/faults/test_postgres_restart.py)."""
    monkeypatch.setattr("marketplace.errors._database_reachable", lambda: False)


@pytest.mark.urls("tests.marketplace.test_errors")
def test_an_unreachable_database_is_a_503_problem_saying_when_to_retry(database_down):
    client = Client(raise_request_exception=False)
    response = client.get("/api/test-database-gone/")
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    problem = response.json()
    assert problem["code"] == "database_unavailable"
    assert "Idempotency-Key" in problem["detail"]
    assert "Connection refused" not in response.content.decode()


@pytest.mark.urls("tests.marketplace.test_errors")
def test_an_unreachable_database_on_a_page_is_a_503_page(database_down):
    client = Client(raise_request_exception=False)
    response = client.get("/test-database-gone/")
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert "Service unavailable (503)" in response.content.decode()


@pytest.mark.urls("tests.marketplace.test_errors")
def test_a_database_error_while_the_database_answers_is_a_500_not_a_retry():
    client = Client(raise_request_exception=False)
    response = client.get("/api/test-database-gone/")
    assert response.status_code == 500
    assert response.json()["code"] == "server_error"
    assert "Retry-After" not in response


def test_a_page_whose_object_another_request_deleted_is_a_404_page(login_client, monkeypatch):
    """The member is read by the page, then deleted by another request before the service
    locks it: the page says it no longer exists, with a 404, not a server error."""
    from auctions import group_views
    from auctions.groups import member_remove
    from auctions.models import GroupMember
    from tests.factories import buying_group, group_joined

    group, admin, _ = buying_group()
    member = group_joined(group, role="sponsored")

    def removed_after_another_deleted_it(*, member, by):
        GroupMember.objects.filter(pk=member.pk).delete()
        return member_remove(member=member, by=by)

    monkeypatch.setattr(group_views, "member_remove", removed_after_another_deleted_it)

    response = login_client(admin).post(f"/groups/{group.pk}/members/{member.pk}/remove/")

    assert response.status_code == 404
    assert "It no longer exists: it was deleted while this request ran." in response.text
