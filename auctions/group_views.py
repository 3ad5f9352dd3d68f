"""Buying group pages (SPEC §4.4): the user's groups and a new one, the invitations to answer,
one group's page (members, pledges, invitations, bid limit, offers and leases), a provider's
offers to groups, and a lease's seats. Views parse the forms, call one service of
auctions.groups or auctions.seats and show its refusal in the form that caused it. A group the
user does not belong to, another provider's offer and a lease the user has no part in are a
404; an action only a group's (or leaseholder's) admins may take is a 403 for the others."""

from decimal import Decimal

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from auctions.group_forms import (
    AddPhoneForm,
    GroupForm,
    GroupOfferForm,
    InviteDeviceForm,
    InviteUserForm,
    PledgeFields,
    SeatForm,
)
from auctions.groups import (
    GroupRefused,
    bid_limit_of,
    group_create,
    group_of,
    group_offer_accept,
    group_offer_create,
    group_offer_withdraw,
    groups_of,
    invitation_accept,
    invitation_decline,
    invitations_for,
    is_group_admin,
    member_add_phone,
    member_admin_set,
    member_invite_device,
    member_invite_user,
    member_remove,
    members_of,
    offer_standing,
    offers_of_group,
    pledge_update,
)
from auctions.models import (
    Auction,
    AuctionStatus,
    BuyingGroup,
    GroupOffer,
    GroupOfferStatus,
    Lease,
    LeaseSeat,
    MemberKind,
    MemberRole,
    MemberStatus,
    ServiceBlock,
)
from auctions.seats import (
    SeatRefused,
    leases_seated,
    seat_assign,
    seat_holder_exists,
    seat_release,
    seat_usage,
    seats_active,
    seats_held,
    seats_manageable,
)
from marketplace.models import MANAGING_ROLES, ClientDevice, OrganizationKind
from marketplace.money import CURRENCY_EXPONENTS, money_format
from marketplace.selectors import membership_get, memberships_of, user_can_manage
from providers.models import ProviderStatus
from providers.selectors import provider_of

# Which field of a form a service's refusal is about (else the whole form).
_REFUSAL_FIELDS = {
    "invalid_name": "name",
    "invalid_currency": "currency",
    "invalid_role": "role",
    "phone_sponsored": "role",
    "paying_organization_required": "paying_organization",
    "paying_organization_invalid": "paying_organization",
    "shares_over_100": "share_percent",
    "invalid_email": "email",
    "invalid_phone_number": "phone_number",
    "unknown_device": "device",
    "invalid_kind": "kind",
    "not_your_block": "block",
    "block_started": "block",
    "block_leased": "block",
    "block_in_auction": "block",
    "block_offered": "block",
    "invalid_price": "price",
    "invalid_deadline": "deadline",
}
# A seat refused as "not eligible" is about the holder field of its kind.
_SEAT_HOLDER_FIELDS = {
    MemberKind.USER: "email",
    MemberKind.DEVICE: "device",
    MemberKind.PHONE: "phone_number",
}


def _refusal_show(form, refusal: GroupRefused, field: str | None = None) -> None:
    """The service's refusal in the form, on the field it is about."""
    if refusal.code == "group_admin_only":
        raise PermissionDenied(refusal.message)
    field = field or _REFUSAL_FIELDS.get(refusal.code)
    form.add_error(field if field in form.fields else None, refusal.message)


def _major(amount_minor: int, currency: str) -> str:
    """Minor units as the plain number a person types back: 50000 USD -> "500.00"."""
    return f"{Decimal(amount_minor).scaleb(-CURRENCY_EXPONENTS[currency]):f}"


def _percent(share_bps: int) -> str:
    """2500 -> "25", 1250 -> "12.5"."""
    return f"{Decimal(share_bps).scaleb(-2).normalize():f}"


def _pledge_text(member, currency: str) -> str:
    if member.role != MemberRole.PAYER:
        return "—"
    parts = []
    if member.share_bps is not None:
        parts.append(f"{_percent(member.share_bps)} %")
    if member.cap_minor is not None:
        parts.append(f"cap {money_format(member.cap_minor, currency)}")
    text = ", ".join(parts) or "—"
    if member.paying_organization_id:
        text += f" (paid by {member.paying_organization.name})"
    return text


def _limit_text(limit: int | None, currency: str) -> str:
    if limit is None:
        return "no limit"
    if limit == 0:
        return (
            f"{money_format(0, currency)} (the payers' pledges cover no price yet: shares must "
            "reach 100 %, or caps cover the rest)"
        )
    return money_format(limit, currency)


def _paying_organizations(user) -> list:
    """Buyer organizations the user owns or administers: those whose money it may pledge."""
    return [
        membership.organization
        for membership in memberships_of(user=user).filter(
            role__in=MANAGING_ROLES,
            organization__kind__in=(OrganizationKind.RECIPIENT, OrganizationKind.BOTH),
        )
    ]


def _pledge_form(request, data=None, *, currency: str, prefix=None, initial=None) -> PledgeFields:
    return PledgeFields(
        data,
        prefix=prefix,
        initial=initial,
        currency=currency,
        paying_organizations=_paying_organizations(request.user),
    )


# --- the user's groups and invitations ----------------------------------------------------------


@login_required
def group_list(request):
    form = GroupForm(request.POST or None, paying_organizations=_paying_organizations(request.user))
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            try:
                group = group_create(
                    user=request.user,
                    name=form.cleaned_data["name"],
                    currency=form.cleaned_data["currency"],
                    description=form.cleaned_data["description"],
                    **form.pledge(),
                )
            except GroupRefused as refusal:
                _refusal_show(form, refusal)
            else:
                messages.success(
                    request,
                    f"{group} created; you are its admin. Invite its members below.",
                )
                return redirect("group_detail", pk=group.pk)
    groups = [
        {
            "group": group,
            "members": members_of(group, statuses=(MemberStatus.ACTIVE,)).count(),
            "limit": _limit_text(bid_limit_of(group), group.currency),
            "admin": is_group_admin(group, request.user),
        }
        for group in groups_of(request.user)
    ]
    seated = leases_seated(request.user).select_related("block__provider", "winner")
    return render(
        request,
        "auctions/groups/list.html",
        {
            "groups": groups,
            "form": form,
            "invitations": invitations_for(request.user).count(),
            "seated_leases": seated,
        },
        status=status,
    )


@login_required
def group_invitations(request):
    invitations = list(invitations_for(request.user))
    bound = None
    if request.method == "POST":
        invitation = next(
            (i for i in invitations if str(i.pk) == request.POST.get("member", "")), None
        )
        if invitation is None:
            raise Http404("No such invitation of yours.")
        if request.POST.get("action") == "decline":
            try:
                invitation_decline(member=invitation, user=request.user)
            except GroupRefused as refusal:
                messages.error(request, refusal.message)
            else:
                messages.info(request, f"You declined the invitation to {invitation.group}.")
            return redirect("group_invitations")
        form = _pledge_form(
            request, request.POST, currency=invitation.group.currency, prefix=f"m{invitation.pk}"
        )
        if form.is_valid():
            try:
                member = invitation_accept(member=invitation, user=request.user, **form.pledge())
            except GroupRefused as refusal:
                _refusal_show(form, refusal)
            else:
                who = "You" if member.kind == MemberKind.USER else member.label
                messages.success(
                    request,
                    f"{who} joined {member.group} as {member.get_role_display().lower()}.",
                )
                if member.kind == MemberKind.USER:
                    return redirect("group_detail", pk=member.group_id)
                return redirect("group_invitations")
        bound = (invitation.pk, form)
    rows = []
    for invitation in invitations:
        if bound and bound[0] == invitation.pk:
            form = bound[1]
        else:
            form = _pledge_form(
                request, currency=invitation.group.currency, prefix=f"m{invitation.pk}"
            )
        rows.append({"invitation": invitation, "form": form})
    return render(
        request,
        "auctions/groups/invitations.html",
        {"rows": rows},
        status=400 if bound else 200,
    )


# --- one group ----------------------------------------------------------------------------------


def _group_for(request, pk) -> BuyingGroup:
    """A group of the signed-in user; another group is a 404."""
    return get_object_or_404(groups_of(request.user), pk=pk)


def _own_member(group: BuyingGroup, user):
    return (
        group.members.filter(kind=MemberKind.USER, user=user, status=MemberStatus.ACTIVE)
        .select_related("paying_organization")
        .first()
    )


def _devices_invitable(user, group: BuyingGroup):
    """Client devices of the organizations the admin manages (the group's account has none)."""
    return (
        ClientDevice.objects.filter(
            organization__memberships__user=user,
            organization__memberships__role__in=MANAGING_ROLES,
            organization__is_active=True,
        )
        .exclude(organization=group.organization)
        .select_related("organization")
        .order_by("organization__name", "name", "pk")
    )


def _pledge_initial(member, currency: str) -> dict:
    return {
        "role": member.role,
        "paying_organization": member.paying_organization_id,
        "share_percent": _percent(member.share_bps) if member.share_bps is not None else "",
        "cap": _major(member.cap_minor, currency) if member.cap_minor is not None else "",
    }


_ADMIN_ACTIONS = ("invite_user", "invite_device", "add_phone")


@login_required
def group_detail(request, pk):
    group = _group_for(request, pk)
    admin = is_group_admin(group, request.user)
    own = _own_member(group, request.user)
    devices = _devices_invitable(request.user, group) if admin else ClientDevice.objects.none()
    forms = {
        "invite_user": InviteUserForm(prefix="user"),
        "invite_device": InviteDeviceForm(prefix="device", devices=devices),
        "add_phone": AddPhoneForm(prefix="phone"),
        "pledge": _pledge_form(
            request,
            currency=group.currency,
            prefix="pledge",
            initial=_pledge_initial(own, group.currency) if own else None,
        ),
    }
    status = 200
    if request.method == "POST":
        action = request.POST.get("action")
        if action not in forms:
            raise Http404("No such action.")
        if action in _ADMIN_ACTIONS and not admin:
            raise PermissionDenied("Only the group's admins invite members.")
        if action == "pledge" and own is None:
            raise PermissionDenied("Only the group's user members pledge.")
        form = {
            "invite_user": lambda: InviteUserForm(request.POST, prefix="user"),
            "invite_device": lambda: InviteDeviceForm(
                request.POST, prefix="device", devices=devices
            ),
            "add_phone": lambda: AddPhoneForm(request.POST, prefix="phone"),
            "pledge": lambda: _pledge_form(
                request, request.POST, currency=group.currency, prefix="pledge"
            ),
        }[action]()
        forms[action] = form
        status = 400
        if form.is_valid():
            try:
                text = _group_action(request, group, action, form, own, devices)
            except GroupRefused as refusal:
                _refusal_show(form, refusal)
            else:
                messages.success(request, text)
                return redirect("group_detail", pk=group.pk)
    return render(
        request,
        "auctions/groups/detail.html",
        {**_group_context(request, group, admin=admin, own=own), "forms": forms},
        status=status,
    )


def _group_action(request, group, action, form, own, devices) -> str:
    """Call the service of the action; the message to show."""
    data = form.cleaned_data
    if action == "invite_user":
        member = member_invite_user(group=group, by=request.user, email=data["email"])
        return f"Invitation sent to {member.invited_email}."
    if action == "invite_device":
        device = devices.filter(pk=data["device"]).first()
        if device is None:  # removed since the form was shown
            raise GroupRefused("unknown_device", "This device no longer exists.")
        member_invite_device(group=group, by=request.user, device=device)
        return f"{device.name} is invited; a manager of {device.organization} answers for it."
    if action == "add_phone":
        member = member_add_phone(group=group, by=request.user, phone_number=data["phone_number"])
        return f"{member.phone_number} is a sponsored member now."
    member = pledge_update(member=own, by=request.user, **form.pledge())
    return f"Your pledge is saved: {_pledge_text(member, group.currency)}."


def _group_context(request, group: BuyingGroup, *, admin: bool, own) -> dict:
    now = timezone.now()
    members = []
    for member in members_of(group):
        mine = member.kind == MemberKind.USER and member.user_id == request.user.pk
        active_user = member.kind == MemberKind.USER and member.status == MemberStatus.ACTIVE
        members.append(
            {
                "member": member,
                "pledge": _pledge_text(member, group.currency),
                "mine": mine,
                "can_remove": admin and not mine,
                "can_leave": mine,
                "can_set_admin": admin and active_user,
            }
        )
    offers = []
    accepted = set(own.acceptances.values_list("offer_id", flat=True)) if own else set()
    for offer in offers_of_group(group):
        standing = offer_standing(offer)
        is_open = offer.status == GroupOfferStatus.OPEN and offer.deadline > now
        offers.append(
            {
                "offer": offer,
                "standing": standing,
                "pledged": "no limit"
                if standing.pledged_minor is None
                else money_format(standing.pledged_minor, offer.currency),
                "accepted_by_me": offer.pk in accepted,
                "can_accept": (
                    is_open
                    and own is not None
                    and own.role == MemberRole.PAYER
                    and offer.pk not in accepted
                ),
            }
        )
    leases = (
        Lease.objects.filter(winner=group.organization)
        .select_related("block__provider")
        .annotate(seats_taken=Count("seats", filter=Q(seats__released_at__isnull=True)))
        .order_by("-starts_at")
    )
    acting = request.organization is not None and request.organization.pk == group.organization_id
    return {
        "group": group,
        "admin": admin,
        "own": own,
        "members": members,
        "limit": _limit_text(bid_limit_of(group), group.currency),
        "offers": offers,
        "leases": leases,
        "acting_as_group": acting,
        "can_act_as_group": membership_get(user=request.user, organization=group.organization)
        is not None,
    }


@login_required
@require_POST
def group_member_remove(request, pk, member_pk):
    group = _group_for(request, pk)
    member = get_object_or_404(group.members.select_related("user", "device"), pk=member_pk)
    try:
        member_remove(member=member, by=request.user)
    except GroupRefused as refusal:
        if refusal.code == "group_admin_only":
            raise PermissionDenied(refusal.message) from None
        messages.error(request, refusal.message)
        return redirect("group_detail", pk=group.pk)
    if member.kind == MemberKind.USER and member.user_id == request.user.pk:
        messages.info(request, f"You left {group}.")
        if not groups_of(request.user).filter(pk=group.pk).exists():
            return redirect("group_list")
    else:
        messages.info(request, f"{member.label} is no longer in {group}.")
    return redirect("group_detail", pk=group.pk)


@login_required
@require_POST
def group_member_admin(request, pk, member_pk):
    group = _group_for(request, pk)
    member = get_object_or_404(group.members.select_related("user"), pk=member_pk)
    is_admin = request.POST.get("is_admin") == "1"
    try:
        member_admin_set(member=member, by=request.user, is_admin=is_admin)
    except GroupRefused as refusal:
        if refusal.code == "group_admin_only":
            raise PermissionDenied(refusal.message) from None
        messages.error(request, refusal.message)
    else:
        messages.success(
            request,
            f"{member.label} {'is now an admin' if is_admin else 'is no longer an admin'} "
            f"of {group}.",
        )
    return redirect("group_detail", pk=group.pk)


@login_required
@require_POST
def group_offer_accept_view(request, pk, offer_pk):
    group = _group_for(request, pk)
    offer = get_object_or_404(offers_of_group(group), pk=offer_pk)
    own = _own_member(group, request.user)
    if own is None:
        messages.error(request, "Only the group's payers accept offers.")
        return redirect("group_detail", pk=group.pk)
    try:
        standing = group_offer_accept(offer=offer, member=own, by=request.user)
    except GroupRefused as refusal:
        messages.error(request, refusal.message)
    else:
        price = money_format(offer.price_minor, offer.currency)
        if standing.tipped:
            text = f"You accepted the offer: it has tipped (the pledges cover {price})."
        else:
            pledged = money_format(standing.pledged_minor or 0, offer.currency)
            text = f"You accepted the offer: {pledged} of {price} pledged so far."
        messages.success(request, text)
    return redirect("group_detail", pk=group.pk)


# --- a provider's offers to groups --------------------------------------------------------------


def _provider_acting(request):
    """The verified provider the user acts for and may manage; (None, reason) otherwise."""
    provider = provider_of(organization=request.organization)
    if provider is None:
        return None, "Act for a provider organization to offer blocks to buying groups."
    if provider.status != ProviderStatus.VERIFIED:
        return None, f"{provider.legal_name} is not verified yet: only verified providers offer."
    if not user_can_manage(user=request.user, organization=provider.organization):
        return None, f"Only the owners and admins of {provider.legal_name} make offers."
    return provider, ""


def _blocks_offerable(provider, *, now):
    """The provider's blocks that have not started, are not leased, not being auctioned and
    not offered to a group already."""
    return (
        ServiceBlock.objects.filter(provider=provider, starts_at__gt=now)
        .exclude(leases__isnull=False)
        .exclude(
            pk__in=Auction.objects.filter(
                status__in=(AuctionStatus.SCHEDULED, AuctionStatus.OPEN)
            ).values("block_id")
        )
        .exclude(pk__in=GroupOffer.objects.filter(status="open").values("block_id"))
        .order_by("starts_at", "pk")
    )


@login_required
def group_offer_new(request):
    provider, reason = _provider_acting(request)
    if provider is None:
        return render(request, "auctions/groups/offer_new.html", {"refused": reason}, status=403)
    blocks = _blocks_offerable(provider, now=timezone.now())
    groups = BuyingGroup.objects.filter(organization__is_active=True).select_related("organization")
    form = GroupOfferForm(
        request.POST or None,
        initial={"group": request.GET.get("group", "")},
        blocks=blocks,
        groups=groups,
    )
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            block = blocks.filter(pk=form.cleaned_data["block"]).first()
            try:
                if block is None:  # taken since the form was shown
                    raise GroupRefused("block_offered", "This block can no longer be offered.")
                offer = group_offer_create(
                    provider=provider,
                    by=request.user,
                    group=form.cleaned_data["group"],
                    block=block,
                    price_minor=form.cleaned_data["price_minor"],
                    deadline=form.cleaned_data["deadline"],
                    message=form.cleaned_data["message"],
                )
            except GroupRefused as refusal:
                _refusal_show(form, refusal)
            else:
                messages.success(
                    request,
                    f"Offered to {offer.group} for "
                    f"{money_format(offer.price_minor, offer.currency)} "
                    f"until {offer.deadline:%Y-%m-%d %H:%M} UTC.",
                )
                return redirect("group_offer_new")
    offers = [
        {"offer": offer, "standing": offer_standing(offer)}
        for offer in GroupOffer.objects.filter(provider=provider)
        .select_related("group__organization", "block")
        .order_by("-created_at", "-pk")
    ]
    return render(
        request,
        "auctions/groups/offer_new.html",
        {"provider": provider, "form": form, "offers": offers, "has_blocks": blocks.exists()},
        status=status,
    )


@login_required
@require_POST
def group_offer_withdraw_view(request, pk):
    provider, reason = _provider_acting(request)
    if provider is None:
        raise Http404(reason)
    offer = get_object_or_404(GroupOffer.objects.select_related("group"), pk=pk, provider=provider)
    try:
        group_offer_withdraw(offer=offer, by=request.user)
    except GroupRefused as refusal:
        messages.error(request, refusal.message)
    else:
        messages.info(request, f"Your offer to {offer.group} is withdrawn.")
    return redirect("group_offer_new")


# --- seats --------------------------------------------------------------------------------------


def _lease_visible(request, lease: Lease) -> bool:
    """The leaseholder's members and the holders of its seats see its seats."""
    if membership_get(user=request.user, organization=lease.winner) is not None:
        return True
    if LeaseSeat.objects.filter(lease=lease, user=request.user, released_at__isnull=True).exists():
        return True
    organization = request.organization
    return organization is not None and seat_holder_exists(
        lease=lease, user=request.user, organization=organization
    )


def _lease_for(request, pk) -> Lease:
    lease = get_object_or_404(Lease.objects.select_related("block__provider", "winner"), pk=pk)
    if not _lease_visible(request, lease):
        raise Http404("No such lease of yours.")
    return lease


def _seat_devices(lease: Lease):
    """The client devices that may hold a seat: a group's device members, else the
    leaseholder's own devices."""
    group = group_of(lease.winner)
    if group is not None:
        return ClientDevice.objects.filter(
            group_memberships__group=group, group_memberships__status=MemberStatus.ACTIVE
        ).order_by("name", "pk")
    return ClientDevice.objects.filter(organization=lease.winner).order_by("name", "pk")


@login_required
def lease_seats(request, pk):
    lease = _lease_for(request, pk)
    manager = seats_manageable(lease, request.user)
    devices = list(_seat_devices(lease)) if manager else []
    form = SeatForm(request.POST or None, devices=devices) if manager else None
    status = 200
    if request.method == "POST":
        if not manager:
            raise PermissionDenied(f"Only the owners and admins of {lease.winner} assign seats.")
        status = 400
        if form.is_valid():
            kind = form.cleaned_data["kind"]
            try:
                seat = seat_assign(
                    lease=lease,
                    by=request.user,
                    kind=kind,
                    email=form.cleaned_data["email"],
                    device=form.cleaned_data["device"],
                    phone_number=form.cleaned_data["phone_number"],
                )
            except SeatRefused as refusal:
                field = _SEAT_HOLDER_FIELDS.get(kind) if refusal.code == "not_eligible" else None
                _refusal_show(form, refusal, field)
            else:
                messages.success(request, f"A seat is assigned to {seat.label}.")
                return redirect("lease_seats", pk=lease.pk)
    usage = seat_usage(lease)
    active = list(seats_active(lease))
    insider = membership_get(user=request.user, organization=lease.winner) is not None
    if not insider:
        # a holder from outside sees its own seats only, not who else holds the others
        held = set(
            seats_held(user=request.user, organization=request.organization)
            .filter(lease=lease)
            .values_list("pk", flat=True)
        )
        shown = [seat for seat in active if seat.pk in held]
    else:
        shown = active
    seats = [
        {
            "seat": seat,
            "usage": usage.get(seat.pk, {"jobs": 0, "bytes": 0}),
            "can_release": manager
            or (seat.kind == MemberKind.USER and seat.user_id == request.user.pk),
            "mine": seat.kind == MemberKind.USER and seat.user_id == request.user.pk,
        }
        for seat in shown
    ]
    group = group_of(lease.winner)
    return render(
        request,
        "auctions/seats.html",
        {
            "lease": lease,
            "service_block": lease.block,
            "group": group
            if group and groups_of(request.user).filter(pk=group.pk).exists()
            else None,
            "seats": seats,
            "taken": len(active),
            "free": max(lease.block.seats - len(active), 0),
            "manager": manager,
            "form": form,
            "ended": lease.ends_at <= timezone.now(),
        },
        status=status,
    )


@login_required
@require_POST
def lease_seat_release(request, pk, seat_pk):
    lease = _lease_for(request, pk)
    seat = get_object_or_404(
        LeaseSeat.objects.select_related("user", "device"), pk=seat_pk, lease=lease
    )
    try:
        seat_release(seat=seat, by=request.user)
    except SeatRefused as refusal:
        if refusal.code == "not_allowed":
            raise PermissionDenied(refusal.message) from None
        messages.error(request, refusal.message)
    else:
        messages.info(request, f"The seat of {seat.label} is free again.")
    if not _lease_visible(request, lease):  # gave up its own seat on another's lease
        return redirect("group_list")
    return redirect("lease_seats", pk=lease.pk)
