"""Seats on a lease (SPEC §4.4): a lease is shared between users, client devices and
telephone numbers, up to its block's seat count at a time. The leaseholder's owners and admins
(a group's admins) assign and release seats. Once a lease has a seat assigned, its jobs run
under a seat, and their usage is attributed to it.

Who may hold a seat: on a buying group's lease, its active members (users, devices, numbers);
on an ordinary buyer's lease, its members, its client devices, and any telephone number.
Who runs a job under a seat: a user seat, that user; a device seat, its organization; a
telephone seat, the leaseholder or an organization in its group (a member, a member's
organization or a payer) with a client device of that number: a number proves nothing alone.
"""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.db.models import Count, QuerySet, Sum
from django.utils import timezone

from auctions.groups import GroupRefused, group_of, phone_number_checked
from auctions.models import (
    BuyingGroup,
    GroupMember,
    Lease,
    LeaseSeat,
    MemberKind,
    MemberStatus,
)
from marketplace.models import ClientDevice, Membership, Organization, Role, User
from marketplace.services import audit_log_record


class SeatRefused(GroupRefused):
    """A seat operation the rules refuse; `code` is stable and machine-readable."""


def seats_active(lease: Lease) -> QuerySet[LeaseSeat]:
    return (
        LeaseSeat.objects.filter(lease=lease, released_at__isnull=True)
        .select_related("user", "device")
        .order_by("assigned_at", "pk")
    )


def seat_usage(lease: Lease) -> dict[int, dict]:
    """Per seat of the lease (by id): jobs run under it and the bytes metered."""
    from segmentation.models import UsageRecord

    rows = (
        UsageRecord.objects.filter(lease=lease, job__seat__isnull=False)
        .values("job__seat")
        .annotate(jobs=Count("job", distinct=True), bytes=Sum("bytes"))
    )
    return {row["job__seat"]: {"jobs": row["jobs"], "bytes": row["bytes"] or 0} for row in rows}


def leases_seated(user: User) -> QuerySet[Lease]:
    """Leases the user holds an active seat on."""
    return Lease.objects.filter(seats__user=user, seats__released_at__isnull=True).distinct()


def seats_manageable(lease: Lease, user: User) -> bool:
    return Membership.objects.filter(
        user=user, organization=lease.winner_id, role__in=(Role.OWNER, Role.ADMIN)
    ).exists()


def _holder_checked(
    lease: Lease, *, kind: str, email: str | None, device: ClientDevice | None, phone_number
) -> dict:
    group = group_of(lease.winner)
    members = GroupMember.objects.filter(group=group, status=MemberStatus.ACTIVE) if group else None
    if kind == MemberKind.USER:
        email = (email or "").strip().lower()
        user = User.objects.filter(email__iexact=email).first() if email else None
        # an unknown address and a stranger's are refused alike: no account is revealed
        allowed = user is not None and (
            members.filter(kind=MemberKind.USER, user=user).exists()
            if group
            else Membership.objects.filter(user=user, organization=lease.winner).exists()
        )
        if not allowed:
            raise SeatRefused(
                "not_eligible",
                f"{email} is not a member of {lease.winner}: seats go to its members.",
            )
        return {"user": user}
    if kind == MemberKind.DEVICE:
        if device is None:
            raise SeatRefused("unknown_device", "Name the client device.")
        allowed = (
            members.filter(kind=MemberKind.DEVICE, device=device).exists()
            if group
            else device.organization_id == lease.winner_id
        )
        if not allowed:
            raise SeatRefused(
                "not_eligible", f"This device is not a device of {lease.winner}'s members."
            )
        return {"device": device}
    if kind == MemberKind.PHONE:
        try:
            number = phone_number_checked(phone_number)
        except GroupRefused as exc:
            raise SeatRefused(exc.code, exc.message) from None
        if group and not members.filter(kind=MemberKind.PHONE, phone_number=number).exists():
            raise SeatRefused(
                "not_eligible", f"{number} is not a member of {lease.winner}: add it first."
            )
        return {"phone_number": number}
    raise SeatRefused(
        "invalid_kind", "A seat is for a user, a client device or a telephone number."
    )


@transaction.atomic
def seat_assign(
    *,
    lease: Lease,
    by: User,
    kind: str,
    email: str | None = None,
    device: ClientDevice | None = None,
    phone_number: str | None = None,
) -> LeaseSeat:
    """Give a seat of the lease (locked: the count holds under concurrent assignments)."""
    lease = Lease.objects.select_for_update().select_related("block", "winner").get(pk=lease.pk)
    if not seats_manageable(lease, by):
        raise SeatRefused("not_allowed", f"Only the owners and admins of {lease.winner} do this.")
    if lease.ends_at <= timezone.now():
        raise SeatRefused("lease_ended", "This lease has ended.")
    holder = _holder_checked(
        lease, kind=kind, email=email, device=device, phone_number=phone_number
    )
    taken = LeaseSeat.objects.filter(lease=lease, released_at__isnull=True).count()
    if taken >= lease.block.seats:
        raise SeatRefused(
            "seats_full",
            f"All {lease.block.seats} seats of this lease are taken: release one first.",
        )
    try:
        with transaction.atomic():
            seat = LeaseSeat.objects.create(lease=lease, kind=kind, assigned_by=by, **holder)
    except IntegrityError:
        raise SeatRefused(
            "already_seated", "This holder already has a seat on the lease."
        ) from None
    audit_log_record(
        action="seat.assigned",
        actor=by,
        organization=lease.winner,
        target=seat,
        data={"lease": lease.pk, "kind": kind},
    )
    return seat


@transaction.atomic
def seat_release(*, seat: LeaseSeat, by: User) -> LeaseSeat:
    """Free a seat: by the leaseholder's owners and admins, or by a user giving up its own."""
    seat = LeaseSeat.objects.select_for_update().select_related("lease").get(pk=seat.pk)
    own = seat.kind == MemberKind.USER and seat.user_id == by.pk
    if not own and not seats_manageable(seat.lease, by):
        raise SeatRefused("not_allowed", "Only the leaseholder's owners and admins do this.")
    if seat.released_at is not None:
        raise SeatRefused("already_released", "This seat was already released.")
    seat.released_at = timezone.now()
    seat.save(update_fields=["released_at"])
    audit_log_record(
        action="seat.released",
        actor=by,
        organization=seat.lease.winner,
        target=seat,
        data={"lease": seat.lease_id},
    )
    return seat


def _held_by(seats, *, user: User | None, organization: Organization | None):
    from django.db.models import Q

    held = Q(pk__in=[])
    if organization is not None:
        phones = ClientDevice.objects.filter(organization=organization).exclude(phone_number="")
        # a number is nobody's proof of identity: its seat is used only by the leaseholder's
        # devices, or by those of an organization in the group holding the lease
        # one filter: the same member row is active and ties the organization to the group
        # (a member who left ties nothing); its users count through organizations they manage
        related = BuyingGroup.objects.filter(
            Q(members__status=MemberStatus.ACTIVE)
            & (
                Q(members__paying_organization=organization)
                | Q(members__device__organization=organization)
                | Q(
                    members__user__memberships__organization=organization,
                    members__user__memberships__role__in=(Role.OWNER, Role.ADMIN),
                )
            )
        )
        held |= Q(kind=MemberKind.DEVICE, device__organization=organization) | (
            Q(kind=MemberKind.PHONE, phone_number__in=phones.values("phone_number"))
            & (
                Q(lease__winner=organization)
                | Q(lease__winner__in=related.values("organization_id"))
            )
        )
    if user is not None and user.is_authenticated:
        held |= Q(kind=MemberKind.USER, user=user)
    return seats.filter(held)


def seats_held(*, user: User | None, organization: Organization | None, now=None):
    """The active seats the caller holds on leases running now (or on any lease without
    `now`): the user's own, its organization's devices', and the telephone numbers of those
    devices, as seat_for_job accepts them."""
    seats = LeaseSeat.objects.filter(released_at__isnull=True)
    if now is not None:
        seats = seats.filter(lease__starts_at__lte=now, lease__ends_at__gt=now)
    return (
        _held_by(seats, user=user, organization=organization)
        .select_related("lease__block__provider", "user", "device")
        .order_by("lease_id", "assigned_at", "pk")
    )


def seat_holder_exists(*, lease: Lease, user: User | None, organization: Organization) -> bool:
    """Whether the caller (a user, or an organization through its devices and numbers) holds
    an active seat on the lease."""
    active = LeaseSeat.objects.filter(lease=lease, released_at__isnull=True)
    user = user if user is not None and user.is_authenticated else None
    return _held_by(active, user=user, organization=organization).exists()


def seat_for_job(
    *, lease: Lease, user: User | None, organization: Organization, seat_id=None
) -> LeaseSeat | None:
    """The seat a job on the lease runs under, or None when the lease has no seat assigned
    (then only the leaseholder runs jobs, as before seats). With seats: the named seat (which
    the caller must hold), else the caller's own user seat. Raises SeatRefused."""
    active = LeaseSeat.objects.filter(lease=lease, released_at__isnull=True)
    if seat_id in (None, ""):
        if not active.exists():
            if organization.pk != lease.winner_id:
                raise SeatRefused("seat_required", "You hold no seat on this lease.")
            return None
        seat = active.filter(kind=MemberKind.USER, user=user).first() if user else None
        if seat is None:
            raise SeatRefused(
                "seat_required",
                "This lease is shared by seats: run the job under a seat you hold (`seat`).",
            )
        return seat
    try:
        seat = active.select_related("device").get(pk=int(seat_id))
    except (LeaseSeat.DoesNotExist, TypeError, ValueError):
        raise SeatRefused(
            "seat_not_found", f"Seat {seat_id} is not an active seat of this lease."
        ) from None
    if not _held_by(active.filter(pk=seat.pk), user=user, organization=organization).exists():
        raise SeatRefused("not_your_seat", f"Seat {seat.pk} is not held by you.")
    return seat
