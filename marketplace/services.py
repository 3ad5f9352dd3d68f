"""Writes of the shared kernel: sign-up, organizations, invitations, client devices, API keys,
the audit log."""

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.text import slugify

from marketplace.models import (
    ApiKey,
    ApiKeyScope,
    AuditLogEntry,
    ClientDevice,
    IdempotencyRecord,
    Invitation,
    Membership,
    Organization,
    OrganizationKind,
    Role,
    User,
)
from marketplace.selectors import user_can_manage

API_KEY_PREFIX = "sx"
# How long a creating POST's response is replayed for the same Idempotency-Key.
IDEMPOTENCY_REPLAY_HOURS = 24


def token_hash(token: str) -> str:
    """SHA-256 of a high-entropy secret; such secrets need no slow password hash."""
    return hashlib.sha256(token.encode()).hexdigest()


def audit_log_record(
    *, action: str, actor=None, organization: Organization | None = None, target=None, data=None
) -> AuditLogEntry:
    """Append one entry to the audit log."""
    data = dict(data or {})
    api_key = getattr(actor, "api_key", None)
    if api_key is not None:
        # A partner system acting with an API key: record which key.
        data["api_key"] = api_key.prefix
    return AuditLogEntry.objects.create(
        actor=actor if isinstance(actor, User) else None,
        organization=organization,
        action=action,
        object_type=target._meta.label if target is not None else "",
        object_id=str(target.pk) if target is not None else "",
        data=data,
    )


def user_sign_up(*, email: str, password: str, full_name: str = "") -> User:
    """Create a user account (the password is validated by the form that calls this)."""
    email = email.strip().lower()
    if User.objects.filter(email__iexact=email).exists():
        raise ValidationError({"email": "A user with this e-mail address already exists."})
    return User.objects.create_user(email=email, password=password, full_name=full_name.strip())


def _slug_unique(name: str) -> str:
    base = slugify(name)[:60] or "org"
    slug, n = base, 1
    while Organization.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


@transaction.atomic
def organization_create(*, user: User, name: str, kind: str) -> Organization:
    """Create an organization with the user as its owner."""
    if kind not in OrganizationKind.values or kind == OrganizationKind.GROUP:
        raise ValidationError({"kind": f"Unknown organization kind {kind!r}."})
    name = name.strip()
    if not name:
        raise ValidationError({"name": "An organization needs a name."})
    organization = Organization.objects.create(name=name, slug=_slug_unique(name), kind=kind)
    Membership.objects.create(user=user, organization=organization, role=Role.OWNER)
    audit_log_record(
        action="organization.created", actor=user, organization=organization, target=organization
    )
    return organization


def _assert_manager(*, user: User, organization: Organization) -> None:
    if not user_can_manage(user=user, organization=organization):
        raise PermissionDenied("Only an owner or admin of the organization may do this.")


@transaction.atomic
def invitation_create(
    *, organization: Organization, email: str, role: str, invited_by: User
) -> tuple[Invitation, str]:
    """Invite an address to the organization; returns the invitation and its one-time token.

    The e-mail goes out after commit, so a rolled-back invitation never reaches anyone.
    """
    _assert_manager(user=invited_by, organization=organization)
    if organization.kind == OrganizationKind.GROUP:
        # a buying group's people come in through the group's own invitations (its members,
        # payers and admins have rules an organization invitation would bypass)
        raise ValidationError(
            {"email": "Invite members of a buying group from the group's page (/groups/)."}
        )
    if role not in Role.values:
        raise ValidationError({"role": f"Unknown role {role!r}."})
    if (
        role == Role.OWNER
        and not organization.memberships.filter(user=invited_by, role=Role.OWNER).exists()
    ):
        raise PermissionDenied("Only an owner may invite another owner.")
    email = email.strip().lower()
    if organization.memberships.filter(user__email__iexact=email).exists():
        raise ValidationError({"email": f"{email} is already a member of {organization}."})
    if organization.invitations.filter(
        email__iexact=email, accepted_at__isnull=True, revoked_at__isnull=True
    ).exists():
        raise ValidationError({"email": f"An invitation to {email} is already pending."})
    token = secrets.token_urlsafe(32)
    invitation = Invitation.objects.create(
        organization=organization,
        email=email,
        role=role,
        token_hash=token_hash(token),
        invited_by=invited_by,
        expires_at=timezone.now() + timedelta(days=settings.INVITATION_VALID_DAYS),
    )
    transaction.on_commit(lambda: invitation_email_send(invitation=invitation, token=token))
    audit_log_record(
        action="invitation.created",
        actor=invited_by,
        organization=organization,
        target=invitation,
        data={"email": email, "role": role},
    )
    return invitation, token


def invitation_email_send(*, invitation: Invitation, token: str) -> None:
    """E-mail the invitee its link (called after the invitation is committed)."""
    link = settings.SITE_URL.rstrip("/") + reverse("invitation_accept", args=[token])
    inviter = invitation.invited_by.email if invitation.invited_by else "Someone"
    send_mail(
        subject=f"{inviter} invites you to {invitation.organization} on Segment Exchange",
        message=(
            f"{inviter} invites you to join {invitation.organization} as "
            f"{invitation.get_role_display().lower()} on Segment Exchange.\n\n"
            f"Accept the invitation: {link}\n\n"
            f"The link is valid until {invitation.expires_at:%Y-%m-%d %H:%M} UTC."
        ),
        from_email=None,
        recipient_list=[invitation.email],
    )
    Invitation.objects.filter(pk=invitation.pk).update(sent_at=timezone.now())


def invitation_find(*, token: str) -> Invitation | None:
    return (
        Invitation.objects.select_related("organization", "invited_by")
        .filter(token_hash=token_hash(token))
        .first()
    )


def invitation_problem(invitation: Invitation | None) -> str | None:
    """Why an invitation cannot be accepted, in words for the invitee; None when it can."""
    if invitation is None:
        return "This invitation link is not valid."
    if invitation.revoked_at:
        return "This invitation was withdrawn."
    if invitation.accepted_at:
        return "This invitation has already been accepted."
    if invitation.expires_at <= timezone.now():
        return "This invitation has expired; ask for a new one."
    if invitation.organization.kind == OrganizationKind.GROUP:
        return "A buying group's members join through the group's own invitations (/groups/)."
    return None


@transaction.atomic
def invitation_accept(*, token: str, user: User) -> Membership:
    """Join the organization of an invitation addressed to the user's e-mail address."""
    invitation = invitation_find(token=token)
    if invitation is not None:
        invitation = Invitation.objects.select_for_update().get(pk=invitation.pk)
    problem = invitation_problem(invitation)
    if problem:
        raise ValidationError(problem)
    if invitation.email.lower() != user.email.lower():
        raise PermissionDenied(
            f"This invitation is addressed to {invitation.email}; sign in with that address."
        )
    membership, _ = Membership.objects.get_or_create(
        user=user, organization=invitation.organization, defaults={"role": invitation.role}
    )
    invitation.accepted_at = timezone.now()
    invitation.accepted_by = user
    invitation.save(update_fields=["accepted_at", "accepted_by"])
    audit_log_record(
        action="invitation.accepted",
        actor=user,
        organization=invitation.organization,
        target=invitation,
    )
    return membership


@transaction.atomic
def invitation_revoke(*, invitation: Invitation, user: User) -> Invitation:
    _assert_manager(user=user, organization=invitation.organization)
    invitation = Invitation.objects.select_for_update().get(pk=invitation.pk)
    if invitation.accepted_at is None and invitation.revoked_at is None:
        invitation.revoked_at = timezone.now()
        invitation.save(update_fields=["revoked_at"])
        audit_log_record(
            action="invitation.revoked",
            actor=user,
            organization=invitation.organization,
            target=invitation,
        )
    return invitation


@transaction.atomic
def api_key_create(
    *, organization: Organization, name: str, scope: str, created_by: User
) -> tuple[ApiKey, str]:
    """Issue an API key; returns the record and the key itself, which is never stored."""
    _assert_manager(user=created_by, organization=organization)
    if scope not in ApiKeyScope.values:
        raise ValidationError({"scope": f"Unknown scope {scope!r}; use read or write."})
    prefix = secrets.token_hex(4)
    key = f"{API_KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    api_key = ApiKey.objects.create(
        organization=organization,
        name=name.strip() or "API key",
        prefix=prefix,
        key_hash=token_hash(key),
        scope=scope,
        created_by=created_by,
    )
    audit_log_record(
        action="api_key.created",
        actor=created_by,
        organization=organization,
        target=api_key,
        data={"scope": scope, "prefix": prefix},
    )
    return api_key, key


@transaction.atomic
def api_key_revoke(*, api_key: ApiKey, user: User) -> ApiKey:
    _assert_manager(user=user, organization=api_key.organization)
    api_key = ApiKey.objects.select_for_update().get(pk=api_key.pk)
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
        audit_log_record(
            action="api_key.revoked", actor=user, organization=api_key.organization, target=api_key
        )
    return api_key


def api_key_authenticate(*, key: str) -> ApiKey | None:
    """The active or revoked key record matching a presented key, or None."""
    return (
        ApiKey.objects.select_related("organization")
        .filter(key_hash=token_hash(key.strip()))
        .first()
    )


def idempotency_records_delete_expired(*, older_than_hours: int = IDEMPOTENCY_REPLAY_HOURS) -> int:
    """Forget stored Idempotency-Key responses older than the replay window; returns how many."""
    cutoff = timezone.now() - timedelta(hours=older_than_hours)
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()
    return deleted


def client_device_register(
    *, organization: Organization, name: str, identifier: str, phone_number: str = ""
) -> ClientDevice:
    """Register a client device of a recipient; ValidationError (per field) when the name or
    identifier is empty, the identifier is taken, or the number is not E.164."""
    if not organization.is_recipient:
        raise ValidationError("Only recipients (buyers) register client devices.")
    device = ClientDevice(
        organization=organization,
        name=name.strip(),
        identifier=identifier.strip(),
        phone_number=phone_number.strip().replace(" ", ""),
    )
    device.full_clean()
    device.save()
    return device


def client_device_remove(*, device: ClientDevice) -> None:
    """Forget a device; its past service requests keep their record, without the device. A
    device that is (or was) in a buying group or held a seat that ran jobs stays: the group's
    and the jobs' records name it."""
    from auctions.models import GroupMember, LeaseSeat

    if (
        GroupMember.objects.filter(device=device, joined_at__isnull=False).exists()
        or LeaseSeat.objects.filter(device=device, jobs__isnull=False).exists()
    ):
        raise ValidationError(
            {
                "device": f"{device.name} is in a buying group or ran jobs under a seat: it "
                "stays on record. Leave the group or release its seats instead."
            }
        )
    device.delete()
