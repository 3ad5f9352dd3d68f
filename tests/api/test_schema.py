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
