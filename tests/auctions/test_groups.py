"""Buying groups (SPEC §4.4): members and invitations, pledges, telephone numbers, bidding as
one bidder within the payers' caps, and providers' offers to groups decided by a tipping
point before a deadline."""

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from auctions.groups import (
    GroupRefused,
    bid_limit_of,
    group_create,
    group_offer_accept,
    group_offer_create,
    group_offers_decide,
    invitation_accept,
    invitation_decline,
    invitations_for,
    member_add_phone,
    member_admin_set,
    member_invite_device,
    member_invite_user,
    member_remove,
    offer_standing,
    pledge_update,
)
from auctions.models import (
    BuyingGroup,
    GroupOfferStatus,
    Lease,
    LeaseShare,
    MemberRole,
    MemberStatus,
)
from auctions.services import BidRejected, auction_close, bid_place
from marketplace.models import ClientDevice, Membership, OrganizationKind, Role
from tests.factories import (
    AuctionFactory,
    LeaseFactory,
    ServiceBlockFactory,
    UserFactory,
    VerifiedProviderFactory,
    buying_group,
    group_joined,
    member_of,
    payer_organization,
)

pytestmark = pytest.mark.django_db


# --- groups, members, pledges --------------------------------------------------------------------


def test_a_new_group_is_a_bidder_account_whose_creator_is_its_admin_and_first_payer():
    group, admin, member = buying_group(name="Harbour Cooperative", cap_minor=40_000)

    assert group.organization.kind == OrganizationKind.GROUP
    assert Membership.objects.get(user=admin, organization=group.organization).role == Role.OWNER
    assert (member.role, member.status, member.is_admin) == ("payer", "active", True)
    assert bid_limit_of(group) == 40_000


def test_an_invited_user_accepts_as_a_payer_and_the_limit_grows(django_capture_on_commit_callbacks):
    group, admin, _ = buying_group(cap_minor=40_000)
    invitee = UserFactory(email="ines@example.net")
    with django_capture_on_commit_callbacks(execute=True):
        invitation = member_invite_user(group=group, by=admin, email="Ines@Example.net")

    assert mail.outbox[-1].to == ["ines@example.net"]
    assert "/groups/invitations/" in mail.outbox[-1].body
    assert list(invitations_for(invitee)) == [invitation]
    paying = payer_organization(invitee)
    member = invitation_accept(
        member=invitation,
        user=invitee,
        role=MemberRole.PAYER,
        paying_organization=paying,
        share_bps=2_500,
        cap_minor=10_000,
    )

    assert (member.status, member.user, member.paying_organization) == ("active", invitee, paying)
    assert bid_limit_of(group) == 50_000
    assert Membership.objects.get(user=invitee, organization=group.organization).role == Role.MEMBER


def test_a_sponsored_member_pays_nothing_and_adds_nothing_to_the_limit():
    group, _, _ = buying_group(cap_minor=40_000)
    member = group_joined(group, role=MemberRole.SPONSORED)

    assert (member.role, member.paying_organization, member.cap_minor) == ("sponsored", None, None)
    assert bid_limit_of(group) == 40_000


def test_a_payer_who_pledges_a_share_without_a_cap_adds_its_share_of_the_price():
    group, _, _ = buying_group(cap_minor=40_000)
    group_joined(group, share_bps=3_000)

    # 400.00 plus 30 % of the price covers prices up to 571.42
    assert bid_limit_of(group) == 57_142


def test_payers_pledging_shares_of_100_percent_without_caps_have_no_limit():
    group, _, _ = buying_group(share_bps=5_000, cap_minor=None)
    group_joined(group, share_bps=5_000)

    assert bid_limit_of(group) is None


@pytest.mark.parametrize(
    ("pledge", "code"),
    [
        ({"share_bps": None, "cap_minor": None}, "invalid_pledge"),
        ({"share_bps": 0, "cap_minor": None}, "invalid_pledge"),
        ({"share_bps": 10_001, "cap_minor": None}, "invalid_pledge"),
        ({"share_bps": None, "cap_minor": -5}, "invalid_pledge"),
        ({"share_bps": "ten", "cap_minor": None}, "invalid_pledge"),
        ({"share_bps": 8_000, "cap_minor": None}, "shares_over_100"),
    ],
)
def test_bad_pledges_are_refused_and_the_invitation_stays_open(pledge, code):
    group, admin, _ = buying_group(share_bps=5_000, cap_minor=None)
    invitee = UserFactory()
    invitation = member_invite_user(group=group, by=admin, email=invitee.email)

    with pytest.raises(GroupRefused) as refused:
        invitation_accept(
            member=invitation,
            user=invitee,
            role=MemberRole.PAYER,
            paying_organization=payer_organization(invitee),
            **pledge,
        )

    assert refused.value.code == code
    invitation.refresh_from_db()
    assert invitation.status == MemberStatus.INVITED


def test_a_payer_pledges_only_money_of_an_organization_it_manages():
    group, admin, _ = buying_group()
    invitee = UserFactory()
    invitation = member_invite_user(group=group, by=admin, email=invitee.email)
    someone_elses = payer_organization(UserFactory())

    with pytest.raises(GroupRefused) as refused:
        invitation_accept(
            member=invitation,
            user=invitee,
            role=MemberRole.PAYER,
            paying_organization=someone_elses,
            cap_minor=100,
        )
    assert refused.value.code == "paying_organization_invalid"


def test_only_the_invited_user_answers_an_invitation():
    group, admin, _ = buying_group()
    invitation = member_invite_user(group=group, by=admin, email="ines@example.net")
    stranger = UserFactory()

    with pytest.raises(GroupRefused) as refused:
        invitation_accept(member=invitation, user=stranger, role=MemberRole.SPONSORED)
    assert refused.value.code == "not_yours"
    assert list(invitations_for(stranger)) == []


def test_a_declined_invitation_cannot_be_accepted_later():
    group, admin, _ = buying_group()
    invitee = UserFactory()
    invitation = member_invite_user(group=group, by=admin, email=invitee.email)
    invitation_decline(member=invitation, user=invitee)

    with pytest.raises(GroupRefused) as refused:
        invitation_accept(member=invitation, user=invitee, role=MemberRole.SPONSORED)
    assert refused.value.code == "not_invited"


def test_only_admins_invite():
    group, _, _ = buying_group()
    member = group_joined(group, role=MemberRole.SPONSORED)

    with pytest.raises(GroupRefused) as refused:
        member_invite_user(group=group, by=member.user, email="x@example.net")
    assert refused.value.code == "group_admin_only"


@pytest.mark.parametrize(
    ("typed", "stored"),
    [("+1 415 555 0123", "+14155550123"), ("+44 (20) 7946-0958", "+442079460958")],
)
def test_a_telephone_number_joins_sponsored_in_e164(typed, stored):
    group, admin, _ = buying_group()

    member = member_add_phone(group=group, by=admin, phone_number=typed)

    assert (member.phone_number, member.role, member.status) == (stored, "sponsored", "active")


@pytest.mark.parametrize("typed", ["12345", "+0123456", "+1234567890123456", "phone", ""])
def test_a_telephone_number_not_in_e164_is_refused_with_the_rule(typed):
    group, admin, _ = buying_group()

    with pytest.raises(GroupRefused) as refused:
        member_add_phone(group=group, by=admin, phone_number=typed)

    assert refused.value.code == "invalid_phone_number"
    assert "E.164" in refused.value.message
    assert not group.members.filter(kind="phone").exists()


def test_a_telephone_number_cannot_pledge():
    group, admin, _ = buying_group()
    member = member_add_phone(group=group, by=admin, phone_number="+14155550123")

    with pytest.raises(GroupRefused) as refused:
        pledge_update(member=member, by=admin, role=MemberRole.PAYER, cap_minor=100)
    assert refused.value.code in ("not_yours", "phone_sponsored")


def test_a_device_is_invited_and_accepted_by_a_manager_of_its_organization():
    group, admin, _ = buying_group()
    owner = UserFactory()
    organization = payer_organization(owner)
    device = ClientDevice.objects.create(
        organization=organization, name="Gateway 7", identifier="gw-7"
    )
    invitation = member_invite_device(group=group, by=admin, device=device)

    assert list(invitations_for(owner)) == [invitation]
    member = invitation_accept(
        member=invitation,
        user=owner,
        role=MemberRole.PAYER,
        paying_organization=organization,
        cap_minor=7_500,
    )
    assert (member.kind, member.status, member.cap_minor) == ("device", "active", 7_500)


def test_the_last_admin_cannot_leave_but_can_after_naming_another():
    group, admin, admin_member = buying_group()
    other = group_joined(group, role=MemberRole.SPONSORED)

    with pytest.raises(GroupRefused) as refused:
        member_remove(member=admin_member, by=admin)
    assert refused.value.code == "last_admin"

    member_admin_set(member=other, by=admin, is_admin=True)
    member_remove(member=admin_member, by=admin)
    admin_member.refresh_from_db()
    assert admin_member.status == MemberStatus.LEFT
    assert not Membership.objects.filter(user=admin, organization=group.organization).exists()
    assert Membership.objects.get(user=other.user, organization=group.organization).role == (
        Role.ADMIN
    )


# --- bidding as a group --------------------------------------------------------------------------


def group_bid(group, user, auction, amount, maximum=None):
    return bid_place(
        auction_id=auction.pk,
        bidder=group.organization,
        user=user,
        amount_minor=amount,
        max_amount_minor=maximum,
    )


def test_a_group_bids_as_one_bidder_within_the_sum_of_its_payers_caps():
    group, admin, _ = buying_group(cap_minor=3_000)
    group_joined(group, cap_minor=2_000)
    auction = AuctionFactory()

    outcome = group_bid(group, admin, auction, 4_500)
    assert outcome.leading and outcome.bid.bidder == group.organization

    with pytest.raises(BidRejected) as refused:
        group_bid(group, admin, auction, 4_600, maximum=5_001)
    assert refused.value.code == "group_limit"
    assert "50.00 USD" in refused.value.message
    auction.refresh_from_db()
    assert auction.current_price_minor == 4_500


def test_only_a_groups_admins_bid_for_it():
    group, _, _ = buying_group()
    member = group_joined(group, cap_minor=2_000)

    with pytest.raises(BidRejected) as refused:
        group_bid(group, member.user, AuctionFactory(), 1_000)
    assert refused.value.code == "group_admin_only"


def test_a_group_bids_only_when_each_payer_has_a_card():
    group, admin, _ = buying_group()
    group_joined(group, cap_minor=2_000, with_card=False)

    with pytest.raises(BidRejected) as refused:
        group_bid(group, admin, AuctionFactory(), 1_000)
    assert refused.value.code == "payer_card_required"


def test_a_group_bids_only_in_its_currency():
    group, admin, _ = buying_group(currency="EUR")

    with pytest.raises(BidRejected) as refused:
        group_bid(group, admin, AuctionFactory(currency="USD"), 1_000)
    assert refused.value.code == "group_currency"


def test_a_won_auction_records_who_pays_as_pledged_at_the_win():
    group, admin, admin_member = buying_group(cap_minor=3_000)
    payer = group_joined(group, share_bps=4_000, cap_minor=2_000)
    sponsored = group_joined(group, role=MemberRole.SPONSORED)
    auction = AuctionFactory()
    group_bid(group, admin, auction, 2_500)
    type(auction).objects.filter(pk=auction.pk).update(closes_at=timezone.now())

    outcome = auction_close(auction_id=auction.pk)
    # pledges changed later do not change the lease's shares
    pledge_update(
        member=payer,
        by=payer.user,
        role=MemberRole.PAYER,
        paying_organization=payer.paying_organization,
        cap_minor=1,
    )

    lease = outcome.lease
    assert lease.winner == group.organization
    shares = {(s.member_id, s.role, s.cap_minor) for s in LeaseShare.objects.filter(lease=lease)}
    assert shares == {
        (admin_member.pk, "payer", 3_000),
        (payer.pk, "payer", 2_000),
        (sponsored.pk, "sponsored", None),
    }


# --- offers to groups ----------------------------------------------------------------------------


def offer_to(group, *, price=6_000, deadline_in=timedelta(hours=2)):
    provider = VerifiedProviderFactory()
    block = ServiceBlockFactory(provider=provider)
    user = member_of(provider.organization)
    return group_offer_create(
        provider=provider,
        by=user,
        group=group,
        block=block,
        price_minor=price,
        deadline=timezone.now() + deadline_in,
    )


def test_an_offer_tips_when_the_accepting_payers_caps_cover_the_price_and_only_they_pay():
    group, admin, admin_member = buying_group(cap_minor=4_000)
    second = group_joined(group, cap_minor=3_000)
    bystander = group_joined(group, cap_minor=9_000)
    offer = offer_to(group, price=6_000)

    standing = group_offer_accept(offer=offer, member=admin_member, by=admin)
    assert (standing.pledged_minor, standing.tipped) == (4_000, False)
    standing = group_offer_accept(offer=offer, member=second, by=second.user)
    assert (standing.pledged_minor, standing.tipped) == (7_000, True)

    # decided at the deadline
    assert group_offers_decide() == 0
    assert group_offers_decide(now=offer.deadline + timedelta(seconds=1)) == 1

    offer.refresh_from_db()
    assert offer.status == GroupOfferStatus.SOLD
    lease = Lease.objects.get(group_offer=offer)
    assert (lease.winner, lease.price_minor, lease.auction) == (group.organization, 6_000, None)
    payers = set(
        LeaseShare.objects.filter(lease=lease, role="payer").values_list("member_id", flat=True)
    )
    assert payers == {admin_member.pk, second.pk}
    assert bystander.pk not in payers


def test_an_offer_that_misses_its_tipping_point_charges_nobody():
    group, admin, admin_member = buying_group(cap_minor=4_000)
    offer = offer_to(group, price=6_000)
    group_offer_accept(offer=offer, member=admin_member, by=admin)

    group_offers_decide(now=offer.deadline + timedelta(seconds=1))

    offer.refresh_from_db()
    assert offer.status == GroupOfferStatus.MISSED
    assert not Lease.objects.filter(block=offer.block).exists()
    assert offer_standing(offer).tipped is False


def test_only_payers_accept_offers_and_only_before_the_deadline():
    group, admin, admin_member = buying_group()
    sponsored = group_joined(group, role=MemberRole.SPONSORED)
    offer = offer_to(group)

    with pytest.raises(GroupRefused) as refused:
        group_offer_accept(offer=offer, member=sponsored, by=sponsored.user)
    assert refused.value.code == "payer_only"

    type(offer).objects.filter(pk=offer.pk).update(deadline=timezone.now() - timedelta(seconds=1))
    with pytest.raises(GroupRefused) as refused:
        group_offer_accept(offer=offer, member=admin_member, by=admin)
    assert refused.value.code == "offer_closed"


def test_a_provider_offers_only_its_own_free_future_blocks():
    group, _, _ = buying_group()
    provider = VerifiedProviderFactory()
    user = member_of(provider.organization)
    others = ServiceBlockFactory()
    soon = timezone.now() + timedelta(hours=1)

    with pytest.raises(GroupRefused) as refused:
        group_offer_create(
            provider=provider, by=user, group=group, block=others, price_minor=100, deadline=soon
        )
    assert refused.value.code == "not_your_block"

    block = ServiceBlockFactory(provider=provider)
    AuctionFactory(block=block)
    with pytest.raises(GroupRefused) as refused:
        group_offer_create(
            provider=provider, by=user, group=group, block=block, price_minor=100, deadline=soon
        )
    assert refused.value.code == "block_in_auction"


# --- the rules that keep a group's commitments -----------------------------------------------


def test_a_block_offered_to_a_group_cannot_be_auctioned_and_one_lease_per_block():
    from django.core.exceptions import ValidationError
    from django.db import IntegrityError, transaction

    from auctions.services import auction_create

    group, _, _ = buying_group()
    offer = offer_to(group)

    with pytest.raises(ValidationError, match="offered to a buying group"):
        auction_create(
            block=offer.block,
            opens_at=timezone.now(),
            closes_at=timezone.now() + timedelta(hours=1),
            start_price_minor=100,
        )
    lease = LeaseFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        Lease.objects.create(
            group_offer=offer,
            block=lease.block,
            winner=group.organization,
            price_minor=1,
            currency="USD",
            starts_at=lease.starts_at,
            ends_at=lease.ends_at,
        )


def test_a_payer_cannot_lower_its_pledge_under_what_the_group_leads_with():
    group, admin, _ = buying_group(cap_minor=3_000)
    payer = group_joined(group, cap_minor=2_000)
    auction = AuctionFactory()
    group_bid(group, admin, auction, 1_000, maximum=4_500)

    with pytest.raises(GroupRefused) as refused:
        pledge_update(
            member=payer,
            by=payer.user,
            role=MemberRole.PAYER,
            paying_organization=payer.paying_organization,
            cap_minor=1_000,
        )
    assert refused.value.code == "pledge_committed"
    with pytest.raises(GroupRefused):
        member_remove(member=payer, by=payer.user)
    # a change that still covers the commitment is fine
    pledge_update(
        member=payer,
        by=payer.user,
        role=MemberRole.PAYER,
        paying_organization=payer.paying_organization,
        cap_minor=1_500,
    )


def test_a_member_who_leaves_loses_its_seats_on_the_groups_leases():
    from auctions.seats import seat_assign, seats_active

    group, admin, _ = buying_group()
    member = group_joined(group, role=MemberRole.SPONSORED)
    lease = LeaseFactory(winner=group.organization)
    seat_assign(lease=lease, by=admin, kind="user", email=member.user.email)

    member_remove(member=member, by=member.user)

    assert list(seats_active(lease)) == []


def test_an_organization_invitation_never_makes_a_group_admin():
    from django.core.exceptions import ValidationError

    from auctions.groups import is_group_admin
    from marketplace.services import invitation_create

    group, admin, _ = buying_group()
    with pytest.raises(ValidationError, match="group's page"):
        invitation_create(
            organization=group.organization, email="x@ex.io", role=Role.ADMIN, invited_by=admin
        )
    # a manager of the group's account who is no admin member of the group does not bid
    outsider = UserFactory()
    Membership.objects.create(user=outsider, organization=group.organization, role=Role.ADMIN)
    assert is_group_admin(group, outsider) is False
    with pytest.raises(BidRejected) as refused:
        group_bid(group, outsider, AuctionFactory(), 1_000)
    assert refused.value.code == "group_admin_only"


def test_a_payer_with_unpaid_leases_keeps_the_group_from_bidding(settings):
    from billing.models import LineItem, LineItemKind, Statement, StatementStatus

    settings.UNPAID_LEASES_BLOCK = 1
    group, admin, admin_member = buying_group()
    paying = admin_member.paying_organization
    lease = LeaseFactory(winner=paying)
    statement = Statement.objects.create(
        organization=paying,
        number="ST-TEST-1",
        period_start=timezone.now().date(),
        period_end=timezone.now().date() + timedelta(days=30),
        presentation="consolidated",
        currency="USD",
        charges_minor=lease.price_minor,
        credits_minor=0,
        total_minor=lease.price_minor,
        status=StatementStatus.PAYMENT_FAILED,
    )
    LineItem.objects.create(
        organization=paying,
        provider=lease.block.provider,
        kind=LineItemKind.AUCTION,
        description="unpaid",
        amount_minor=lease.price_minor,
        currency="USD",
        presentation="consolidated",
        occurred_at=timezone.now(),
        source="test:unpaid",
        lease=lease,
        statement=statement,
    )

    with pytest.raises(BidRejected) as refused:
        group_bid(group, admin, AuctionFactory(), 1_000)
    assert refused.value.code == "payer_unpaid_leases"


def test_accepting_an_offer_needs_a_card_for_the_paying_organization():
    group, _, _ = buying_group()
    cardless = group_joined(group, cap_minor=9_000, with_card=False)
    offer = offer_to(group)

    with pytest.raises(GroupRefused) as refused:
        group_offer_accept(offer=offer, member=cardless, by=cardless.user)
    assert refused.value.code == "payer_card_required"


def test_a_device_in_a_group_cannot_be_deleted_and_says_why():
    from django.core.exceptions import ValidationError

    from marketplace.services import client_device_remove

    group, admin, _ = buying_group()
    device = ClientDevice.objects.create(
        organization=group.members.get(user=admin).paying_organization,
        name="Gateway 7",
        identifier="gw-7",
    )
    invitation = member_invite_device(group=group, by=admin, device=device)
    invitation_accept(member=invitation, user=admin, role=MemberRole.SPONSORED)

    with pytest.raises(ValidationError, match="Gateway 7 is in a buying group"):
        client_device_remove(device=device)
    assert ClientDevice.objects.filter(pk=device.pk).exists()


def test_a_device_whose_invitation_was_declined_can_be_deleted():
    from auctions.groups import invitation_decline
    from marketplace.services import client_device_remove

    group, admin, _ = buying_group()
    owner = UserFactory()
    device = ClientDevice.objects.create(
        organization=payer_organization(owner), name="Gateway 9", identifier="gw-9"
    )
    invitation = member_invite_device(group=group, by=admin, device=device)
    invitation_decline(member=invitation, user=owner)

    client_device_remove(device=device)

    assert not ClientDevice.objects.filter(pk=device.pk).exists()


@pytest.mark.parametrize("name", ["Night shift\nBcc: everyone@example.com", "Tab\there"])
def test_a_group_name_of_more_than_one_printable_line_is_refused(name):
    with pytest.raises(GroupRefused) as refused:
        group_create(user=UserFactory(), name=name, currency="USD", role="sponsored")
    assert refused.value.code == "invalid_name"
    assert not BuyingGroup.objects.exists()
