"""Reads of the shared kernel: which organizations a user may act for."""

from django.db.models import QuerySet

from marketplace.models import (
    MANAGING_ROLES,
    ApiKey,
    ClientDevice,
    Invitation,
    Membership,
    Organization,
)


def memberships_of(*, user) -> QuerySet[Membership]:
    if not user.is_authenticated:
        return Membership.objects.none()
    return Membership.objects.filter(user=user, organization__is_active=True).select_related(
        "organization"
    )


def membership_get(*, user, organization: Organization) -> Membership | None:
    return memberships_of(user=user).filter(organization=organization).first()


def organization_current(*, user, session) -> Organization | None:
    """The organization the user acts for: the one chosen in the session, else the first."""
    memberships = memberships_of(user=user)
    chosen = session.get("organization_id") if session is not None else None
    if chosen:
        membership = memberships.filter(organization_id=chosen).first()
        if membership:
            return membership.organization
    first = memberships.order_by("created_at").first()
    return first.organization if first else None


def user_can_manage(*, user, organization: Organization) -> bool:
    return (
        memberships_of(user=user)
        .filter(organization=organization, role__in=MANAGING_ROLES)
        .exists()
    )


def invitations_pending(*, organization: Organization) -> QuerySet[Invitation]:
    return organization.invitations.filter(accepted_at__isnull=True, revoked_at__isnull=True)


def api_keys_of(*, organization: Organization) -> QuerySet[ApiKey]:
    return organization.api_keys.select_related("created_by")


def client_devices_of(*, organization: Organization) -> QuerySet[ClientDevice]:
    return ClientDevice.objects.filter(organization=organization).order_by("name", "pk")
