"""API-key authentication: ``Authorization: Bearer <key>``."""

from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header

from marketplace.services import api_key_authenticate


class ApiKeyPrincipal:
    """Who a request authenticated with an API key acts as: the key's organization."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False

    def __init__(self, api_key):
        self.api_key = api_key
        self.organization = api_key.organization
        self.pk = None
        self.id = None

    def __str__(self):
        return f"API key {self.api_key.prefix} of {self.organization}"


class InvalidApiKey(exceptions.AuthenticationFailed):
    default_code = "invalid_api_key"
    default_detail = "The API key is not valid."


class RevokedApiKey(exceptions.AuthenticationFailed):
    default_code = "api_key_revoked"
    default_detail = "The API key has been revoked."


class ApiKeyAuthentication(BaseAuthentication):
    keyword = b"bearer"

    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword:
            return None
        if len(parts) != 2:
            raise InvalidApiKey("Send the key as 'Authorization: Bearer <key>'.")
        try:
            key = parts[1].decode()
        except UnicodeDecodeError:
            raise InvalidApiKey() from None
        api_key = api_key_authenticate(key=key)
        if api_key is None:
            raise InvalidApiKey()
        if not api_key.is_active:
            raise RevokedApiKey()
        if not api_key.organization.is_active:
            raise InvalidApiKey("The organization of this API key is deactivated.")
        # Touch at most once a minute so read-heavy partners don't write on every call.
        now = timezone.now()
        if api_key.last_used_at is None or (now - api_key.last_used_at).total_seconds() > 60:
            type(api_key).objects.filter(pk=api_key.pk).update(last_used_at=now)
        return ApiKeyPrincipal(api_key), api_key

    def authenticate_header(self, request):
        return 'Bearer realm="api"'
