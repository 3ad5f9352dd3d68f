"""HTTP as an API client sees it, for tests that talk to a running exchange."""

import urllib.error
import urllib.request

from marketplace.models import ApiKeyScope
from marketplace.services import api_key_create
from tests.factories import member_of


def api_key_for(organization) -> str:
    _, key = api_key_create(
        organization=organization,
        name="test key",
        scope=ApiKeyScope.WRITE,
        created_by=member_of(organization),
    )
    return key


def http_request(url: str, key: str, *, data: bytes | None = None, headers=None):
    request = urllib.request.Request(
        url, data=data, headers={"Authorization": f"Bearer {key}", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
