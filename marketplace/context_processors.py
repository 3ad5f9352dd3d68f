from marketplace.selectors import memberships_of


def organization(request):
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    current = request.organization
    return {
        "current_organization": current,
        "my_memberships": memberships_of(user=user),
    }
