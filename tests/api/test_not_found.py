"""Paths under /api/v1/ that no route matches answer like the rest of the API: a 404 problem."""

import pytest

from tests.api.helpers import assert_problem

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/v1/nothing/"),
        ("get", "/api/v1/networks/0.5/"),
        ("delete", "/api/v1/cards/1.5/"),
        ("post", "/api/v1/leases/x.y/seats/"),
    ],
)
def test_unrouted_api_path_is_a_404_problem(client_a, method, path):
    response = getattr(client_a, method)(path)

    assert_problem(response, status=404, code="not_found")


def test_unrouted_api_path_needs_no_csrf_token_to_answer_404(client):
    client.handler.enforce_csrf_checks = True

    response = client.post("/api/v1/networks/1.5/", {})

    assert_problem(response, status=404, code="not_found")


def test_collection_without_its_final_slash_is_redirected(client_a):
    response = client_a.get("/api/v1/networks?page=1")

    assert response.status_code == 301
    assert response["Location"] == "/api/v1/networks/?page=1"
