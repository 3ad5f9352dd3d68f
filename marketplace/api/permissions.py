"""Scope and organization checks for API requests."""

from rest_framework import exceptions
from rest_framework.permissions import SAFE_METHODS, BasePermission

from marketplace.models import ApiKeyScope


class InsufficientScope(exceptions.PermissionDenied):
    default_code = "insufficient_scope"
    default_detail = "This API key may only read; writing needs a key with the write scope."


class ScopedAccess(BasePermission):
    """Read-scoped keys may only use safe methods; anonymous callers only safe methods on views
    that allow them (``public_read = True``)."""

    def has_permission(self, request, view):
        auth = request.auth
        if auth is not None and hasattr(auth, "scope"):
            if request.method not in SAFE_METHODS and auth.scope != ApiKeyScope.WRITE:
                raise InsufficientScope()
            return True
        if request.user and request.user.is_authenticated:
            return True
        return bool(getattr(view, "public_read", False) and request.method in SAFE_METHODS)
