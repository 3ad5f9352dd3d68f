"""Seats on a lease (SPEC §4.4): shared by users, client devices and telephone numbers up to
the block's seat count; assigned and released by the leaseholder; any seat holder runs jobs on
the lease, and the usage is attributed to the seat."""

import pytest

from auctions.groups import member_add_phone
from auctions.models import LeaseSeat, MemberRole
from auctions.seats import SeatRefused, seat_assign, seat_release, seat_usage, seats_active
from marketplace.models import ClientDevice, OrganizationKind, Role
from segmentation import services
from segmentation.models import JobStatus, UsageRecord
from tests.captures import CAPTURES_DIR
from tests.factories import (
    LeaseFactory,
    OrganizationFactory,
    UserFactory,
    buying_group,
    group_joined,
    member_of,
)
from tests.segmentation.test_jobs import _Commit, _committed, job_run  # noqa: F401

pytestmark = pytest.mark.django_db

CAPTURE = (CAPTURES_DIR / "DnsPackets.pcap").read_bytes()


def leaseholder(seats=2):
    organization = OrganizationFactory(kind=OrganizationKind.RECIPIENT)
    admin = member_of(organization, role=Role.ADMIN)
    lease = LeaseFactory(winner=organization, block__seats=seats)
    return lease, admin


def run_job(lease, *, organization, user=None, seat_id=None):
    return _Commit.call(
        services.job_submit,
        organization=organization,
        user=user,
        lease_id=lease.pk,
        chunks=[CAPTURE],
        size=len(CAPTURE),
        input_name="DnsPackets.pcap",
        spec=services.JobSpec(method="connection"),
        seat_id=seat_id,
    )


def test_seats_are_given_up_to_the_blocks_count_and_a_released_one_is_free_again():
    lease, admin = leaseholder(seats=2)
    first, second, third = (member_of(lease.winner, role=Role.MEMBER) for _ in range(3))
    seat = seat_assign(lease=lease, by=admin, kind="user", email=first.email)
    seat_assign(lease=lease, by=admin, kind="phone", phone_number="+1 415 555 0100")

    with pytest.raises(SeatRefused) as refused:
        seat_assign(lease=lease, by=admin, kind="user", email=third.email)
    assert refused.value.code == "seats_full"
    assert "All 2 seats" in refused.value.message

    seat_release(seat=seat, by=admin)
    seat_assign(lease=lease, by=admin, kind="user", email=second.email)
    assert sorted(s.label for s in seats_active(lease)) == sorted([second.email, "+14155550100"])
    assert LeaseSeat.objects.filter(lease=lease).count() == 3  # the released one is history


def test_a_holder_has_one_seat_per_lease():
    lease, admin = leaseholder(seats=3)
    user = member_of(lease.winner, role=Role.MEMBER)
    seat_assign(lease=lease, by=admin, kind="user", email=user.email)

    with pytest.raises(SeatRefused) as refused:
        seat_assign(lease=lease, by=admin, kind="user", email=user.email)
    assert refused.value.code == "already_seated"


def test_only_the_leaseholders_managers_assign_and_only_to_its_own():
    lease, admin = leaseholder()
    member = member_of(lease.winner, role=Role.MEMBER)
    outsider = UserFactory()

    with pytest.raises(SeatRefused) as refused:
        seat_assign(lease=lease, by=member, kind="user", email=member.email)
    assert refused.value.code == "not_allowed"
    with pytest.raises(SeatRefused) as refused:
        seat_assign(lease=lease, by=admin, kind="user", email=outsider.email)
    assert refused.value.code == "not_eligible"
    other_device = ClientDevice.objects.create(
        organization=OrganizationFactory(), name="Not ours", identifier="x"
    )
    with pytest.raises(SeatRefused) as refused:
        seat_assign(lease=lease, by=admin, kind="device", device=other_device)
    assert refused.value.code == "not_eligible"


@pytest.mark.parametrize("number", ["12345", "+0044123", "call me"])
def test_a_seat_for_a_number_not_in_e164_is_refused(number):
    lease, admin = leaseholder()

    with pytest.raises(SeatRefused) as refused:
        seat_assign(lease=lease, by=admin, kind="phone", phone_number=number)

    assert refused.value.code == "invalid_phone_number"
    assert not LeaseSeat.objects.exists()


def test_a_user_gives_up_its_own_seat_but_not_anothers():
    lease, admin = leaseholder()
    mine, theirs = (
        member_of(lease.winner, role=Role.MEMBER),
        member_of(lease.winner, role=Role.MEMBER),
    )
    my_seat = seat_assign(lease=lease, by=admin, kind="user", email=mine.email)
    their_seat = seat_assign(lease=lease, by=admin, kind="user", email=theirs.email)

    with pytest.raises(SeatRefused):
        seat_release(seat=their_seat, by=mine)
    seat_release(seat=my_seat, by=mine)
    assert [s.pk for s in seats_active(lease)] == [their_seat.pk]


def test_a_seat_holder_of_a_group_lease_runs_a_job_and_its_usage_is_the_seats():
    group, admin, _ = buying_group()
    sponsored = group_joined(group, role=MemberRole.SPONSORED)
    lease = LeaseFactory(winner=group.organization, block__seats=2)
    seat = seat_assign(lease=lease, by=admin, kind="user", email=sponsored.user.email)
    # the sponsored member runs the job acting for its own organization
    own_organization = OrganizationFactory(kind=OrganizationKind.RECIPIENT)
    member_of(own_organization, user=sponsored.user)

    job = job_run(run_job(lease, organization=own_organization, user=sponsored.user))

    assert job.status == JobStatus.SUCCEEDED
    assert job.seat == seat and job.lease == lease
    usage = seat_usage(lease)
    assert usage[seat.pk]["jobs"] == 1
    assert usage[seat.pk]["bytes"] == sum(
        UsageRecord.objects.filter(job=job).values_list("bytes", flat=True)
    )


def test_without_a_seat_nobody_outside_runs_jobs_and_on_a_seated_lease_nobody_unseated():
    group, admin, _ = buying_group()
    outsider_org = OrganizationFactory(kind=OrganizationKind.RECIPIENT)
    outsider = member_of(outsider_org)
    lease = LeaseFactory(winner=group.organization, block__seats=2)

    with pytest.raises(services.JobRejected) as refused:
        run_job(lease, organization=outsider_org, user=outsider)
    assert refused.value.code == "lease_not_found"

    member_add_phone(group=group, by=admin, phone_number="+14155550123")
    seat_assign(lease=lease, by=admin, kind="phone", phone_number="+14155550123")
    # the group's own admin, acting for the group, now needs a seat too
    with pytest.raises(services.JobRejected) as refused:
        run_job(lease, organization=group.organization, user=admin)
    assert refused.value.code == "seat_required"


def test_a_telephone_seat_is_used_by_a_device_with_that_number():
    group, admin, _ = buying_group()
    member_add_phone(group=group, by=admin, phone_number="+14155550123")
    lease = LeaseFactory(winner=group.organization, block__seats=1)
    seat = seat_assign(lease=lease, by=admin, kind="phone", phone_number="+14155550123")
    # the handset belongs to a payer's organization in the group
    carrier = group.members.get(user=admin).paying_organization
    ClientDevice.objects.create(
        organization=carrier, name="Handset", identifier="h-1", phone_number="+14155550123"
    )

    job = run_job(lease, organization=carrier, seat_id=seat.pk)

    assert job.seat == seat
    # anyone can claim a number on a device of theirs: outside the group, it opens nothing
    stranger = OrganizationFactory(kind=OrganizationKind.RECIPIENT)
    ClientDevice.objects.create(
        organization=stranger, name="Clone", identifier="c-1", phone_number="+14155550123"
    )
    with pytest.raises(services.JobRejected) as refused:
        run_job(lease, organization=stranger, seat_id=seat.pk)
    assert refused.value.code == "lease_not_found"


def test_a_payer_who_left_no_longer_uses_the_groups_phone_seats():
    from auctions.groups import member_remove

    group, admin, _ = buying_group()
    leaving = group_joined(group, cap_minor=1_000)
    member_add_phone(group=group, by=admin, phone_number="+14155550123")
    lease = LeaseFactory(winner=group.organization, block__seats=1)
    seat = seat_assign(lease=lease, by=admin, kind="phone", phone_number="+14155550123")
    handset_owner = leaving.paying_organization
    ClientDevice.objects.create(
        organization=handset_owner, name="Handset", identifier="h-1", phone_number="+14155550123"
    )
    assert run_job(lease, organization=handset_owner, seat_id=seat.pk).seat == seat

    member_remove(member=leaving, by=leaving.user)

    with pytest.raises(services.JobRejected) as refused:
        run_job(lease, organization=handset_owner, seat_id=seat.pk)
    assert refused.value.code == "lease_not_found"
