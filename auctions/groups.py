"""Buying groups (SPEC §4.4): members, invitations, pledges, group bidding rules, providers'
direct offers to groups with a tipping point, and the snapshot of who pays for a group's lease.

A group's account is an organization of kind "group": it is the bidder and the leaseholder.
Its admins (members with a managing role in that organization) place its bids through the
ordinary bid service; every active user member belongs to the organization, so they see its
auctions, leases and jobs. Members are users, client devices or telephone numbers; each is a
payer (pledging a share and/or a cap, paid by one of its organizations' cards) or sponsored.
A telephone number, having no account and no card, is always sponsored.

The group's bid limit is the largest price its payers' pledges cover: each pays at most its
cap and at most its share of the price (billing.shares.group_limit; no limit when shares
without caps reach 100 %). Charges are split by billing.shares when billed; nothing here
moves money.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.urls import reverse
from django.utils import timezone

from auctions.models import (
    Auction,
    AuctionStatus,
    BuyingGroup,
    GroupMember,
    GroupOffer,
    GroupOfferAcceptance,
    GroupOfferStatus,
    Lease,
    LeaseShare,
    MemberKind,
    MemberRole,
    MemberStatus,
    ServiceBlock,
)
from billing.shares import FULL_SHARE_BPS, Pledge, group_limit
from marketplace.live import organization_notify
from marketplace.models import (
    E164_PATTERN,
    ClientDevice,
    Membership,
    Organization,
    OrganizationKind,
    Role,
    User,
)
from marketplace.money import money_format
from marketplace.services import audit_log_record
from providers.models import ProviderProfile, ProviderStatus

logger = logging.getLogger(__name__)

NAME_MAX = 200
ACTIVE = MemberStatus.ACTIVE
OPEN_STATUSES = (MemberStatus.INVITED, MemberStatus.ACTIVE)


class GroupRefused(Exception):
    """A group operation the rules refuse; `code` is stable and machine-readable."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


# --- reads ---------------------------------------------------------------------------------------


def groups_of(user: User) -> QuerySet[BuyingGroup]:
    """The groups the user is an active member of (as a user), acts for by membership, or
    whose device members belong to an organization the user manages."""
    managed = Membership.objects.filter(user=user, role__in=(Role.OWNER, Role.ADMIN)).values(
        "organization_id"
    )
    return (
        BuyingGroup.objects.filter(
            Q(members__user=user, members__status=ACTIVE)
            | Q(organization__memberships__user=user)
            | Q(members__device__organization__in=managed, members__status=ACTIVE)
        )
        .select_related("organization")
        .distinct()
        .order_by("organization__name", "pk")
    )


def group_of(organization: Organization | None) -> BuyingGroup | None:
    if organization is None or organization.kind != OrganizationKind.GROUP:
        return None
    return BuyingGroup.objects.filter(organization=organization).first()


def members_of(group: BuyingGroup, *, statuses=OPEN_STATUSES) -> QuerySet[GroupMember]:
    return (
        group.members.filter(status__in=statuses)
        .select_related("user", "device", "paying_organization")
        .order_by("pk")
    )


def payers_of(group: BuyingGroup) -> list[GroupMember]:
    return list(members_of(group, statuses=(ACTIVE,)).filter(role=MemberRole.PAYER))


def pledge_of(member) -> Pledge:
    return Pledge(share_bps=member.share_bps, cap_minor=member.cap_minor)


def bid_limit_of(group: BuyingGroup) -> int | None:
    """The most the group may bid: the largest price its active payers' pledges cover
    (billing.shares.group_limit); None when unlimited, 0 when they cover no price."""
    payers = payers_of(group)
    if not payers:
        return 0
    return group_limit([pledge_of(member) for member in payers])


def is_group_admin(group: BuyingGroup, user) -> bool:
    """An active user member made admin, who manages the group's organization (both: an
    organization invitation alone never makes a group admin)."""
    if user is None or not getattr(user, "is_authenticated", False) or user.pk is None:
        return False
    return (
        Membership.objects.filter(
            organization=group.organization, user=user, role__in=(Role.OWNER, Role.ADMIN)
        ).exists()
        and group.members.filter(user=user, status=ACTIVE, is_admin=True).exists()
    )


def invitations_for(user: User) -> QuerySet[GroupMember]:
    """Invitations the user may answer: to the user (by account or address) and to the client
    devices of organizations the user manages."""
    managed = Membership.objects.filter(user=user, role__in=(Role.OWNER, Role.ADMIN)).values(
        "organization_id"
    )
    return (
        GroupMember.objects.filter(status=MemberStatus.INVITED)
        .filter(
            Q(kind=MemberKind.USER, user=user)
            | Q(kind=MemberKind.USER, user__isnull=True, invited_email__iexact=user.email)
            | Q(kind=MemberKind.DEVICE, device__organization__in=managed)
        )
        .select_related("group__organization", "device")
        .order_by("pk")
    )


def offers_of_group(group: BuyingGroup) -> QuerySet[GroupOffer]:
    return group.offers.select_related("block", "provider").order_by("-created_at", "-pk")


@dataclass(frozen=True)
class OfferStanding:
    """How far an offer is from tipping: the largest price the accepting payers' pledges cover
    (None: no limit, their shares without caps reach 100 %) against the price."""

    pledged_minor: int | None
    price_minor: int
    accepted: int

    @property
    def tipped(self) -> bool:
        return self.accepted > 0 and (
            self.pledged_minor is None or self.pledged_minor >= self.price_minor
        )


def offer_standing(offer: GroupOffer) -> OfferStanding:
    from billing.payments import card_on_file

    members = [a.member for a in offer.acceptances.select_related("member__paying_organization")]
    payers = [
        m
        for m in members
        if m.status == ACTIVE and m.role == MemberRole.PAYER and card_on_file(m.paying_organization)
    ]
    pledged = group_limit([pledge_of(m) for m in payers]) if payers else 0
    return OfferStanding(pledged_minor=pledged, price_minor=offer.price_minor, accepted=len(payers))


# --- groups and members --------------------------------------------------------------------------


def _pledge_checked(
    *, user: User, role: str, paying_organization, share_bps, cap_minor, kind: str
) -> dict:
    """The pledge fields of a member, checked."""
    if role not in MemberRole.values:
        raise GroupRefused("invalid_role", "A member is a payer or sponsored.")
    if role == MemberRole.SPONSORED:
        return {"role": role, "paying_organization": None, "share_bps": None, "cap_minor": None}
    if kind == MemberKind.PHONE:
        raise GroupRefused("phone_sponsored", "A telephone number has no card: it is sponsored.")
    for name, value in (("share_bps", share_bps), ("cap_minor", cap_minor)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise GroupRefused("invalid_pledge", f"{name} is a whole number.")
    if share_bps is None and cap_minor is None:
        raise GroupRefused("invalid_pledge", "A payer pledges a share, a cap, or both.")
    if share_bps is not None and not 0 < share_bps <= FULL_SHARE_BPS:
        raise GroupRefused(
            "invalid_pledge", "A share is more than 0 and at most 10,000 basis points (100 %)."
        )
    if cap_minor is not None and not 0 < cap_minor < 2**63:
        raise GroupRefused("invalid_pledge", "A cap is a positive amount in minor units.")
    if paying_organization is None:
        raise GroupRefused("paying_organization_required", "Say which organization pays.")
    if not (paying_organization.is_recipient and paying_organization.is_active):
        raise GroupRefused(
            "paying_organization_invalid", "Only an active buyer organization pays a share."
        )
    if not Membership.objects.filter(
        user=user, organization=paying_organization, role__in=(Role.OWNER, Role.ADMIN)
    ).exists():
        raise GroupRefused(
            "paying_organization_invalid",
            "You do not manage this organization: only its owners and admins pledge its money.",
        )
    return {
        "role": role,
        "paying_organization": paying_organization,
        "share_bps": share_bps,
        "cap_minor": cap_minor,
    }


def _shares_fit(group: BuyingGroup, member: GroupMember | None, share_bps) -> None:
    if not share_bps:
        return
    others = (
        group.members.filter(status=ACTIVE, role=MemberRole.PAYER, share_bps__isnull=False)
        .exclude(pk=getattr(member, "pk", None))
        .values_list("share_bps", flat=True)
    )
    if sum(others) + share_bps > FULL_SHARE_BPS:
        raise GroupRefused(
            "shares_over_100",
            f"The payers' shares would add up to {(sum(others) + share_bps) / 100:g} %: "
            "at most 100 %.",
        )


def _admin_required(group: BuyingGroup, user) -> None:
    if not is_group_admin(group, user):
        raise GroupRefused("group_admin_only", "Only the group's admins do this.")


@transaction.atomic
def group_create(
    *,
    user: User,
    name: str,
    currency: str,
    description: str = "",
    role: str = MemberRole.PAYER,
    paying_organization: Organization | None = None,
    share_bps: int | None = None,
    cap_minor: int | None = None,
) -> BuyingGroup:
    """A new group with the user as its first admin and member (payer or sponsored)."""
    from marketplace.money import currency_validate
    from marketplace.services import _slug_unique

    name = (name or "").strip()
    if not name or len(name) > NAME_MAX:
        raise GroupRefused("invalid_name", f"A group's name has 1 to {NAME_MAX} characters.")
    if not name.isprintable():
        raise GroupRefused("invalid_name", "A group's name is one line of printable text.")
    try:
        currency_validate(currency)
    except Exception as exc:  # a ValidationError with the reason
        raise GroupRefused("invalid_currency", f"{currency!r}: {exc}") from None
    pledge = _pledge_checked(
        user=user,
        role=role,
        paying_organization=paying_organization,
        share_bps=share_bps,
        cap_minor=cap_minor,
        kind=MemberKind.USER,
    )
    organization = Organization.objects.create(
        name=name, slug=_slug_unique(name), kind=OrganizationKind.GROUP
    )
    Membership.objects.create(user=user, organization=organization, role=Role.OWNER)
    group = BuyingGroup.objects.create(
        organization=organization,
        currency=currency,
        description=(description or "").strip()[:300],
        created_by=user,
    )
    GroupMember.objects.create(
        group=group,
        kind=MemberKind.USER,
        user=user,
        status=ACTIVE,
        is_admin=True,
        joined_at=timezone.now(),
        invited_by=user,
        **pledge,
    )
    audit_log_record(action="group.created", actor=user, organization=organization, target=group)
    return group


def _group_locked(group: BuyingGroup) -> BuyingGroup:
    return BuyingGroup.objects.select_for_update().select_related("organization").get(pk=group.pk)


@transaction.atomic
def member_invite_user(*, group: BuyingGroup, by: User, email: str) -> GroupMember:
    """Invite an address; the invitee chooses payer or sponsored when accepting."""
    group = _group_locked(group)
    _admin_required(group, by)
    email = (email or "").strip().lower()
    try:
        validate_email(email)
    except ValidationError:
        raise GroupRefused("invalid_email", f"{email!r} is not an e-mail address.") from None
    user = User.objects.filter(email__iexact=email).first()
    taken = group.members.filter(status__in=OPEN_STATUSES, kind=MemberKind.USER).filter(
        Q(invited_email__iexact=email) | Q(user__email__iexact=email)
    )
    if taken.exists():
        raise GroupRefused("already_member", f"{email} is already in the group or invited.")
    member = GroupMember.objects.create(
        group=group,
        kind=MemberKind.USER,
        user=user,
        invited_email=email,
        role=MemberRole.SPONSORED,
        status=MemberStatus.INVITED,
        invited_by=by,
    )
    # One line, whatever the name holds: a line break in a subject is a header injection.
    subject = " ".join(f"You are invited to the buying group {group}".split())
    body = (
        f"{by.email} invites you to the buying group {group} on Segment Exchange. Sign in "
        "(or sign up with this address) and answer at "
    )

    def invite() -> None:
        link = settings.SITE_URL.rstrip("/") + reverse("group_invitations")
        send_mail(subject, body + link, None, [email])

    transaction.on_commit(invite)
    audit_log_record(
        action="group.member_invited",
        actor=by,
        organization=group.organization,
        target=member,
        data={"email": email},
    )
    return member


@transaction.atomic
def member_invite_device(*, group: BuyingGroup, by: User, device: ClientDevice) -> GroupMember:
    """Invite a client device; a manager of its organization accepts for it."""
    group = _group_locked(group)
    _admin_required(group, by)
    if group.members.filter(status__in=OPEN_STATUSES, device=device).exists():
        raise GroupRefused("already_member", f"{device.name} is already in the group or invited.")
    member = GroupMember.objects.create(
        group=group,
        kind=MemberKind.DEVICE,
        device=device,
        role=MemberRole.SPONSORED,
        status=MemberStatus.INVITED,
        invited_by=by,
    )
    audit_log_record(
        action="group.member_invited",
        actor=by,
        organization=group.organization,
        target=member,
        data={"device": device.pk},
    )
    _notify_later(
        device.organization_id,
        f"Your device {device.name} is invited to the buying group {group}.",
        "group_invitations",
    )
    return member


def phone_number_checked(value) -> str:
    import re

    number = re.sub(r"[\s().-]", "", str(value or ""))
    if not re.fullmatch(E164_PATTERN, number):
        raise GroupRefused(
            "invalid_phone_number",
            f"{value!r} is not a telephone number in E.164 form (+ country code and number, "
            "at most 15 digits, e.g. +14155550123).",
        )
    return number


@transaction.atomic
def member_add_phone(*, group: BuyingGroup, by: User, phone_number: str) -> GroupMember:
    """Add a telephone number: a sponsored member at once (it cannot accept anything)."""
    group = _group_locked(group)
    _admin_required(group, by)
    number = phone_number_checked(phone_number)
    if group.members.filter(status=ACTIVE, kind=MemberKind.PHONE, phone_number=number).exists():
        raise GroupRefused("already_member", f"{number} is already in the group.")
    member = GroupMember.objects.create(
        group=group,
        kind=MemberKind.PHONE,
        phone_number=number,
        role=MemberRole.SPONSORED,
        status=ACTIVE,
        invited_by=by,
        joined_at=timezone.now(),
    )
    audit_log_record(
        action="group.member_added",
        actor=by,
        organization=group.organization,
        target=member,
        data={"phone_number": number},
    )
    return member


def _answerable(member: GroupMember, user: User) -> None:
    """The user may answer this invitation (or change this member's pledge)."""
    if member.kind == MemberKind.USER:
        if member.user_id == user.pk:
            return
        if member.user_id is None and member.invited_email.lower() == user.email.lower():
            return
    elif (
        member.kind == MemberKind.DEVICE
        and Membership.objects.filter(
            user=user, organization=member.device.organization_id, role__in=(Role.OWNER, Role.ADMIN)
        ).exists()
    ):
        return
    raise GroupRefused("not_yours", "This invitation or membership is not yours to answer.")


@transaction.atomic
def invitation_accept(
    *,
    member: GroupMember,
    user: User,
    role: str,
    paying_organization: Organization | None = None,
    share_bps: int | None = None,
    cap_minor: int | None = None,
) -> GroupMember:
    group = _group_locked(member.group)
    member = GroupMember.objects.select_for_update().get(pk=member.pk)
    _answerable(member, user)
    if member.status != MemberStatus.INVITED:
        raise GroupRefused("not_invited", "This invitation was already answered or withdrawn.")
    pledge = _pledge_checked(
        user=user,
        role=role,
        paying_organization=paying_organization,
        share_bps=share_bps,
        cap_minor=cap_minor,
        kind=member.kind,
    )
    _shares_fit(group, member, pledge["share_bps"])
    for field, value in pledge.items():
        setattr(member, field, value)
    member.status = ACTIVE
    member.joined_at = timezone.now()
    if member.kind == MemberKind.USER:
        member.user = user
        Membership.objects.get_or_create(
            user=user, organization=group.organization, defaults={"role": Role.MEMBER}
        )
    try:
        with transaction.atomic():
            member.save()
    except IntegrityError:
        raise GroupRefused("already_member", "You are already in this group.") from None
    audit_log_record(
        action="group.member_joined",
        actor=user,
        organization=group.organization,
        target=member,
        data={"role": member.role, "share_bps": member.share_bps, "cap_minor": member.cap_minor},
    )
    return member


@transaction.atomic
def invitation_decline(*, member: GroupMember, user: User) -> GroupMember:
    member = GroupMember.objects.select_for_update().get(pk=member.pk)
    _answerable(member, user)
    if member.status != MemberStatus.INVITED:
        raise GroupRefused("not_invited", "This invitation was already answered or withdrawn.")
    member.status = MemberStatus.DECLINED
    member.save(update_fields=["status"])
    return member


@transaction.atomic
def pledge_update(
    *,
    member: GroupMember,
    by: User,
    role: str,
    paying_organization: Organization | None = None,
    share_bps: int | None = None,
    cap_minor: int | None = None,
) -> GroupMember:
    """A member changes its own pledge (or becomes sponsored). Leases already won keep the
    pledges they were won with."""
    group = _group_locked(member.group)
    member = GroupMember.objects.select_for_update().get(pk=member.pk)
    _answerable(member, by)
    if member.status != ACTIVE:
        raise GroupRefused("not_a_member", "Only an active member pledges.")
    pledge = _pledge_checked(
        user=by,
        role=role,
        paying_organization=paying_organization,
        share_bps=share_bps,
        cap_minor=cap_minor,
        kind=member.kind,
    )
    _shares_fit(group, member, pledge["share_bps"])
    _commitments_kept(group, member, pledge)
    for field, value in pledge.items():
        setattr(member, field, value)
    member.save()
    audit_log_record(
        action="group.pledge_changed",
        actor=by,
        organization=group.organization,
        target=member,
        data={"role": member.role, "share_bps": member.share_bps, "cap_minor": member.cap_minor},
    )
    return member


@transaction.atomic
def member_remove(*, member: GroupMember, by: User) -> GroupMember:
    """An admin removes a member, or a member leaves. The last admin cannot go."""
    group = _group_locked(member.group)
    member = GroupMember.objects.select_for_update().get(pk=member.pk)
    leaving = member.kind == MemberKind.USER and member.user_id == by.pk
    if not leaving:
        try:
            _answerable(member, by)
            leaving = True
        except GroupRefused:
            _admin_required(group, by)
    if member.status not in OPEN_STATUSES:
        raise GroupRefused("not_a_member", "This member already left.")
    if (
        member.is_admin
        and not group.members.filter(status=ACTIVE, is_admin=True).exclude(pk=member.pk).exists()
    ):
        raise GroupRefused("last_admin", "Make another member admin before the last one goes.")
    if member.status == ACTIVE and member.role == MemberRole.PAYER:
        _commitments_kept(group, member, None)
    member.status = MemberStatus.LEFT
    member.is_admin = False
    member.save(update_fields=["status", "is_admin"])
    _access_withdrawn(group, member)
    audit_log_record(
        action="group.member_removed",
        actor=by,
        organization=group.organization,
        target=member,
        data={"left": leaving},
    )
    return member


@transaction.atomic
def member_admin_set(*, member: GroupMember, by: User, is_admin: bool) -> GroupMember:
    group = _group_locked(member.group)
    _admin_required(group, by)
    member = GroupMember.objects.select_for_update().get(pk=member.pk)
    if member.kind != MemberKind.USER or member.status != ACTIVE:
        raise GroupRefused("not_a_user_member", "Only an active user member can be an admin.")
    if (
        not is_admin
        and not group.members.filter(status=ACTIVE, is_admin=True).exclude(pk=member.pk).exists()
    ):
        raise GroupRefused("last_admin", "A group keeps at least one admin.")
    member.is_admin = is_admin
    member.save(update_fields=["is_admin"])
    Membership.objects.filter(user_id=member.user_id, organization=group.organization).exclude(
        role=Role.OWNER
    ).update(role=Role.ADMIN if is_admin else Role.MEMBER)
    if not is_admin:
        Membership.objects.filter(
            user_id=member.user_id, organization=group.organization, role=Role.OWNER
        ).update(role=Role.MEMBER)
    return member


def _commitments_kept(group: BuyingGroup, member: GroupMember, pledge: dict | None) -> None:
    """A payer may lower its pledge, become sponsored or leave only if the payers still cover
    what the group has committed to: the highest (hidden maximum) bid it leads with on an
    auction not closed yet. `pledge` None: the member leaves."""
    from auctions.models import LIVE_STATUSES

    led = Auction.objects.filter(leader=group.organization, status__in=LIVE_STATUSES)
    committed = max((a.leader_max_minor or a.current_price_minor or 0 for a in led), default=0)
    if not committed:
        return
    pledges = [pledge_of(m) for m in payers_of(group) if m.pk != member.pk]
    if pledge is not None and pledge["role"] == MemberRole.PAYER:
        pledges.append(Pledge(share_bps=pledge["share_bps"], cap_minor=pledge["cap_minor"]))
    limit = group_limit(pledges)
    if limit is not None and limit < committed:
        raise GroupRefused(
            "pledge_committed",
            f"{group} leads an auction with up to {money_format(committed, group.currency)}: "
            f"the payers would cover only {money_format(limit, group.currency)}. Change it "
            "once the auction is over.",
        )


def _access_withdrawn(group: BuyingGroup, member: GroupMember) -> None:
    """A member who leaves loses what came with membership: its place in the group's
    organization, the API keys it made for it, and its seats on the group's leases."""
    from auctions.models import LeaseSeat
    from marketplace.models import ApiKey

    now = timezone.now()
    if member.user_id:
        Membership.objects.filter(user_id=member.user_id, organization=group.organization).delete()
        ApiKey.objects.filter(
            organization=group.organization, created_by_id=member.user_id, revoked_at__isnull=True
        ).update(revoked_at=now)
    seats = LeaseSeat.objects.filter(lease__winner=group.organization, released_at__isnull=True)
    if member.kind == MemberKind.USER and member.user_id:
        seats.filter(kind=MemberKind.USER, user_id=member.user_id).update(released_at=now)
    elif member.kind == MemberKind.DEVICE:
        seats.filter(kind=MemberKind.DEVICE, device_id=member.device_id).update(released_at=now)
    elif member.kind == MemberKind.PHONE:
        seats.filter(kind=MemberKind.PHONE, phone_number=member.phone_number).update(
            released_at=now
        )


# --- bidding -------------------------------------------------------------------------------------


def group_bidder_check(*, bidder: Organization, user: User) -> BuyingGroup:
    """A group bids through its admins, and only with payers whose organizations have a card.
    Raises auctions.services.BidRejected."""
    from auctions.services import BidRejected
    from billing.payments import card_on_file

    group = group_of(bidder)
    if group is None:
        raise BidRejected("not_a_buyer", f"{bidder} is not a buying group.")
    if not is_group_admin(group, user):
        raise BidRejected("group_admin_only", f"Only the admins of {group} place its bids.")
    payers = payers_of(group)
    if not payers:
        raise BidRejected("group_no_payer", f"{group} has no payer yet: nobody would pay.")
    missing = sorted(
        {m.paying_organization.name for m in payers if not card_on_file(m.paying_organization)}
    )
    if missing:
        raise BidRejected(
            "payer_card_required",
            f"These payers have no card on file yet: {', '.join(missing)}.",
        )
    # a payer with too many unpaid leases may not commit more through the group
    from auctions.services import billing_standing_check

    for paying in {m.paying_organization for m in payers}:
        try:
            billing_standing_check(paying)
        except BidRejected as exc:
            raise BidRejected(
                "payer_unpaid_leases",
                f"A payer of {group} ({paying.name}) has unpaid leases: {exc.message}",
            ) from None
    return group


def group_amounts_check(*, bidder: Organization, currency: str, amounts: list[int | None]) -> None:
    """A group's bid (and its hidden maximum) stays within its payers' caps, in its currency.
    Raises auctions.services.BidRejected."""
    from auctions.services import BidRejected

    group = group_of(bidder)
    if group is None:
        return
    # locked: a pledge cannot be lowered under this bid while it is placed
    group = _group_locked(group)
    if currency != group.currency:
        raise BidRejected(
            "group_currency",
            f"{group} pledges in {group.currency}: it cannot bid in {currency}.",
        )
    limit = bid_limit_of(group)
    top = max(amount for amount in amounts if amount is not None)
    if limit is not None and top > limit:
        raise BidRejected(
            "group_limit",
            f"{money_format(top, currency)} is above {group}'s limit, the largest price its "
            f"payers' pledges cover: {money_format(limit, currency)}.",
            limit_minor=limit,
        )


def lease_shares_record(*, lease: Lease, accepting: list[GroupMember] | None = None) -> int:
    """Record who pays for a group's new lease and who is sponsored, as pledged now: the
    active payers (or, for an offer, the payers who accepted it) and the active sponsored
    members. Nothing for a lease of an ordinary buyer. Returns the rows recorded."""
    group = group_of(lease.winner)
    if group is None:
        return 0
    members = members_of(group, statuses=(ACTIVE,))
    payers = (
        accepting if accepting is not None else [m for m in members if m.role == MemberRole.PAYER]
    )
    sponsored = [m for m in members if m.role == MemberRole.SPONSORED]
    rows = [
        LeaseShare(
            lease=lease,
            member=m,
            role=MemberRole.PAYER,
            paying_organization=m.paying_organization,
            share_bps=m.share_bps,
            cap_minor=m.cap_minor,
        )
        for m in payers
    ] + [LeaseShare(lease=lease, member=m, role=MemberRole.SPONSORED) for m in sponsored]
    LeaseShare.objects.bulk_create(rows)
    return len(rows)


# --- offers to groups ----------------------------------------------------------------------------


def _provider_manager_required(provider: ProviderProfile, user: User) -> None:
    if not Membership.objects.filter(
        user=user, organization=provider.organization_id, role__in=(Role.OWNER, Role.ADMIN)
    ).exists():
        raise GroupRefused(
            "not_allowed", f"Only the owners and admins of {provider.legal_name} do this."
        )


def _block_free(block: ServiceBlock, *, now: datetime) -> None:
    if block.starts_at <= now:
        raise GroupRefused("block_started", "This block has started: it can no longer be offered.")
    if Lease.objects.filter(block=block).exists():
        raise GroupRefused("block_leased", "This block is leased already.")
    if Auction.objects.filter(
        block=block, status__in=(AuctionStatus.SCHEDULED, AuctionStatus.OPEN)
    ).exists():
        raise GroupRefused("block_in_auction", "This block is being auctioned.")


@transaction.atomic
def group_offer_create(
    *,
    provider: ProviderProfile,
    by: User,
    group: BuyingGroup,
    block: ServiceBlock,
    price_minor: int,
    deadline: datetime,
    message: str = "",
) -> GroupOffer:
    """A provider offers one of its blocks to a group at a price, open for the group's payers
    until the deadline (before the block starts)."""
    now = timezone.now()
    _provider_manager_required(provider, by)
    if provider.status != ProviderStatus.VERIFIED:
        raise GroupRefused("provider_not_verified", "Only a verified provider makes offers.")
    block = ServiceBlock.objects.select_for_update().get(pk=block.pk)
    if block.provider_id != provider.pk:
        raise GroupRefused("not_your_block", "This block is not yours.")
    _block_free(block, now=now)
    if isinstance(price_minor, bool) or not isinstance(price_minor, int) or price_minor < 1:
        raise GroupRefused("invalid_price", "A price is a positive whole amount in minor units.")
    if not now < deadline <= block.starts_at:
        raise GroupRefused(
            "invalid_deadline", "The deadline is in the future, no later than the block's start."
        )
    if GroupOffer.objects.filter(block=block, status=GroupOfferStatus.OPEN).exists():
        raise GroupRefused("block_offered", "This block is already offered to a group.")
    offer = GroupOffer.objects.create(
        provider=provider,
        group=group,
        block=block,
        price_minor=price_minor,
        currency=group.currency,
        deadline=deadline,
        message=(message or "").strip()[:300],
    )
    audit_log_record(
        action="group_offer.created",
        actor=by,
        organization=provider.organization,
        target=offer,
        data={"group": group.pk, "price_minor": price_minor},
    )
    _notify_later(
        group.organization_id,
        f"{provider.legal_name} offers {group} a block for "
        f"{money_format(price_minor, group.currency)}: payers, accept it before "
        f"{deadline:%Y-%m-%d %H:%M} UTC.",
        "group_detail",
        group.pk,
    )
    return offer


@transaction.atomic
def group_offer_accept(*, offer: GroupOffer, member: GroupMember, by: User) -> OfferStanding:
    """A payer accepts an offer to its group (its pledge counts towards the tipping point)."""
    offer = GroupOffer.objects.select_for_update().get(pk=offer.pk)
    member = GroupMember.objects.select_related("device").get(pk=member.pk)
    if member.group_id != offer.group_id:
        raise GroupRefused("not_a_member", "This member is not in the offer's group.")
    _answerable(member, by)
    if member.status != ACTIVE or member.role != MemberRole.PAYER:
        raise GroupRefused("payer_only", "Only the group's payers accept offers.")
    if offer.status != GroupOfferStatus.OPEN or offer.deadline <= timezone.now():
        raise GroupRefused("offer_closed", "This offer is no longer open.")
    from billing.payments import card_on_file

    if not card_on_file(member.paying_organization):
        raise GroupRefused(
            "payer_card_required",
            "Add a card on file for the paying organization before accepting (Billing → Cards).",
        )
    _, created = GroupOfferAcceptance.objects.get_or_create(offer=offer, member=member)
    if created:
        audit_log_record(
            action="group_offer.accepted",
            actor=by,
            organization=offer.group.organization,
            target=offer,
            data={"member": member.pk},
        )
    return offer_standing(offer)


@transaction.atomic
def group_offer_withdraw(*, offer: GroupOffer, by: User) -> GroupOffer:
    offer = GroupOffer.objects.select_for_update().select_related("provider").get(pk=offer.pk)
    _provider_manager_required(offer.provider, by)
    if offer.status != GroupOfferStatus.OPEN:
        raise GroupRefused("offer_closed", "This offer is no longer open.")
    offer.status = GroupOfferStatus.WITHDRAWN
    offer.decided_at = timezone.now()
    offer.save(update_fields=["status", "decided_at"])
    audit_log_record(
        action="group_offer.withdrawn",
        actor=by,
        organization=offer.provider.organization,
        target=offer,
    )
    return offer


def group_offers_decide(*, now: datetime | None = None) -> int:
    """Decide the open offers whose deadline passed (a periodic job): tipped, a lease for the
    group charged to the payers who accepted; otherwise missed, and nobody is charged.
    Returns how many were decided."""
    now = now or timezone.now()
    due = list(
        GroupOffer.objects.filter(status=GroupOfferStatus.OPEN, deadline__lte=now).values_list(
            "pk", flat=True
        )
    )
    decided = 0
    for pk in due:
        try:
            group_offer_decide(offer_id=pk, now=now)
        except Exception:  # one offer's failure never stops the others
            logger.exception("Offer %s to a group could not be decided", pk)
            continue
        decided += 1
    return decided


@transaction.atomic
def group_offer_decide(*, offer_id: int, now: datetime | None = None) -> GroupOffer:
    from billing.payments import card_on_file

    now = now or timezone.now()
    offer = GroupOffer.objects.select_for_update().select_related("group").get(pk=offer_id)
    if offer.status != GroupOfferStatus.OPEN or offer.deadline > now:
        return offer
    _group_locked(offer.group)  # the pledges read below hold until the lease is made
    block = ServiceBlock.objects.select_for_update().get(pk=offer.block_id)
    standing = offer_standing(offer)
    leased = Lease.objects.filter(block=block).exists()
    offer.decided_at = now
    if standing.tipped and not leased:
        offer.status = GroupOfferStatus.SOLD
        offer.save(update_fields=["status", "decided_at"])
        lease = Lease.objects.create(
            group_offer=offer,
            block=block,
            winner=offer.group.organization,
            price_minor=offer.price_minor,
            currency=offer.currency,
            starts_at=block.starts_at,
            ends_at=block.ends_at,
        )
        accepting = [
            a.member
            for a in offer.acceptances.select_related("member__paying_organization")
            if a.member.status == ACTIVE
            and a.member.role == MemberRole.PAYER
            and card_on_file(a.member.paying_organization)
        ]
        lease_shares_record(lease=lease, accepting=accepting)
        audit_log_record(
            action="lease.created",
            organization=lease.winner,
            target=lease,
            data={"group_offer": offer.pk, "price_minor": lease.price_minor},
        )
        text = f"The offer to {offer.group} tipped: the block is leased to the group."
    else:
        offer.status = GroupOfferStatus.MISSED
        offer.save(update_fields=["status", "decided_at"])
        text = (
            f"The offer to {offer.group} missed its tipping point: nobody is charged."
            if not leased
            else f"The offer to {offer.group} lapsed: the block was leased meanwhile."
        )
    _notify_later(offer.group.organization_id, text, "group_detail", offer.group_id)
    _notify_later(offer.provider.organization_id, text)
    return offer


def _notify_later(organization_id: int, text: str, url_name: str = "", *args) -> None:
    """A live notice to the organization's open pages, after commit."""

    def notify() -> None:
        organization_notify(
            organization_id, text=text, url=reverse(url_name, args=args) if url_name else ""
        )

    transaction.on_commit(notify)
