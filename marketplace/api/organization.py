"""Which organization an API request acts for."""

from marketplace.api.authentication import ApiKeyPrincipal
from marketplace.models import Organization


def api_organization(request) -> Organization | None:
    """The acting organization: an API key's own organization, or for a signed-in browser the
    organization chosen in the session (set by ``CurrentOrganizationMiddleware``).

    Works with a DRF request as well as a plain Django one; None for anonymous callers and for
    users who belong to no active organization.
    """
    principal = getattr(request, "user", None)
    if isinstance(principal, ApiKeyPrincipal):
        return principal.organization
    if principal is None or not principal.is_authenticated:
        return None
    # A DRF request proxies unknown attributes to the Django request the middleware annotated.
    return getattr(request, "organization", None)
