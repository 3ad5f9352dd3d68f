import logging

from django.core.exceptions import ObjectDoesNotExist

from marketplace.errors import gone
from marketplace.selectors import organization_current

logger = logging.getLogger(__name__)


class CurrentOrganizationMiddleware:
    """Puts the organization the signed-in user acts for on ``request.organization``."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.organization = (
            organization_current(user=request.user, session=request.session)
            if request.user.is_authenticated
            else None
        )
        return self.get_response(request)


class VanishedRowMiddleware:
    """A page whose object another request deleted while this one ran (read, then gone when
    the service went to lock it) is a 404 page, as the API answers it, not a server error."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception, ObjectDoesNotExist):
            return None
        logger.warning(
            "%s %s: %s: %s", request.method, request.path, type(exception).__name__, exception
        )
        return gone(request)
