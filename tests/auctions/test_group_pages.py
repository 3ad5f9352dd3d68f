"""The buying group pages: groups and their members, invitations and pledges, providers' offers
to groups, the seats of a lease, the group's line on the auction page and the seat on the job
form (SPEC §4.4). Through Django's test client: what a signed-in user sees and can do."""

import html
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from auctions.groups import group_offer_create, member_add_phone, member_invite_device
from auctions.live import bidder_handle
from auctions.models import (
    Bid,
    BuyingGroup,
    GroupMember,
    GroupOffer,
    GroupOfferStatus,
    LeaseSeat,
    MemberRole,
    MemberStatus,
)
from auctions.seats import seat_assign
from auctions.services import bid_place
from marketplace.models import OrganizationKind, Role
from segmentation.models import Job
from tests.captures import CAPTURES_DIR
from tests.factories import (
    AuctionFactory,
    ClientDeviceFactory,
    LeaseFactory,
    OrganizationFactory,
    ServiceBlockFactory,
    UserFactory,
    VerifiedProviderFactory,
    buyer,
    buying_group,
    group_joined,
    member_of,
    payer_organization,
)

pytestmark = pytest.mark.django_db

GROUPS = reverse("group_list")
INVITATIONS = reverse("group_invitations")
OFFERS = reverse("group_offer_new")


def _text(response) -> str:
    return html.unescape(response.content.decode())


def _detail(group) -> str:
    return reverse("group_detail", args=[group.pk])


def _seats(lease) -> str:
    return reverse("lease_seats", args=[lease.pk])


def _group_form(paying, **fields) -> dict:
    return {
        "name": "Harbour Cooperative",
        "currency": "USD",
        "description": "Ports sharing night blocks",
        "role": "payer",
        "paying_organization": paying.pk,
        "share_percent": "25",
        "cap": "500.00",
        **fields,
    }


def _acting_for(client, organization):
    session = client.session
    session["organization_id"] = organization.pk
    session.save()
    return client


# --- groups -------------------------------------------------------------------------------------


def test_a_group_created_with_the_form_shows_its_creator_as_paying_admin(login_client):
    user = UserFactory()
    paying = payer_organization(user, name="Port Authority")
    client = login_client(user)

    response = client.post(GROUPS, _group_form(paying))

    group = BuyingGroup.objects.get()
    assert response.status_code == 302 and response["Location"] == _detail(group)
    member = group.members.get()
    assert (member.role, member.share_bps, member.cap_minor, member.is_admin) == (
        MemberRole.PAYER,
        2500,
        50_000,
        True,
    )
    page = _text(client.get(_detail(group)))
    assert "Harbour Cooperative" in page
    assert "25 %, cap 500.00 USD (paid by Port Authority)" in page
    # 25 % of any price (at most 500.00) covers no price alone: others must pledge the rest
    assert "0.00 USD (the payers' pledges cover no price yet" in page
    assert group.organization.slug in page
    listing = _text(client.get(GROUPS))
    assert "Harbour Cooperative" in listing and _detail(group) in listing


def test_a_sponsored_creator_pledges_nothing_and_the_group_has_no_payer(login_client):
    client = login_client(UserFactory())

    response = client.post(
        GROUPS,
        {"name": "Night Owls", "currency": "EUR", "role": "sponsored", "share_percent": "50"},
    )

    group = BuyingGroup.objects.get()
    assert response.status_code == 302
    member = group.members.get()
    assert (member.role, member.share_bps, member.paying_organization) == ("sponsored", None, None)
    assert "0.00 EUR (the payers' pledges cover no price yet" in _text(client.get(_detail(group)))


@pytest.mark.parametrize(
    ("fields", "message", "kept"),
    [
        (
            {"share_percent": "150"},
            "A share is more than 0 and at most 10,000 basis points (100 %).",
            'value="150"',
        ),
        ({"share_percent": "12.345"}, "A share has at most two decimal places", 'value="12.345"'),
        ({"share_percent": "a lot"}, "“a lot” is not a percentage.", 'value="a lot"'),
        ({"cap": "-5"}, "A cap is a positive amount in minor units.", 'value="-5"'),
        ({"cap": "10.001"}, "USD amounts have at most 2 decimal places.", 'value="10.001"'),
        (
            {"share_percent": "", "cap": ""},
            "A payer pledges a share, a cap, or both.",
            'value="Harbour Cooperative"',
        ),
        (
            {"currency": "XYZ"},
            "Select a valid choice. XYZ is not one of the available choices.",
            'value="500.00"',
        ),
        ({"paying_organization": ""}, "Say which organization pays.", 'value="500.00"'),
    ],
)
def test_a_bad_new_group_is_refused_with_the_reason_and_the_typed_values_kept(
    login_client, fields, message, kept
):
    user = UserFactory()
    client = login_client(user)

    response = client.post(GROUPS, _group_form(payer_organization(user), **fields))

    assert response.status_code == 400
    page = _text(response)
    assert message in page
    assert kept in page
    assert 'value="Ports sharing night blocks"' in page
    assert not BuyingGroup.objects.exists()


def test_pledging_the_money_of_an_organization_one_only_belongs_to_is_refused(login_client):
    user = UserFactory()
    other = OrganizationFactory(kind=OrganizationKind.RECIPIENT)
    member_of(other, user=user, role=Role.MEMBER)
    client = login_client(user)

    response = client.post(GROUPS, _group_form(other))

    assert response.status_code == 400
    assert "Select a valid choice." in _text(response)  # not offered: the user only belongs
    assert not BuyingGroup.objects.exists()


# --- invitations --------------------------------------------------------------------------------


def test_an_admin_invites_a_user_a_device_and_a_telephone_number(login_client):
    group, admin, _ = buying_group()
    device = ClientDeviceFactory(
        organization=payer_organization(admin, name="Admin Ports"), name="Gate probe"
    )
    client = login_client(admin)

    for data in (
        {"action": "invite_user", "user-email": "Skipper@Example.com"},
        {"action": "invite_device", "device-device": device.pk},
        {"action": "add_phone", "phone-phone_number": "+44 20 7946 0958"},
    ):
        response = client.post(_detail(group), data)
        assert response.status_code == 302, _text(response)

    page = _text(client.get(_detail(group)))
    assert "skipper@example.com" in page
    assert f"Gate probe ({device.identifier})" in page
    assert "+442079460958" in page
    members = {m.kind: m.status for m in group.members.exclude(user=admin)}
    assert members == {"user": "invited", "device": "invited", "phone": "active"}


@pytest.mark.parametrize(
    ("data", "message", "kept"),
    [
        (
            {"action": "add_phone", "phone-phone_number": "12345"},
            "'12345' is not a telephone number in E.164 form",
            'value="12345"',
        ),
        (
            {"action": "invite_user", "user-email": "not-an-address"},
            "Enter a valid email address.",
            'value="not-an-address"',
        ),
    ],
)
def test_a_bad_invitation_is_refused_with_the_reason_and_the_typed_value_kept(
    login_client, data, message, kept
):
    group, admin, _ = buying_group()

    response = login_client(admin).post(_detail(group), data)

    assert response.status_code == 400
    page = _text(response)
    assert message in page and kept in page
    assert group.members.count() == 1


def test_inviting_a_member_twice_is_refused(login_client):
    group, admin, _ = buying_group()
    client = login_client(admin)
    client.post(_detail(group), {"action": "invite_user", "user-email": "crew@example.com"})

    response = client.post(
        _detail(group), {"action": "invite_user", "user-email": "crew@example.com"}
    )

    assert response.status_code == 400
    assert "crew@example.com is already in the group or invited." in _text(response)


def test_an_invitee_accepts_as_payer_with_a_share_in_percent_and_a_cap_in_major_units(
    login_client,
):
    group, admin, _ = buying_group(cap_minor=50_000)
    invitee = UserFactory(email="mate@example.com")
    paying = payer_organization(invitee, name="Mate Shipping")
    login_client(admin).post(_detail(group), {"action": "invite_user", "user-email": invitee.email})
    member = group.members.get(invited_email=invitee.email)
    client = login_client(invitee)

    listing = _text(client.get(INVITATIONS))
    assert "Harbour Cooperative" in listing and "Mate Shipping" in listing
    response = client.post(
        INVITATIONS,
        {
            "member": member.pk,
            "action": "accept",
            f"m{member.pk}-role": "payer",
            f"m{member.pk}-paying_organization": paying.pk,
            f"m{member.pk}-share_percent": "12.5",
            f"m{member.pk}-cap": "80.25",
        },
    )

    assert response.status_code == 302 and response["Location"] == _detail(group)
    member.refresh_from_db()
    assert (member.status, member.share_bps, member.cap_minor, member.user) == (
        MemberStatus.ACTIVE,
        1250,
        8025,
        invitee,
    )
    page = _text(client.get(_detail(group)))
    assert "12.5 %, cap 80.25 USD (paid by Mate Shipping)" in page
    # 500.00 and 12.5 % of the price (at most 80.25) cover prices up to 571.42
    assert '<dd data-testid="bid-limit">571.42 USD</dd>' in page
    assert "No invitations to answer." in _text(client.get(INVITATIONS))


def test_an_invitee_accepts_as_sponsored_and_another_declines(login_client):
    group, admin, _ = buying_group()
    admin_client = login_client(admin)
    sponsored, declining = UserFactory(), UserFactory()
    for user in (sponsored, declining):
        admin_client.post(_detail(group), {"action": "invite_user", "user-email": user.email})
    first = group.members.get(invited_email=sponsored.email)
    second = group.members.get(invited_email=declining.email)

    accepted = login_client(sponsored).post(
        INVITATIONS, {"member": first.pk, "action": "accept", f"m{first.pk}-role": "sponsored"}
    )
    declined = login_client(declining).post(INVITATIONS, {"member": second.pk, "action": "decline"})

    assert accepted.status_code == 302 and declined.status_code == 302
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, first.role) == (MemberStatus.ACTIVE, MemberRole.SPONSORED)
    assert second.status == MemberStatus.DECLINED
    page = _text(login_client(sponsored).get(_detail(group)))
    assert f"{sponsored.email} (you)" in page
    assert login_client(declining).get(_detail(group)).status_code == 404


def test_an_acceptance_over_the_shares_left_is_refused_with_the_typed_values_kept(login_client):
    group, admin, _ = buying_group(share_bps=9000, cap_minor=None)
    invitee = UserFactory()
    paying = payer_organization(invitee)
    login_client(admin).post(_detail(group), {"action": "invite_user", "user-email": invitee.email})
    member = group.members.get(invited_email=invitee.email)

    response = login_client(invitee).post(
        INVITATIONS,
        {
            "member": member.pk,
            "action": "accept",
            f"m{member.pk}-role": "payer",
            f"m{member.pk}-paying_organization": paying.pk,
            f"m{member.pk}-share_percent": "20",
        },
    )

    assert response.status_code == 400
    page = _text(response)
    assert "The payers' shares would add up to 110 %: at most 100 %." in page
    assert 'value="20"' in page
    member.refresh_from_db()
    assert member.status == MemberStatus.INVITED


def test_a_device_invitation_is_answered_by_a_manager_of_its_organization(login_client):
    group, admin, _ = buying_group()
    devices_org = OrganizationFactory(kind=OrganizationKind.RECIPIENT)
    manager = member_of(devices_org, role=Role.ADMIN)
    device = ClientDeviceFactory(organization=devices_org, name="Crane sensor")
    member = member_invite_device(group=group, by=admin, device=device)
    client = login_client(manager)

    assert f"Your device <strong>Crane sensor ({device.identifier})</strong>" in _text(
        client.get(INVITATIONS)
    )
    response = client.post(
        INVITATIONS, {"member": member.pk, "action": "accept", f"m{member.pk}-role": "sponsored"}
    )

    assert response.status_code == 302
    member.refresh_from_db()
    assert member.status == MemberStatus.ACTIVE


def test_a_member_changes_its_pledge_and_leaves(login_client):
    group, _admin, _ = buying_group()
    member = group_joined(group, role="payer", cap_minor=10_000)
    client = login_client(member.user)
    page = _text(client.get(_detail(group)))
    assert 'name="pledge-cap" value="100.00"' in page

    response = client.post(
        _detail(group),
        {
            "action": "pledge",
            "pledge-role": "payer",
            "pledge-paying_organization": member.paying_organization_id,
            "pledge-share_percent": "",
            "pledge-cap": "250",
        },
    )
    assert response.status_code == 302
    assert "cap 250.00 USD" in _text(client.get(_detail(group)))
    assert '<dd data-testid="bid-limit">750.00 USD</dd>' in _text(client.get(_detail(group)))

    left = client.post(reverse("group_member_remove", args=[group.pk, member.pk]))

    assert left.status_code == 302 and left["Location"] == GROUPS
    member.refresh_from_db()
    assert member.status == MemberStatus.LEFT
    assert client.get(_detail(group)).status_code == 404


def test_an_admin_makes_a_member_admin_and_removes_another(login_client):
    group, admin, _ = buying_group()
    first = group_joined(group, role="sponsored")
    second = group_joined(group, role="sponsored")
    client = login_client(admin)

    client.post(reverse("group_member_admin", args=[group.pk, first.pk]), {"is_admin": "1"})
    client.post(reverse("group_member_remove", args=[group.pk, second.pk]))

    first.refresh_from_db()
    second.refresh_from_db()
    assert first.is_admin and second.status == MemberStatus.LEFT
    # the new admin may invite now
    response = login_client(first.user).post(
        _detail(group), {"action": "invite_user", "user-email": "new@example.com"}
    )
    assert response.status_code == 302


def test_the_last_admin_cannot_leave(login_client):
    group, admin, own = buying_group()
    client = login_client(admin)

    response = client.post(reverse("group_member_remove", args=[group.pk, own.pk]), follow=True)

    assert "Make another member admin before the last one goes." in _text(response)
    own.refresh_from_db()
    assert own.status == MemberStatus.ACTIVE


def test_a_member_who_is_not_admin_cannot_invite_or_remove(login_client):
    group, _admin, own = buying_group()
    member = group_joined(group, role="sponsored")
    client = login_client(member.user)

    page = _text(client.get(_detail(group)))
    assert 'data-testid="invite-user"' not in page
    invite = client.post(
        _detail(group), {"action": "invite_user", "user-email": "friend@example.com"}
    )
    remove = client.post(reverse("group_member_remove", args=[group.pk, own.pk]))
    promote = client.post(
        reverse("group_member_admin", args=[group.pk, member.pk]), {"is_admin": "1"}
    )

    assert (invite.status_code, remove.status_code, promote.status_code) == (403, 403, 403)
    assert group.members.count() == 2


def test_a_stranger_sees_and_acts_on_nothing_of_a_group(login_client):
    group, _admin, own = buying_group()
    invited = group.members.create(
        kind="user", invited_email="someone@example.com", role="sponsored", status="invited"
    )
    offer = _offer(group)
    client = login_client(UserFactory())

    responses = [
        client.get(_detail(group)),
        client.post(_detail(group), {"action": "invite_user", "user-email": "x@example.com"}),
        client.post(reverse("group_member_remove", args=[group.pk, own.pk])),
        client.post(reverse("group_member_admin", args=[group.pk, own.pk]), {"is_admin": "0"}),
        client.post(reverse("group_offer_accept", args=[group.pk, offer.pk])),
        client.post(INVITATIONS, {"member": invited.pk, "action": "decline"}),
    ]

    assert [r.status_code for r in responses] == [404] * len(responses)
    assert "Harbour Cooperative" not in _text(client.get(GROUPS))
    invited.refresh_from_db()
    assert invited.status == MemberStatus.INVITED


# --- offers -------------------------------------------------------------------------------------


def _provider_user(**provider):
    provider = VerifiedProviderFactory(legal_name="Fiber Co Ltd", **provider)
    return provider, member_of(provider.organization)


def _offer(group, *, price_minor=40_000):
    provider, user = _provider_user()
    block = ServiceBlockFactory(provider=provider)
    return group_offer_create(
        provider=provider,
        by=user,
        group=group,
        block=block,
        price_minor=price_minor,
        deadline=block.starts_at - timedelta(hours=1),
    )


def test_a_provider_offers_a_block_a_payer_accepts_and_the_offer_tips(login_client):
    group, admin, _ = buying_group(cap_minor=50_000)
    provider, seller = _provider_user()
    block = ServiceBlockFactory(provider=provider, seats=3)
    AuctionFactory(block=ServiceBlockFactory(provider=provider))  # being auctioned: not offered
    seller_client = login_client(seller)
    form = seller_client.get(OFFERS)
    assert [choice for choice, _ in form.context["form"].fields["block"].choices][1:] == [block.pk]
    deadline = (block.starts_at - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M")

    made = seller_client.post(
        OFFERS,
        {
            "block": block.pk,
            "group": group.organization.slug,
            "price": "400.00",
            "deadline": deadline,
            "message": "Night block for the port",
        },
    )

    assert made.status_code == 302
    offer = GroupOffer.objects.get()
    assert (offer.price_minor, offer.currency, offer.group) == (40_000, "USD", group)
    client = login_client(admin)
    page = _text(client.get(_detail(group)))
    assert "Fiber Co Ltd" in page and "400.00 USD" in page and "Not tipped yet" in page

    accepted = client.post(reverse("group_offer_accept", args=[group.pk, offer.pk]), follow=True)

    page = _text(accepted)
    assert "You accepted the offer: it has tipped (the pledges cover 400.00 USD)." in page
    assert '<td data-testid="offer-standing">Tipped</td>' in page
    assert "You accepted" in page
    assert "1 payer accepted: tipped" in _text(seller_client.get(OFFERS))


def test_an_offer_below_the_pledges_does_not_tip_until_enough_payers_accept(login_client):
    group, admin, _ = buying_group(cap_minor=10_000)
    offer = _offer(group, price_minor=40_000)

    page = _text(
        login_client(admin).post(
            reverse("group_offer_accept", args=[group.pk, offer.pk]), follow=True
        )
    )

    assert "100.00 USD of 400.00 USD pledged so far." in page
    assert '<td data-testid="offer-standing">Not tipped yet</td>' in page


def test_a_sponsored_member_has_no_accept_button_and_cannot_accept(login_client):
    group, _admin, _ = buying_group()
    member = group_joined(group, role="sponsored")
    offer = _offer(group)
    client = login_client(member.user)
    accept_url = reverse("group_offer_accept", args=[group.pk, offer.pk])

    assert accept_url not in _text(client.get(_detail(group)))
    response = client.post(accept_url, follow=True)

    assert "Only the group's payers accept offers." in _text(response)
    assert not offer.acceptances.exists()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"group": "no-such-group"}, "No buying group has the handle “no-such-group”."),
        ({"price": "ten"}, "“ten” is not an amount."),
        ({"price": "0"}, "A price is a positive whole amount in minor units."),
        ("late", "The deadline is in the future, no later than the block's start."),
    ],
)
def test_a_bad_offer_is_refused_with_the_reason_and_the_typed_values_kept(
    login_client, fields, message
):
    group, _admin, _ = buying_group()
    provider, seller = _provider_user()
    block = ServiceBlockFactory(provider=provider)
    data = {
        "block": block.pk,
        "group": group.organization.slug,
        "price": "400.00",
        "deadline": (block.starts_at - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M"),
        "message": "Keep me",
    }
    if fields == "late":
        data["deadline"] = (block.starts_at + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M")
    else:
        data.update(fields)

    response = login_client(seller).post(OFFERS, data)

    assert response.status_code == 400
    page = _text(response)
    assert message in page
    assert 'value="Keep me"' in page
    assert not GroupOffer.objects.exists()


def test_only_a_verified_providers_managers_offer_and_withdraw_their_own_offers(login_client):
    group, admin, _ = buying_group()
    offer = _offer(group)
    _other, other_seller = _provider_user()

    assert login_client(admin).get(OFFERS).status_code == 403
    assert "Act for a provider organization" in _text(login_client(admin).get(OFFERS))
    withdraw = reverse("group_offer_withdraw", args=[offer.pk])
    assert login_client(other_seller).post(withdraw).status_code == 404
    offer.refresh_from_db()
    assert offer.status == GroupOfferStatus.OPEN

    owner = offer.provider.organization.memberships.get().user
    response = login_client(owner).post(withdraw, follow=True)

    offer.refresh_from_db()
    assert offer.status == GroupOfferStatus.WITHDRAWN
    assert "Your offer to Harbour Cooperative is withdrawn." in _text(response)


# --- seats --------------------------------------------------------------------------------------


def _group_lease(group, *, seats=2):
    return LeaseFactory(winner=group.organization, block__seats=seats)


def test_seats_are_assigned_up_to_the_blocks_seat_count_and_a_release_frees_one(login_client):
    group, admin, _ = buying_group()
    sponsored = group_joined(group, role="sponsored")
    member_add_phone(group=group, by=admin, phone_number="+14155550123")
    lease = _group_lease(group, seats=2)
    client = login_client(admin)

    for data in (
        {"kind": "user", "email": admin.email},
        {"kind": "user", "email": sponsored.user.email},
    ):
        assert client.post(_seats(lease), data).status_code == 302

    full = client.post(_seats(lease), {"kind": "phone", "phone_number": "+14155550123"})

    assert full.status_code == 400
    page = _text(full)
    assert "All 2 seats of this lease are taken: release one first." in page
    assert 'value="+14155550123"' in page
    assert "2 of 2</strong> seats taken, 0 free." in page

    seat = LeaseSeat.objects.get(user=sponsored.user)
    released = client.post(reverse("lease_seat_release", args=[lease.pk, seat.pk]), follow=True)
    page = _text(released)
    assert f"The seat of {sponsored.user.email} is free again." in page
    assert "1 of 2</strong> seats taken, 1 free." in page
    assert [row["seat"].label for row in released.context["seats"]] == [admin.email]

    again = client.post(_seats(lease), {"kind": "phone", "phone_number": "+1 415 555 0123"})
    assert again.status_code == 302
    assert "+14155550123" in _text(client.get(_seats(lease)))
    group_page = _text(client.get(_detail(group)))
    assert _seats(lease) in group_page and "2 of 2 seats" in group_page


def test_a_seat_for_someone_outside_the_group_is_refused_on_its_field(login_client):
    group, admin, _ = buying_group()
    lease = _group_lease(group)
    outsider = UserFactory()

    response = login_client(admin).post(_seats(lease), {"kind": "user", "email": outsider.email})

    assert response.status_code == 400
    assert response.context["form"].errors["email"] == [
        f"{outsider.email} is not a member of Harbour Cooperative: seats go to its members."
    ]
    assert not LeaseSeat.objects.exists()


def test_a_member_holding_a_seat_sees_it_and_gives_it_up_but_cannot_assign(login_client):
    group, admin, _ = buying_group()
    sponsored = group_joined(group, role="sponsored")
    lease = _group_lease(group)
    seat = seat_assign(lease=lease, by=admin, kind="user", email=sponsored.user.email)
    client = login_client(sponsored.user)

    page = _text(client.get(_seats(lease)))
    assert f"{sponsored.user.email} <strong>(your seat)</strong>" in page
    assert 'data-testid="seat-form"' not in page
    assert client.post(_seats(lease), {"kind": "phone", "phone_number": "+1415"}).status_code == 403

    client.post(reverse("lease_seat_release", args=[lease.pk, seat.pk]))

    seat.refresh_from_db()
    assert seat.released_at is not None


def test_a_seat_holder_of_another_organization_sees_the_seats_page_and_a_stranger_does_not(
    login_client,
):
    group, admin, _ = buying_group()
    devices_org = OrganizationFactory(kind=OrganizationKind.RECIPIENT, name="Crane Co")
    crane_user = member_of(devices_org, role=Role.MEMBER)
    device = ClientDeviceFactory(organization=devices_org, name="Crane sensor")
    member = member_invite_device(group=group, by=admin, device=device)
    member.status = MemberStatus.ACTIVE
    member.role = MemberRole.SPONSORED
    member.save()
    lease = _group_lease(group)
    seat_assign(lease=lease, by=admin, kind="device", device=device)

    seen = login_client(crane_user).get(_seats(lease))
    hidden = login_client(UserFactory()).get(_seats(lease))

    assert seen.status_code == 200
    page = _text(seen)
    assert f"Crane sensor ({device.identifier})" in page
    assert "1 of 2</strong> seats taken" in page
    assert hidden.status_code == 404


def test_the_seat_form_offers_the_groups_device_members(login_client):
    group, admin, _ = buying_group()
    device = ClientDeviceFactory(name="Dock camera")
    member = member_invite_device(group=group, by=admin, device=device)
    GroupMember.objects.filter(pk=member.pk).update(status=MemberStatus.ACTIVE)
    lease = _group_lease(group)
    client = login_client(admin)

    response = client.post(_seats(lease), {"kind": "device", "device": device.pk})

    assert response.status_code == 302
    assert "Dock camera" in _text(client.get(_seats(lease)))


# --- the auction page ---------------------------------------------------------------------------


def test_the_auction_page_shows_a_members_group_leading_then_outbid(login_client):
    group, admin, _ = buying_group()
    sponsored = group_joined(group, role="sponsored")
    auction = AuctionFactory()
    client = login_client(sponsored.user)
    url = reverse("auction_detail", args=[auction.pk])
    # before its first bid the group's line waits, hidden, for the live events
    assert "data-group-pending hidden" in _text(client.get(url))
    bid_place(auction_id=auction.pk, bidder=group.organization, user=admin, amount_minor=1200)

    page = _text(client.get(url))
    assert "data-group-pending hidden" not in page
    handle = bidder_handle(auction.pk, group.organization_id)
    assert f'data-group-handle="{handle}"' in page
    assert "Your group Harbour Cooperative: <strong data-group-standing>leading</strong>" in page

    other, user = buyer()
    bid_place(auction_id=auction.pk, bidder=other, user=user, amount_minor=2000)

    page = _text(client.get(url))
    assert "Your group Harbour Cooperative: <strong data-group-standing>outbid</strong>" in page
    stranger_page = _text(login_client(user).get(url))
    assert "Your group" not in stranger_page


def test_an_admin_acting_as_the_group_bids_with_the_auction_form_within_its_limit(login_client):
    group, admin, _ = buying_group(cap_minor=50_000)
    auction = AuctionFactory()
    client = _acting_for(login_client(admin), group.organization)
    url = reverse("auction_detail", args=[auction.pk])
    assert "Place bid" in _text(client.get(url))

    too_high = client.post(url, {"amount": "600.00", "client_bid_id": "a"})
    assert "600.00 USD is above Harbour Cooperative's limit" in _text(too_high)
    assert 'value="600.00"' in _text(too_high)

    placed = client.post(url, {"amount": "12.00", "client_bid_id": "b"}, follow=True)

    page = _text(placed)
    assert "Your bid is in. You are leading at 12.00 USD." in page
    assert "Your group Harbour Cooperative: <strong data-group-standing>leading</strong>" in page
    assert Bid.objects.get().bidder == group.organization


def test_a_sponsored_member_acting_as_the_group_is_told_only_admins_bid(login_client):
    group, _admin, _ = buying_group()
    sponsored = group_joined(group, role="sponsored")
    auction = AuctionFactory()
    client = _acting_for(login_client(sponsored.user), group.organization)

    response = client.post(
        reverse("auction_detail", args=[auction.pk]), {"amount": "12.00", "client_bid_id": "c"}
    )

    assert "Only the admins of Harbour Cooperative place its bids." in _text(response)
    assert not Bid.objects.exists()


# --- the job form -------------------------------------------------------------------------------

CAPTURE = CAPTURES_DIR / "tls.pcap"


def _job_post(client, lease, **fields):
    data = {"lease": lease.pk, "method": "packet-count", "param": "10", "pipeline": "", **fields}
    data["capture"] = SimpleUploadedFile("capture.pcap", CAPTURE.read_bytes())
    return client.post(reverse("job_new"), data)


def test_a_seat_holder_of_another_organization_runs_a_job_under_its_seat(login_client):
    group, admin, _ = buying_group()
    sponsored = group_joined(group, role="sponsored")
    own_org = payer_organization(sponsored.user, name="Skipper Ltd")
    lease = _group_lease(group)
    seat = seat_assign(lease=lease, by=admin, kind="user", email=sponsored.user.email)
    client = _acting_for(login_client(sponsored.user), own_org)

    form = client.get(reverse("job_new")).context["form"]
    assert lease.pk in [choice for choice, _ in form.fields["lease"].widget.choices]
    assert (seat.pk, f"Lease {lease.pk}: seat of {sponsored.user.email}") in form.fields[
        "seat"
    ].choices

    response = _job_post(client, lease, seat=seat.pk)

    assert response.status_code == 302, _text(response)
    job = Job.objects.get()
    assert (job.organization, job.lease, job.seat) == (own_org, lease, seat)


def test_a_leaseholder_without_a_seat_is_told_the_lease_is_shared_by_seats(login_client):
    group, admin, _ = buying_group()
    sponsored = group_joined(group, role="sponsored")
    lease = _group_lease(group)
    seat_assign(lease=lease, by=admin, kind="user", email=sponsored.user.email)
    client = _acting_for(login_client(admin), group.organization)

    response = _job_post(client, lease)

    assert response.status_code == 400
    assert "This lease is shared by seats: run the job under a seat you hold" in _text(response)
    assert not Job.objects.filter(status="queued").exists()


def test_the_pages_ask_an_anonymous_visitor_to_log_in(client):
    group, _admin, _ = buying_group()
    lease = _group_lease(group)
    for url in (GROUPS, INVITATIONS, OFFERS, _detail(group), _seats(lease)):
        response = client.get(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]
