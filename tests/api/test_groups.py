"""Buying groups through the partner API: groups, members and pledges, invitations, providers'
offers to groups, and a group's bids through the bids API. A caller sees only its own groups:
another group's objects are 404s to read and to change."""

from datetime import timedelta

import pytest
from rest_framework.test import APIClient

from auctions.groups import group_offer_decide, member_invite_device, member_invite_user
from auctions.models import (
    BuyingGroup,
    GroupMember,
    GroupOffer,
    GroupOfferAcceptance,
    GroupOfferStatus,
    Lease,
    MemberStatus,
)
from marketplace.models import ApiKeyScope, Membership, Role
from marketplace.services import api_key_create
from tests.api.helpers import assert_problem
from tests.factories import (
    AuctionFactory,
    ClientDeviceFactory,
    OrganizationFactory,
    ServiceBlockFactory,
    UserFactory,
    buying_group,
    group_joined,
    member_of,
    payer_organization,
)

pytestmark = pytest.mark.django_db

GROUPS = "/api/v1/groups/"
INVITATIONS = "/api/v1/group-invitations/"
PROVIDER_OFFERS = "/api/v1/group-offers/"


def group_url(group) -> str:
    return f"{GROUPS}{group.pk}/"


def members_url(group) -> str:
    return f"{GROUPS}{group.pk}/members/"


def member_url(group, member) -> str:
    return f"{members_url(group)}{member.pk}/"


def offers_url(group) -> str:
    return f"{GROUPS}{group.pk}/offers/"


def signed_in(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def group_key_client(group, user, *, scope=ApiKeyScope.WRITE) -> APIClient:
    """A client with an API key of the group's organization, created by `user` (an admin)."""
    _, key = api_key_create(
        organization=group.organization, name="group key", scope=scope, created_by=user
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def post(client, url, data=None, *, key=None):
    headers = {"Idempotency-Key": key} if key else {}
    return client.post(url, data or {}, format="json", headers=headers)


@pytest.fixture
def harbour():
    """Group A: its admin is a payer with a cap of 500.00 USD."""
    group, admin, member = buying_group(name="Harbour Cooperative")
    return {"group": group, "admin": admin, "member": member}


@pytest.fixture
def inland():
    """Group B, unrelated to group A."""
    group, admin, member = buying_group(name="Inland Collective")
    return {"group": group, "admin": admin, "member": member}


@pytest.fixture
def admin_client(harbour) -> APIClient:
    return signed_in(harbour["admin"])


@pytest.fixture
def payer(harbour):
    """A second payer of group A: a share of 30 % and a cap of 200.00 USD."""
    return group_joined(harbour["group"], share_bps=3000, cap_minor=20_000)


@pytest.fixture
def outsider() -> APIClient:
    """A signed-in user of an unrelated buyer organization."""
    organization = OrganizationFactory()
    return signed_in(member_of(organization))


def open_offer(group, provider, *, price_minor=30_000) -> GroupOffer:
    block = ServiceBlockFactory(provider=provider)
    return GroupOffer.objects.create(
        provider=provider,
        group=group,
        block=block,
        price_minor=price_minor,
        currency=group.currency,
        deadline=block.starts_at - timedelta(hours=1),
    )


# --- groups ------------------------------------------------------------------------------------


def test_user_creates_a_group_and_is_its_first_admin_and_payer():
    user = UserFactory()
    paying = payer_organization(user)

    response = post(
        signed_in(user),
        GROUPS,
        {
            "name": "Harbour Cooperative",
            "currency": "USD",
            "description": "Port authorities",
            "role": "payer",
            "paying_organization": paying.pk,
            "share_bps": 4000,
            "cap_minor": 50_000,
        },
    )

    assert response.status_code == 201, response.content
    body = response.json()
    group = BuyingGroup.objects.get(pk=body["id"])
    member = group.members.get()
    assert body == {
        "id": group.pk,
        "name": "Harbour Cooperative",
        "slug": group.organization.slug,
        "currency": "USD",
        "description": "Port authorities",
        # 40 % of any price, at most 500.00, covers no price alone: others must pledge the rest
        "bid_limit_minor": 0,
        "members_count": 1,
        "my_member": member.pk,
        "is_admin": True,
        "created_at": body["created_at"],
    }
    assert (member.user, member.paying_organization, member.share_bps) == (user, paying, 4000)
    assert group.organization.kind == "group"


def test_list_shows_only_the_callers_groups(admin_client, harbour, inland):
    response = admin_client.get(GROUPS)

    assert response.status_code == 200
    assert [group["id"] for group in response.json()["results"]] == [harbour["group"].pk]


def test_group_shows_no_bid_limit_when_payers_pledged_100_percent_without_caps():
    group, admin, member = buying_group(share_bps=5000, cap_minor=None)
    group_joined(group, share_bps=5000)

    body = signed_in(admin).get(group_url(group)).json()

    assert body["bid_limit_minor"] is None
    assert (body["my_member"], body["is_admin"]) == (member.pk, True)


def test_group_bid_limit_is_the_sum_of_its_payers_caps(admin_client, harbour, payer):
    body = admin_client.get(group_url(harbour["group"])).json()

    assert body["bid_limit_minor"] == 50_000 + 20_000
    assert body["members_count"] == 2


def test_a_key_of_the_groups_organization_sees_the_group(harbour):
    client = group_key_client(harbour["group"], harbour["admin"], scope=ApiKeyScope.READ)

    response = client.get(GROUPS)

    assert [group["slug"] for group in response.json()["results"]] == [
        harbour["group"].organization.slug
    ]


def test_group_with_an_unknown_currency_is_400(admin_client, harbour):
    paying = harbour["member"].paying_organization

    response = post(
        admin_client,
        GROUPS,
        {"name": "G", "currency": "XYZ", "paying_organization": paying.pk, "cap_minor": 1},
    )

    body = assert_problem(response, status=400, code="validation_failed")
    assert "currency" in body["errors"]


def test_group_with_a_negative_cap_is_422_invalid_pledge(admin_client, harbour):
    paying = harbour["member"].paying_organization

    response = post(
        admin_client,
        GROUPS,
        {"name": "G", "currency": "USD", "paying_organization": paying.pk, "cap_minor": -100},
    )

    body = assert_problem(response, status=422, code="invalid_pledge")
    assert "cap" in body["detail"]
    assert BuyingGroup.objects.count() == 1


def test_group_with_a_share_over_100_percent_is_422_invalid_pledge(admin_client, harbour):
    paying = harbour["member"].paying_organization

    response = post(
        admin_client,
        GROUPS,
        {"name": "G", "currency": "USD", "paying_organization": paying.pk, "share_bps": 12_000},
    )

    assert_problem(response, status=422, code="invalid_pledge")


def test_amounts_sent_as_strings_are_400(admin_client, harbour):
    paying = harbour["member"].paying_organization

    response = post(
        admin_client,
        GROUPS,
        {"name": "G", "currency": "USD", "paying_organization": paying.pk, "cap_minor": "100"},
    )

    body = assert_problem(response, status=400, code="validation_failed")
    assert "cap_minor" in body["errors"]


def test_pledging_another_organizations_money_is_422_without_naming_it(admin_client):
    stranger = OrganizationFactory(name="Secret Shipping Ltd")

    response = post(
        admin_client,
        GROUPS,
        {"name": "G", "currency": "USD", "paying_organization": stranger.pk, "cap_minor": 100},
    )

    body = assert_problem(response, status=422, code="paying_organization_invalid")
    assert "Secret Shipping" not in response.content.decode()
    assert str(stranger.pk) in body["detail"]


def test_creating_a_group_twice_with_one_idempotency_key_creates_it_once(harbour):
    user = harbour["admin"]
    data = {
        "name": "Second",
        "currency": "EUR",
        "paying_organization": harbour["member"].paying_organization.pk,
        "cap_minor": 1000,
    }
    client = signed_in(user)

    first = post(client, GROUPS, data, key="new-group-1")
    second = post(client, GROUPS, data, key="new-group-1")

    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second["Idempotent-Replayed"] == "true"
    assert BuyingGroup.objects.filter(organization__name="Second").count() == 1


# --- members -----------------------------------------------------------------------------------


def test_members_list_shows_members_and_invitations_with_their_pledges(
    admin_client, harbour, payer
):
    invited = member_invite_user(group=harbour["group"], by=harbour["admin"], email="x@y.example")

    response = admin_client.get(members_url(harbour["group"]))

    assert response.status_code == 200
    rows = {row["id"]: row for row in response.json()["results"]}
    assert set(rows) == {harbour["member"].pk, payer.pk, invited.pk}
    mine = rows[harbour["member"].pk]
    assert (mine["role"], mine["cap_minor"], mine["is_admin"], mine["you"]) == (
        "payer",
        50_000,
        True,
        True,
    )
    assert mine["paying_organization"]["id"] == harbour["member"].paying_organization_id
    assert (rows[payer.pk]["share_bps"], rows[payer.pk]["you"]) == (3000, False)
    assert (rows[invited.pk]["status"], rows[invited.pk]["label"]) == ("invited", "x@y.example")


def test_admin_invites_a_user_by_email(admin_client, harbour):
    response = post(
        admin_client, members_url(harbour["group"]), {"kind": "user", "email": "Ana@Port.example"}
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["kind"], body["status"], body["label"]) == ("user", "invited", "ana@port.example")
    assert GroupMember.objects.get(pk=body["id"]).group == harbour["group"]


def test_admin_adds_a_telephone_number_sponsored_at_once(admin_client, harbour):
    response = post(
        admin_client,
        members_url(harbour["group"]),
        {"kind": "phone", "phone_number": "+1 (415) 555-0123"},
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["kind"], body["status"], body["role"], body["label"]) == (
        "phone",
        "active",
        "sponsored",
        "+14155550123",
    )


def test_invalid_telephone_number_is_422_with_the_reason(admin_client, harbour):
    response = post(
        admin_client, members_url(harbour["group"]), {"kind": "phone", "phone_number": "12345"}
    )

    body = assert_problem(response, status=422, code="invalid_phone_number")
    assert body["detail"].startswith("'12345' is not a telephone number in E.164 form")
    assert not harbour["group"].members.filter(kind="phone").exists()


def test_invalid_email_is_422(admin_client, harbour):
    response = post(admin_client, members_url(harbour["group"]), {"kind": "user", "email": "ana@"})

    assert_problem(response, status=422, code="invalid_email")


def test_invitation_without_the_field_of_its_kind_is_400(admin_client, harbour):
    response = post(
        admin_client, members_url(harbour["group"]), {"kind": "user", "phone_number": "+1415"}
    )

    body = assert_problem(response, status=400, code="validation_failed")
    assert set(body["errors"]) == {"email", "phone_number"}


def test_inviting_someone_twice_is_409_already_member(admin_client, harbour, payer):
    response = post(
        admin_client, members_url(harbour["group"]), {"kind": "user", "email": payer.user.email}
    )

    assert_problem(response, status=409, code="already_member")


def test_admin_invites_a_device_of_a_members_organization(admin_client, harbour):
    device = ClientDeviceFactory(organization=harbour["member"].paying_organization)

    response = post(
        admin_client, members_url(harbour["group"]), {"kind": "device", "device": device.pk}
    )

    assert response.status_code == 201, response.content
    assert (response.json()["kind"], response.json()["status"]) == ("device", "invited")


def test_a_device_of_an_unrelated_organization_is_404_and_not_named(admin_client, harbour):
    device = ClientDeviceFactory(name="Hidden probe")

    response = post(
        admin_client, members_url(harbour["group"]), {"kind": "device", "device": device.pk}
    )

    assert_problem(response, status=404, code="device_not_found")
    assert "Hidden probe" not in response.content.decode()
    assert not GroupMember.objects.filter(device=device).exists()


def test_a_member_who_is_not_admin_cannot_invite(harbour, payer):
    response = post(
        signed_in(payer.user),
        members_url(harbour["group"]),
        {"kind": "user", "email": "z@z.example"},
    )

    assert_problem(response, status=403, code="group_admin_only")


def test_member_changes_own_pledge(harbour, payer):
    response = signed_in(payer.user).patch(
        member_url(harbour["group"], payer), {"share_bps": 2500}, format="json"
    )

    assert response.status_code == 200, response.content
    payer.refresh_from_db()
    assert (payer.share_bps, payer.cap_minor) == (2500, 20_000)
    assert response.json()["share_bps"] == 2500


def test_member_becomes_sponsored(harbour, payer):
    response = signed_in(payer.user).patch(
        member_url(harbour["group"], payer), {"role": "sponsored"}, format="json"
    )

    assert response.status_code == 200, response.content
    assert response.json()["role"] == "sponsored"
    assert response.json()["paying_organization"] is None


def test_pledge_over_the_remaining_share_is_422_shares_over_100(harbour, payer):
    other = group_joined(harbour["group"], share_bps=6000, cap_minor=None)

    response = signed_in(payer.user).patch(
        member_url(harbour["group"], payer), {"share_bps": 5000}, format="json"
    )

    body = assert_problem(response, status=422, code="shares_over_100")
    assert "110 %" in body["detail"]
    payer.refresh_from_db()
    assert payer.share_bps == 3000
    assert other.share_bps == 6000


def test_changing_another_members_pledge_is_403_not_yours(admin_client, harbour, payer):
    response = admin_client.patch(
        member_url(harbour["group"], payer), {"cap_minor": 1}, format="json"
    )

    assert_problem(response, status=403, code="not_yours")
    payer.refresh_from_db()
    assert payer.cap_minor == 20_000


def test_admin_removes_a_member(admin_client, harbour, payer):
    response = admin_client.delete(member_url(harbour["group"], payer))

    assert response.status_code == 204
    payer.refresh_from_db()
    assert payer.status == MemberStatus.LEFT
    assert not Membership.objects.filter(
        user=payer.user, organization=harbour["group"].organization
    )


def test_member_leaves(harbour, payer):
    response = signed_in(payer.user).delete(member_url(harbour["group"], payer))

    assert response.status_code == 204
    assert signed_in(payer.user).get(group_url(harbour["group"])).status_code == 404


def test_member_cannot_remove_another(harbour, payer):
    response = signed_in(payer.user).delete(member_url(harbour["group"], harbour["member"]))

    assert_problem(response, status=403, code="group_admin_only")


def test_the_last_admin_cannot_leave(admin_client, harbour):
    response = admin_client.delete(member_url(harbour["group"], harbour["member"]))

    assert_problem(response, status=409, code="last_admin")


def test_admin_makes_a_member_admin(admin_client, harbour, payer):
    response = post(admin_client, f"{member_url(harbour['group'], payer)}admin", {"is_admin": True})

    assert response.status_code == 200, response.content
    assert response.json()["is_admin"] is True
    assert (
        Membership.objects.get(user=payer.user, organization=harbour["group"].organization).role
        == Role.ADMIN
    )


def test_a_member_cannot_make_itself_admin(harbour, payer):
    response = post(
        signed_in(payer.user), f"{member_url(harbour['group'], payer)}admin", {"is_admin": True}
    )

    assert_problem(response, status=403, code="group_admin_only")


def test_inviting_twice_with_one_idempotency_key_invites_once(admin_client, harbour):
    data = {"kind": "user", "email": "once@port.example"}

    first = post(admin_client, members_url(harbour["group"]), data, key="invite-1")
    second = post(admin_client, members_url(harbour["group"]), data, key="invite-1")

    assert first.status_code == second.status_code == 201
    assert second["Idempotent-Replayed"] == "true"
    assert harbour["group"].members.filter(invited_email="once@port.example").count() == 1


# --- invitations -------------------------------------------------------------------------------


@pytest.fixture
def invitee(harbour):
    user = UserFactory()
    member = member_invite_user(group=harbour["group"], by=harbour["admin"], email=user.email)
    return {"user": user, "member": member, "paying": payer_organization(user)}


def test_invitee_lists_and_accepts_as_a_payer(harbour, invitee):
    client = signed_in(invitee["user"])

    listed = client.get(INVITATIONS).json()["results"]
    response = post(
        client,
        f"{INVITATIONS}{invitee['member'].pk}/accept",
        {"role": "payer", "paying_organization": invitee["paying"].pk, "cap_minor": 10_000},
    )

    assert [row["id"] for row in listed] == [invitee["member"].pk]
    assert listed[0]["group"]["slug"] == harbour["group"].organization.slug
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["status"], body["role"], body["cap_minor"], body["you"]) == (
        "active",
        "payer",
        10_000,
        True,
    )
    assert client.get(group_url(harbour["group"])).json()["bid_limit_minor"] == 60_000
    assert client.get(INVITATIONS).json()["results"] == []


def test_invitee_accepts_as_sponsored(invitee):
    response = post(
        signed_in(invitee["user"]),
        f"{INVITATIONS}{invitee['member'].pk}/accept",
        {"role": "sponsored"},
    )

    assert response.status_code == 200, response.content
    assert (response.json()["role"], response.json()["paying_organization"]) == ("sponsored", None)


def test_accepting_with_shares_over_100_percent_is_422(harbour, invitee):
    group_joined(harbour["group"], share_bps=7000, cap_minor=None)

    response = post(
        signed_in(invitee["user"]),
        f"{INVITATIONS}{invitee['member'].pk}/accept",
        {"role": "payer", "paying_organization": invitee["paying"].pk, "share_bps": 4000},
    )

    assert_problem(response, status=422, code="shares_over_100")
    invitee["member"].refresh_from_db()
    assert invitee["member"].status == MemberStatus.INVITED


def test_invitee_declines(invitee):
    response = post(signed_in(invitee["user"]), f"{INVITATIONS}{invitee['member'].pk}/decline")

    assert response.status_code == 200, response.content
    assert response.json()["status"] == "declined"


def test_someone_elses_invitation_is_404(invitee, outsider):
    response = post(outsider, f"{INVITATIONS}{invitee['member'].pk}/accept", {"role": "sponsored"})

    assert_problem(response, status=404, code="invitation_not_found")
    assert outsider.get(INVITATIONS).json()["results"] == []
    invitee["member"].refresh_from_db()
    assert invitee["member"].status == MemberStatus.INVITED


def test_accepting_twice_with_one_idempotency_key_replays_the_first_answer(invitee):
    client = signed_in(invitee["user"])
    url = f"{INVITATIONS}{invitee['member'].pk}/accept"

    first = post(client, url, {"role": "sponsored"}, key="accept-1")
    second = post(client, url, {"role": "sponsored"}, key="accept-1")
    without_key = post(client, url, {"role": "sponsored"})

    assert first.status_code == second.status_code == 200
    assert second.json() == first.json()
    assert second["Idempotent-Replayed"] == "true"
    assert_problem(without_key, status=404, code="invitation_not_found")


def test_manager_of_a_device_answers_its_invitation(harbour):
    owner = UserFactory()
    device_org = payer_organization(owner)
    device = ClientDeviceFactory(organization=device_org)
    member = member_invite_device(group=harbour["group"], by=harbour["admin"], device=device)
    client = signed_in(owner)

    listed = client.get(INVITATIONS).json()["results"]
    response = post(client, f"{INVITATIONS}{member.pk}/accept", {"role": "sponsored"})

    assert [(row["id"], row["kind"]) for row in listed] == [(member.pk, "device")]
    assert response.status_code == 200, response.content
    assert (response.json()["kind"], response.json()["status"]) == ("device", "active")


# --- offers to groups --------------------------------------------------------------------------


def test_provider_offers_a_block_to_a_group_by_slug(client_a, provider_a, harbour):
    block = ServiceBlockFactory(provider=provider_a)
    deadline = block.starts_at - timedelta(hours=2)

    response = post(
        client_a,
        PROVIDER_OFFERS,
        {
            "group": harbour["group"].organization.slug,
            "block": block.pk,
            "price_minor": 40_000,
            "deadline": deadline.isoformat(),
            "message": "Winter survey",
        },
    )

    assert response.status_code == 201, response.content
    body = response.json()
    offer = GroupOffer.objects.get(pk=body["id"])
    assert (offer.group, offer.block, offer.currency) == (harbour["group"], block, "USD")
    assert body["group"]["slug"] == harbour["group"].organization.slug
    assert (body["status"], body["accepted"], body["tipped"], body["lease"]) == (
        "open",
        0,
        False,
        None,
    )
    assert "pledged_minor" not in body


def test_provider_offers_by_group_id_once_per_idempotency_key(client_a, provider_a, harbour):
    block = ServiceBlockFactory(provider=provider_a)
    data = {
        "group": str(harbour["group"].pk),
        "block": block.pk,
        "price_minor": 40_000,
        "deadline": (block.starts_at - timedelta(hours=2)).isoformat(),
    }

    first = post(client_a, PROVIDER_OFFERS, data, key="offer-1")
    second = post(client_a, PROVIDER_OFFERS, data, key="offer-1")

    assert first.status_code == second.status_code == 201
    assert second["Idempotent-Replayed"] == "true"
    assert GroupOffer.objects.count() == 1


def test_offering_a_block_offered_already_is_409(client_a, provider_a, harbour, inland):
    offer = open_offer(harbour["group"], provider_a)

    response = post(
        client_a,
        PROVIDER_OFFERS,
        {
            "group": inland["group"].organization.slug,
            "block": offer.block_id,
            "price_minor": 1000,
            "deadline": offer.deadline.isoformat(),
        },
    )

    assert_problem(response, status=409, code="block_offered")


def test_offer_with_a_deadline_after_the_block_starts_is_422(client_a, provider_a, harbour):
    block = ServiceBlockFactory(provider=provider_a)

    response = post(
        client_a,
        PROVIDER_OFFERS,
        {
            "group": harbour["group"].organization.slug,
            "block": block.pk,
            "price_minor": 1000,
            "deadline": (block.starts_at + timedelta(hours=1)).isoformat(),
        },
    )

    assert_problem(response, status=422, code="invalid_deadline")


def test_offer_of_another_providers_block_is_404(client_a, provider_b, harbour):
    block = ServiceBlockFactory(provider=provider_b)

    response = post(
        client_a,
        PROVIDER_OFFERS,
        {
            "group": harbour["group"].organization.slug,
            "block": block.pk,
            "price_minor": 1000,
            "deadline": (block.starts_at - timedelta(hours=1)).isoformat(),
        },
    )

    assert_problem(response, status=404, code="block_not_found")
    assert not GroupOffer.objects.exists()


def test_offer_to_an_unknown_group_is_404(client_a, provider_a):
    block = ServiceBlockFactory(provider=provider_a)

    response = post(
        client_a,
        PROVIDER_OFFERS,
        {
            "group": "nobody",
            "block": block.pk,
            "price_minor": 1000,
            "deadline": (block.starts_at - timedelta(hours=1)).isoformat(),
        },
    )

    assert_problem(response, status=404, code="group_not_found")


def test_a_buyer_cannot_make_offers(recipient_org, issue_key, key_client):
    response = key_client(issue_key(recipient_org)).get(PROVIDER_OFFERS)

    assert_problem(response, status=403, code="not_a_provider")


def test_provider_lists_and_withdraws_its_offers(client_a, provider_a, provider_b, harbour):
    own = open_offer(harbour["group"], provider_a)
    open_offer(harbour["group"], provider_b)

    listed = client_a.get(PROVIDER_OFFERS).json()["results"]
    response = post(client_a, f"{PROVIDER_OFFERS}{own.pk}/withdraw")
    again = post(client_a, f"{PROVIDER_OFFERS}{own.pk}/withdraw")

    assert [row["id"] for row in listed] == [own.pk]
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "withdrawn"
    assert_problem(again, status=409, code="offer_closed")


def test_another_providers_offer_is_404_to_read_and_withdraw(client_a, provider_b, harbour):
    theirs = open_offer(harbour["group"], provider_b)

    assert_problem(
        client_a.get(f"{PROVIDER_OFFERS}{theirs.pk}/"), status=404, code="offer_not_found"
    )
    assert_problem(
        post(client_a, f"{PROVIDER_OFFERS}{theirs.pk}/withdraw"), status=404, code="offer_not_found"
    )
    theirs.refresh_from_db()
    assert theirs.status == GroupOfferStatus.OPEN


def test_group_sees_offers_with_their_standing(admin_client, provider_a, harbour, payer):
    offer = open_offer(harbour["group"], provider_a, price_minor=60_000)
    GroupOfferAcceptance.objects.create(offer=offer, member=payer)

    response = admin_client.get(offers_url(harbour["group"]))

    assert response.status_code == 200
    (row,) = response.json()["results"]
    assert row["id"] == offer.pk
    assert row["provider"]["slug"] == provider_a.organization.slug
    # the accepting payer pledged 30 % (at most 200.00): alone it covers no price
    assert row["standing"] == {
        "pledged_minor": 0,
        "price_minor": 60_000,
        "accepted": 1,
        "tipped": False,
    }
    assert row["accepted_by"] == [payer.pk]


def test_payer_accepts_an_offer_as_its_own_member_and_it_tips(
    admin_client, provider_a, harbour, payer
):
    offer = open_offer(harbour["group"], provider_a, price_minor=60_000)
    GroupOfferAcceptance.objects.create(offer=offer, member=payer)

    response = post(admin_client, f"{offers_url(harbour['group'])}{offer.pk}/accept")

    assert response.status_code == 200, response.content
    assert response.json()["standing"] == {
        "pledged_minor": 70_000,
        "price_minor": 60_000,
        "accepted": 2,
        "tipped": True,
    }


def test_a_tipped_offer_becomes_the_groups_lease_at_its_deadline(
    admin_client, client_a, provider_a, harbour
):
    offer = open_offer(harbour["group"], provider_a, price_minor=40_000)
    post(admin_client, f"{offers_url(harbour['group'])}{offer.pk}/accept")
    group_offer_decide(offer_id=offer.pk, now=offer.deadline + timedelta(seconds=1))

    seen_by_group = admin_client.get(f"{offers_url(harbour['group'])}{offer.pk}/").json()
    seen_by_provider = client_a.get(f"{PROVIDER_OFFERS}{offer.pk}/").json()

    lease = Lease.objects.get(group_offer=offer)
    assert lease.winner == harbour["group"].organization
    assert (seen_by_group["status"], seen_by_group["lease"]) == ("sold", lease.pk)
    assert (seen_by_provider["status"], seen_by_provider["lease"]) == ("sold", lease.pk)
    assert admin_client.get(f"/api/v1/leases/{lease.pk}/seats/").status_code == 200


def test_a_sponsored_member_cannot_accept_an_offer(provider_a, harbour):
    sponsored = group_joined(harbour["group"], role="sponsored")
    offer = open_offer(harbour["group"], provider_a)

    response = post(signed_in(sponsored.user), f"{offers_url(harbour['group'])}{offer.pk}/accept")

    assert_problem(response, status=403, code="payer_only")
    assert not offer.acceptances.exists()


def test_accepting_for_another_member_is_403_not_yours(admin_client, provider_a, harbour, payer):
    offer = open_offer(harbour["group"], provider_a)

    response = post(
        admin_client, f"{offers_url(harbour['group'])}{offer.pk}/accept", {"member": payer.pk}
    )

    assert_problem(response, status=403, code="not_yours")


def test_accepting_a_withdrawn_offer_is_409(admin_client, provider_a, harbour):
    offer = open_offer(harbour["group"], provider_a)
    GroupOffer.objects.filter(pk=offer.pk).update(status=GroupOfferStatus.WITHDRAWN)

    response = post(admin_client, f"{offers_url(harbour['group'])}{offer.pk}/accept")

    assert_problem(response, status=409, code="offer_closed")


# --- isolation ---------------------------------------------------------------------------------


def test_an_unrelated_organization_sees_no_group(
    harbour, outsider, recipient_org, issue_key, key_client
):
    assert outsider.get(GROUPS).json()["results"] == []
    assert key_client(issue_key(recipient_org)).get(GROUPS).json()["results"] == []


def test_another_groups_objects_are_404_to_read(harbour, inland, provider_a):
    offer = open_offer(inland["group"], provider_a)
    client = signed_in(harbour["admin"])
    b = inland["group"]

    assert_problem(client.get(group_url(b)), status=404, code="group_not_found")
    assert_problem(client.get(members_url(b)), status=404, code="group_not_found")
    assert_problem(client.get(member_url(b, inland["member"])), status=404, code="group_not_found")
    assert_problem(client.get(offers_url(b)), status=404, code="group_not_found")
    assert_problem(client.get(f"{offers_url(b)}{offer.pk}/"), status=404, code="group_not_found")
    # another group's member or offer under one's own group is no better
    a = harbour["group"]
    assert_problem(client.get(member_url(a, inland["member"])), status=404, code="member_not_found")
    assert_problem(client.get(f"{offers_url(a)}{offer.pk}/"), status=404, code="offer_not_found")


def test_another_groups_objects_are_404_to_change_and_stay_unchanged(harbour, inland, provider_a):
    offer = open_offer(inland["group"], provider_a)
    client = signed_in(harbour["admin"])
    b, their_admin = inland["group"], inland["member"]

    responses = [
        post(client, members_url(b), {"kind": "phone", "phone_number": "+14155550123"}),
        client.patch(member_url(b, their_admin), {"role": "sponsored"}, format="json"),
        client.delete(member_url(b, their_admin)),
        post(client, f"{member_url(b, their_admin)}admin", {"is_admin": False}),
        post(client, f"{offers_url(b)}{offer.pk}/accept"),
        post(client, f"{offers_url(harbour['group'])}{offer.pk}/accept"),
        client.patch(
            member_url(harbour["group"], their_admin), {"role": "sponsored"}, format="json"
        ),
    ]

    for response in responses:
        assert response.status_code == 404, response.content
    their_admin.refresh_from_db()
    assert (their_admin.status, their_admin.role, their_admin.is_admin) == ("active", "payer", True)
    assert b.members.count() == 1
    assert not offer.acceptances.exists()


def test_outsider_cannot_touch_a_group(harbour, outsider):
    group, member = harbour["group"], harbour["member"]

    for response in (
        outsider.get(group_url(group)),
        outsider.get(members_url(group)),
        post(outsider, members_url(group), {"kind": "user", "email": "me@evil.example"}),
        outsider.delete(member_url(group, member)),
    ):
        assert_problem(response, status=404, code="group_not_found")
    assert group.members.count() == 1


def test_anonymous_callers_are_401(harbour):
    response = APIClient().get(GROUPS)

    assert response.status_code == 401


def test_a_read_only_key_cannot_invite(harbour):
    client = group_key_client(harbour["group"], harbour["admin"], scope=ApiKeyScope.READ)

    response = post(client, members_url(harbour["group"]), {"kind": "user", "email": "a@b.example"})

    assert_problem(response, status=403, code="insufficient_scope")


def test_a_groups_key_acts_as_its_creator(harbour):
    client = group_key_client(harbour["group"], harbour["admin"])

    response = post(client, members_url(harbour["group"]), {"kind": "user", "email": "k@b.example"})

    assert response.status_code == 201, response.content
    assert GroupMember.objects.get(pk=response.json()["id"]).invited_by == harbour["admin"]


def test_a_key_whose_creator_left_the_group_can_no_longer_act(harbour, payer):
    admin_client = signed_in(harbour["admin"])
    post(admin_client, f"{member_url(harbour['group'], payer)}admin", {"is_admin": True})
    client = group_key_client(harbour["group"], payer.user)
    signed_in(payer.user).delete(member_url(harbour["group"], payer))

    response = post(client, members_url(harbour["group"]), {"kind": "user", "email": "k@b.example"})

    # leaving the group revoked the keys it made for the group's account
    assert_problem(response, status=401, code="api_key_revoked")


# --- the group bids through the bids API -------------------------------------------------------


def test_group_bids_within_its_limit_with_a_key_of_its_organization(harbour, provider_b):
    auction = AuctionFactory(block__provider=provider_b)
    client = group_key_client(harbour["group"], harbour["admin"])

    response = post(client, f"/api/v1/auctions/{auction.pk}/bids/", {"amount_minor": 40_000})

    assert response.status_code == 201, response.content
    assert auction.bids.get().bidder == harbour["group"].organization


def test_group_bid_above_its_limit_is_422_group_limit(harbour, provider_b):
    auction = AuctionFactory(block__provider=provider_b)
    client = group_key_client(harbour["group"], harbour["admin"])

    response = post(client, f"/api/v1/auctions/{auction.pk}/bids/", {"amount_minor": 60_000})

    body = assert_problem(response, status=422, code="group_limit")
    assert body["limit_minor"] == 50_000
    assert not auction.bids.exists()


def test_group_bid_by_a_key_of_a_member_who_is_not_admin_is_403(harbour, payer, provider_b):
    auction = AuctionFactory(block__provider=provider_b)
    Membership.objects.filter(user=payer.user, organization=harbour["group"].organization).update(
        role=Role.ADMIN
    )
    client = group_key_client(harbour["group"], payer.user)
    Membership.objects.filter(user=payer.user, organization=harbour["group"].organization).update(
        role=Role.MEMBER
    )

    response = post(client, f"/api/v1/auctions/{auction.pk}/bids/", {"amount_minor": 1000})

    assert_problem(response, status=403, code="group_admin_only")


def test_a_key_never_commits_another_organizations_money(harbour):
    # the admin pays from its own organization; it also owns a second one and has its key
    admin = harbour["admin"]
    other = payer_organization(admin)
    _, key = api_key_create(
        organization=other, name="other key", scope=ApiKeyScope.WRITE, created_by=admin
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    member = harbour["member"]

    response = client.patch(
        member_url(harbour["group"], member), {"cap_minor": 10**7}, format="json"
    )

    # the key's organization takes no part in the group: the group is not there for it
    assert response.status_code == 404, response.content
    assert client.get(f"/api/v1/groups/{harbour['group'].pk}/").status_code == 404
    member.refresh_from_db()
    assert member.cap_minor == 50_000
