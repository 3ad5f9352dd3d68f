from marketplace.selectors import organization_current


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
