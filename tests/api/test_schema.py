"""The OpenAPI schema and its documentation page."""

import re

import pytest
from django.core.management import call_command
from django.test import Client

pytestmark = pytest.mark.django_db


def test_schema_endpoint_returns_openapi_3(client):
    response = client.get("/api/schema/", {"format": "json"})

    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert "/api/v1/networks/" in schema["paths"]
    assert "apiKey" in schema["components"]["securitySchemes"]


def test_schema_documents_idempotency_key_on_creates():
    schema = Client().get("/api/schema/", {"format": "json"}).json()

    for path in ("/api/v1/networks/", "/api/v1/routing-paths/", "/api/v1/offers/"):
        names = [p["name"] for p in schema["paths"][path]["post"]["parameters"]]
        assert "Idempotency-Key" in names


def test_schema_generates_without_warnings(tmp_path):
    # Fails on any warning anywhere in the API, so an undocumented field is caught early.
    call_command(
        "spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yml")
    )


def test_docs_page_loads_only_local_static_files(client):
    response = client.get("/api/docs/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    assert "cdn.jsdelivr.net" not in html
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
    assert assets
    for asset in assets:
        assert asset.startswith("/") and not asset.startswith("//"), asset
    for asset in assets:
        if asset.startswith("/static/"):
            assert client.get(asset).status_code == 200, asset


def _schema() -> dict:
    return Client().get("/api/schema/", {"format": "json"}).json()


def _operations(schema: dict):
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if method in ("get", "post", "put", "patch", "delete"):
                yield path, method, operation


# The main operations of SPEC §7 show what they answer (and, for bids, what they take).
EXAMPLED = [
    ("/api/v1/auctions/", "get", "200"),
    ("/api/v1/auctions/{id}/", "get", "200"),
    ("/api/v1/auctions/{id}/bids/", "post", "201"),
    ("/api/v1/auctions/{id}/bids/", "post", "422"),
    ("/api/v1/jobs/", "post", "201"),
    ("/api/v1/jobs/", "post", "422"),
    ("/api/v1/statements/", "get", "200"),
    ("/api/v1/statements/{number}/", "get", "200"),
    ("/api/v1/leases/", "get", "200"),
    ("/api/v1/leases/", "get", "400"),
    ("/api/v1/leases/{id}/", "get", "200"),
    ("/api/v1/leases/{id}/", "get", "404"),
    ("/api/v1/groups/", "get", "200"),
    ("/api/v1/groups/", "post", "201"),
]


@pytest.mark.parametrize(("path", "method", "status"), EXAMPLED)
def test_main_operations_have_response_examples(path, method, status):
    response = _schema()["paths"][path][method]["responses"][status]

    examples = [c.get("examples") for c in response["content"].values()]
    assert any(examples), f"{method.upper()} {path} has no example of its {status}"


def test_bid_documents_a_request_example():
    body = _schema()["paths"]["/api/v1/auctions/{id}/bids/"]["post"]["requestBody"]

    assert body["content"]["application/json"]["examples"]


def test_every_problem_response_is_problem_json_with_an_example():
    missing = []
    for path, method, operation in _operations(_schema()):
        for status, response in operation["responses"].items():
            if not status.startswith(("4", "5")):
                continue
            content = response.get("content", {})
            problem = content.get("application/problem+json")
            if problem is None or not problem.get("examples"):
                missing.append(f"{method.upper()} {path} {status}")
    assert not missing, missing


def test_every_operation_documents_the_problems_any_request_may_meet():
    missing = []
    for path, method, operation in _operations(_schema()):
        statuses = set(operation["responses"])
        wanted = {"401", "403", "429"}
        if "{" in path:
            wanted.add("404")
        if method in ("post", "put", "patch"):
            wanted |= {"400", "415"}
        if not wanted <= statuses:
            missing.append(f"{method.upper()} {path}: {sorted(wanted - statuses)}")
    assert not missing, missing


def test_leases_are_documented_read_only_with_their_filters():
    schema = _schema()

    assert set(schema["paths"]["/api/v1/leases/"]) == {"get"}
    assert set(schema["paths"]["/api/v1/leases/{id}/"]) == {"get"}
    names = {p["name"] for p in schema["paths"]["/api/v1/leases/"]["get"]["parameters"]}
    assert {"role", "status", "active", "provider", "auction", "block", "page"} <= names
