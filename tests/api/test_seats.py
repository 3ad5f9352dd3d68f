"""Seats of a lease through the partner API: the leaseholder's admins assign and release them
up to the block's seat count, and seat holders (of other organizations too) run jobs on the
lease under their seat through the jobs API."""

from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from rest_framework.test import APIClient

from auctions.groups import invitation_accept, member_add_phone, member_invite_device
from auctions.models import LeaseSeat
from auctions.seats import seat_assign
from marketplace.models import ApiKeyScope
from marketplace.services import api_key_create
from providers.models import Service
from segmentation.models import Job
from tests.api.helpers import assert_problem
from tests.captures import CAPTURES_DIR
from tests.factories import (
    ClientDeviceFactory,
    LeaseFactory,
    OfferFactory,
    OrganizationFactory,
    UserFactory,
    buying_group,
    group_joined,
    member_of,
)

pytestmark = pytest.mark.django_db

JOBS = "/api/v1/jobs/"
CAPTURE = CAPTURES_DIR / "tls.pcap"
PHONE = "+14155550123"


@pytest.fixture(autouse=True)
def _job_storage(settings, tmp_path):
    settings.JOB_STORAGE_DIR = tmp_path / "jobs"


def seats_url(lease) -> str:
    return f"/api/v1/leases/{lease.pk}/seats/"


def seat_url(lease, seat) -> str:
    return f"{seats_url(lease)}{seat.pk}/"


def signed_in(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def key_of(organization, user) -> APIClient:
    _, key = api_key_create(
        organization=organization, name="key", scope=ApiKeyScope.WRITE, created_by=user
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def post(client, url, data, *, key=None):
    headers = {"Idempotency-Key": key} if key else {}
    return client.post(url, data, format="json", headers=headers)


def submit_job(client, lease, **fields):
    upload = SimpleUploadedFile("tls.pcap", CAPTURE.read_bytes())
    data = {"file": upload, "lease": lease.pk, "method": "packet-count", "param": "20", **fields}
    return client.post(JOBS, data, format="multipart")


@pytest.fixture
def shared():
    """A buying group's lease running now, of a block with two seats. The group has a payer
    admin, a sponsored user, a telephone number, and the client device of a member's other
    organization (`device_org`, whose owner is a sponsored member)."""
    group, admin, _ = buying_group(name="Harbour Cooperative")
    lease = LeaseFactory(winner=group.organization, block__seats=2)
    OfferFactory(provider=lease.block.provider, service=Service.SEGMENTATION)
    sponsored = group_joined(group, role="sponsored")
    member_add_phone(group=group, by=admin, phone_number=PHONE)
    device_org = OrganizationFactory(name="Quay Sensors")
    device_owner = member_of(device_org)
    group_joined(group, role="sponsored", user=device_owner)
    device = ClientDeviceFactory(organization=device_org)
    invitation = member_invite_device(group=group, by=admin, device=device)
    invitation_accept(member=invitation, user=device_owner, role="sponsored")
    return {
        "group": group,
        "admin": admin,
        "lease": lease,
        "sponsored": sponsored.user,
        "device": device,
        "device_org": device_org,
    }


@pytest.fixture
def admin_client(shared) -> APIClient:
    return signed_in(shared["admin"])


def device_seat(shared) -> LeaseSeat:
    return seat_assign(
        lease=shared["lease"], by=shared["admin"], kind="device", device=shared["device"]
    )


# --- listing, assigning, releasing -------------------------------------------------------------


def test_leaseholder_lists_no_seats_and_the_seat_count(admin_client, shared):
    response = admin_client.get(seats_url(shared["lease"]))

    assert response.status_code == 200
    body = response.json()
    assert (body["results"], body["count"], body["seats_total"], body["seats_free"]) == (
        [],
        0,
        2,
        2,
    )


def test_admin_assigns_a_seat_to_a_member_by_email(admin_client, shared):
    response = post(
        admin_client,
        seats_url(shared["lease"]),
        {"kind": "user", "email": shared["sponsored"].email},
    )

    assert response.status_code == 201, response.content
    body = response.json()
    seat = LeaseSeat.objects.get(pk=body["id"])
    assert (seat.user, seat.assigned_by) == (shared["sponsored"], shared["admin"])
    assert body == {
        "id": seat.pk,
        "lease": shared["lease"].pk,
        "kind": "user",
        "label": shared["sponsored"].email,
        "assigned_at": body["assigned_at"],
        "jobs": 0,
        "bytes": 0,
    }
    assert admin_client.get(seats_url(shared["lease"])).json()["seats_free"] == 1


def test_admin_assigns_seats_to_a_number_and_a_device(admin_client, shared):
    phone = post(admin_client, seats_url(shared["lease"]), {"kind": "phone", "phone_number": PHONE})
    device = post(
        admin_client, seats_url(shared["lease"]), {"kind": "device", "device": shared["device"].pk}
    )

    assert phone.status_code == device.status_code == 201, (phone.content, device.content)
    assert (phone.json()["label"], device.json()["kind"]) == (PHONE, "device")


def test_a_third_seat_on_a_two_seat_block_is_409_seats_full(admin_client, shared):
    url = seats_url(shared["lease"])
    post(admin_client, url, {"kind": "phone", "phone_number": PHONE})
    post(admin_client, url, {"kind": "user", "email": shared["sponsored"].email})

    response = post(admin_client, url, {"kind": "user", "email": shared["admin"].email})

    body = assert_problem(response, status=409, code="seats_full")
    assert "All 2 seats" in body["detail"]
    assert LeaseSeat.objects.filter(lease=shared["lease"]).count() == 2


def test_releasing_a_seat_frees_it_for_another(admin_client, shared):
    url = seats_url(shared["lease"])
    post(admin_client, url, {"kind": "phone", "phone_number": PHONE})
    taken = post(admin_client, url, {"kind": "user", "email": shared["sponsored"].email}).json()

    released = admin_client.delete(f"{url}{taken['id']}/")
    listed = admin_client.get(url).json()
    again = post(admin_client, url, {"kind": "user", "email": shared["admin"].email})

    assert released.status_code == 204
    assert (listed["count"], listed["seats_free"]) == (1, 1)
    assert again.status_code == 201, again.content
    assert LeaseSeat.objects.get(pk=taken["id"]).released_at is not None


def test_a_user_gives_up_its_own_seat(shared):
    seat = seat_assign(
        lease=shared["lease"], by=shared["admin"], kind="user", email=shared["sponsored"].email
    )

    response = signed_in(shared["sponsored"]).delete(seat_url(shared["lease"], seat))

    assert response.status_code == 204


def test_releasing_twice_is_404(admin_client, shared):
    seat = device_seat(shared)
    admin_client.delete(seat_url(shared["lease"], seat))

    response = admin_client.delete(seat_url(shared["lease"], seat))

    assert_problem(response, status=404, code="seat_not_found")


def test_seating_someone_twice_is_409_already_seated(admin_client, shared):
    url = seats_url(shared["lease"])
    post(admin_client, url, {"kind": "phone", "phone_number": PHONE})

    response = post(admin_client, url, {"kind": "phone", "phone_number": PHONE})

    assert_problem(response, status=409, code="already_seated")


def test_invalid_telephone_number_is_422(admin_client, shared):
    response = post(
        admin_client, seats_url(shared["lease"]), {"kind": "phone", "phone_number": "12345"}
    )

    body = assert_problem(response, status=422, code="invalid_phone_number")
    assert "'12345' is not a telephone number" in body["detail"]


def test_someone_outside_the_group_is_422_not_eligible(admin_client, shared):
    stranger = UserFactory()

    response = post(
        admin_client, seats_url(shared["lease"]), {"kind": "user", "email": stranger.email}
    )

    assert_problem(response, status=422, code="not_eligible")
    assert not LeaseSeat.objects.exists()


def test_a_device_not_in_the_group_is_404_and_not_named(admin_client, shared):
    device = ClientDeviceFactory(name="Hidden probe")

    response = post(
        admin_client, seats_url(shared["lease"]), {"kind": "device", "device": device.pk}
    )

    assert_problem(response, status=404, code="device_not_found")
    assert "Hidden probe" not in response.content.decode()


def test_seat_without_the_field_of_its_kind_is_400(admin_client, shared):
    response = post(admin_client, seats_url(shared["lease"]), {"kind": "device"})

    body = assert_problem(response, status=400, code="validation_failed")
    assert "device" in body["errors"]


def test_a_member_who_is_not_admin_sees_seats_but_cannot_assign(shared):
    client = signed_in(shared["sponsored"])
    device_seat(shared)

    listed = client.get(seats_url(shared["lease"]))
    response = post(client, seats_url(shared["lease"]), {"kind": "phone", "phone_number": PHONE})

    assert listed.status_code == 200
    assert listed.json()["count"] == 1
    assert_problem(response, status=403, code="not_allowed")


def test_a_member_who_is_not_admin_cannot_release_anothers_seat(shared):
    seat = device_seat(shared)

    response = signed_in(shared["sponsored"]).delete(seat_url(shared["lease"], seat))

    assert_problem(response, status=403, code="not_allowed")
    seat.refresh_from_db()
    assert seat.released_at is None


def test_seats_of_an_ended_lease_cannot_be_assigned(shared):
    lease = shared["lease"]
    type(lease).objects.filter(pk=lease.pk).update(ends_at=timezone.now() - timedelta(minutes=1))

    response = post(
        signed_in(shared["admin"]), seats_url(lease), {"kind": "phone", "phone_number": PHONE}
    )

    assert_problem(response, status=409, code="lease_ended")


def test_assigning_with_one_idempotency_key_seats_once(admin_client, shared):
    data = {"kind": "phone", "phone_number": PHONE}

    first = post(admin_client, seats_url(shared["lease"]), data, key="seat-1")
    second = post(admin_client, seats_url(shared["lease"]), data, key="seat-1")

    assert first.status_code == second.status_code == 201
    assert second["Idempotent-Replayed"] == "true"
    assert second.json() == first.json()
    assert LeaseSeat.objects.count() == 1


# --- isolation ---------------------------------------------------------------------------------


def test_an_unrelated_organization_cannot_see_or_change_a_leases_seats(shared):
    seat = device_seat(shared)
    organization = OrganizationFactory()
    outsiders = [signed_in(member_of(organization)), key_of(organization, member_of(organization))]
    other_lease = LeaseFactory(block__seats=3)

    for client in outsiders:
        lease = shared["lease"]
        assert_problem(client.get(seats_url(lease)), status=404, code="lease_not_found")
        assert_problem(
            post(client, seats_url(lease), {"kind": "phone", "phone_number": PHONE}),
            status=404,
            code="lease_not_found",
        )
        assert_problem(client.delete(seat_url(lease, seat)), status=404, code="lease_not_found")
    # the group's own admin is no better on another buyer's lease
    assert_problem(
        signed_in(shared["admin"]).get(seats_url(other_lease)), status=404, code="lease_not_found"
    )
    seat.refresh_from_db()
    assert seat.released_at is None
    assert LeaseSeat.objects.count() == 1


def test_a_seat_of_another_lease_is_404(admin_client, shared):
    other = LeaseFactory(winner=shared["group"].organization, block__seats=3)
    seat = seat_assign(lease=other, by=shared["admin"], kind="phone", phone_number=PHONE)

    response = admin_client.delete(seat_url(shared["lease"], seat))

    assert_problem(response, status=404, code="seat_not_found")


def test_a_seat_holder_of_another_organization_sees_only_its_own_seats(shared):
    own = device_seat(shared)
    seat_assign(lease=shared["lease"], by=shared["admin"], kind="phone", phone_number=PHONE)
    client = key_of(shared["device_org"], member_of(shared["device_org"]))

    response = client.get(seats_url(shared["lease"]))

    assert response.status_code == 200
    body = response.json()
    assert [row["id"] for row in body["results"]] == [own.pk]
    assert body["seats_free"] == 0


# --- jobs under a seat -------------------------------------------------------------------------


def test_a_seat_holder_of_another_organization_runs_a_job_under_its_seat(shared):
    seat = device_seat(shared)
    client = key_of(shared["device_org"], member_of(shared["device_org"]))

    response = submit_job(client, shared["lease"], seat=seat.pk)

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["lease"], body["seat"]) == (shared["lease"].pk, seat.pk)
    job = Job.objects.get(pk=body["id"])
    assert (job.organization, job.seat) == (shared["device_org"], seat)
    assert client.get(f"{JOBS}{job.pk}/").json()["seat"] == seat.pk


def test_an_organization_without_a_seat_cannot_run_a_job_on_the_lease(shared):
    device_seat(shared)
    stranger = OrganizationFactory()
    client = key_of(stranger, member_of(stranger))

    response = submit_job(client, shared["lease"])

    assert_problem(response, status=404, code="lease_not_found")
    assert not Job.objects.filter(organization=stranger, status="queued").exists()


def test_naming_someone_elses_seat_is_403_not_your_seat(shared):
    device_seat(shared)
    phone_seat = seat_assign(
        lease=shared["lease"], by=shared["admin"], kind="phone", phone_number=PHONE
    )
    client = key_of(shared["device_org"], member_of(shared["device_org"]))

    response = submit_job(client, shared["lease"], seat=phone_seat.pk)

    assert_problem(response, status=403, code="not_your_seat")


def test_a_holder_without_a_user_seat_must_name_its_seat(shared):
    device_seat(shared)
    client = key_of(shared["device_org"], member_of(shared["device_org"]))

    response = submit_job(client, shared["lease"])

    assert_problem(response, status=422, code="seat_required")


def test_after_release_the_holder_can_no_longer_run_jobs(admin_client, shared):
    seat = device_seat(shared)
    client = key_of(shared["device_org"], member_of(shared["device_org"]))
    admin_client.delete(seat_url(shared["lease"], seat))

    response = submit_job(client, shared["lease"], seat=seat.pk)

    assert_problem(response, status=404, code="lease_not_found")


def test_a_member_runs_a_job_under_its_own_user_seat(shared):
    seat = seat_assign(
        lease=shared["lease"], by=shared["admin"], kind="user", email=shared["sponsored"].email
    )

    response = submit_job(signed_in(shared["sponsored"]), shared["lease"])

    assert response.status_code == 201, response.content
    assert response.json()["seat"] == seat.pk


def test_a_job_on_a_lease_without_seats_has_no_seat(shared):
    response = submit_job(key_of(shared["group"].organization, shared["admin"]), shared["lease"])

    assert response.status_code == 201, response.content
    assert response.json()["seat"] is None


def test_an_unknown_seat_is_404_seat_not_found(shared):
    device_seat(shared)

    response = submit_job(
        key_of(shared["group"].organization, shared["admin"]), shared["lease"], seat=999_999
    )

    assert_problem(response, status=404, code="seat_not_found")


# --- a buyer's own lease -----------------------------------------------------------------------


def test_a_buyers_admin_seats_its_devices_and_any_number(issue_key, key_client):
    lease = LeaseFactory(block__seats=3)
    device = ClientDeviceFactory(organization=lease.winner)
    foreign = ClientDeviceFactory()
    client = key_client(issue_key(lease.winner))

    own = post(client, seats_url(lease), {"kind": "device", "device": device.pk})
    phone = post(client, seats_url(lease), {"kind": "phone", "phone_number": "+442071838750"})
    other = post(client, seats_url(lease), {"kind": "device", "device": foreign.pk})

    assert own.status_code == phone.status_code == 201, (own.content, phone.content)
    assert_problem(other, status=404, code="device_not_found")
