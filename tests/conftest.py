import pytest
from django.test import Client

from tests.factories import PASSWORD, UserFactory


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def user(db):
    return UserFactory()


@pytest.fixture
def login_client():
    """Returns a function that signs a user in on a fresh client."""

    def make(user) -> Client:
        client = Client()
        assert client.login(email=user.email, password=PASSWORD)
        return client

    return make
