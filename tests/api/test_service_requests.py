"""Service requests through the partner API, end to end over HTTP: a recipient's client
devices, a request broadcast to the eligible providers (and their webhook deliveries), the
providers' availability messages and every way one is refused, the plan, the negotiation with
its quotes, accepting the plan with a capture, and cancelling; with the 401/403/404 cases."""

from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from rest_framework.test import APIClient

from marketplace.models import ApiKeyScope, ClientDevice, OrganizationKind
from providers.models import WebhookDelivery
from segmentation.models import AvailabilityMessage, Job, ServiceRequest
from tests.api.helpers import assert_problem
from tests.captures import CAPTURES_DIR
from tests.factories import (
    ClientDeviceFactory,
    OrganizationFactory,
    SegmentationProfileFactory,
    WebhookEndpointFactory,
)
from tests.segmentation.test_service_requests import paths_of, provider_with_paths

pytestmark = pytest.mark.django_db

DEVICES = "/api/v1/devices/"
REQUESTS = "/api/v1/service-requests/"
MANY = CAPTURES_DIR / "many-protocols.pcap"
GB = 10**9


def request_url(service_request_id: int, action: str = "") -> str:
    return f"{REQUESTS}{service_request_id}/" + (f"{action}/" if action else "")


def in_minutes(minutes: float) -> str:
    return (timezone.now() + timedelta(minutes=minutes)).isoformat()


@pytest.fixture
def recipient(db):
    return OrganizationFactory(kind=OrganizationKind.RECIPIENT, name="Acme Buyers")


@pytest.fixture
def profile(recipient):
    return SegmentationProfileFactory(organization=recipient)


@pytest.fixture
def maker(recipient, issue_key, key_client) -> APIClient:
    """A write-scoped API client of the recipient."""
    return key_client(issue_key(recipient))


@pytest.fixture
def client_of(issue_key, key_client):
    """Returns a function that makes a write-scoped API client of a provider."""

    def make(provider) -> APIClient:
        return key_client(issue_key(provider.organization))

    return make


def create(client, profile, *, headers=None, **fields) -> dict:
    body = {
        "profile": profile.pk,
        "data_bytes": 10 * GB,
        "deadline": in_minutes(120),
        **fields,
    }
    return client.post(REQUESTS, body, format="json", headers=headers or {})


def created(client, profile, **fields) -> dict:
    response = create(client, profile, **fields)
    assert response.status_code == 201, response.content
    return response.json()


def answer(client, service_request_id, provider, *, bandwidths=None, **fields):
    """POST the provider's availability: every path of its own at the given bandwidths (at
    capacity by default), 1.00 USD per GB, for 30 minutes."""
    paths = paths_of(provider)
    bandwidths = bandwidths or [path.capacity_mbps for path in paths]
    body = {
        "paths": [
            {"path": path.pk, "bandwidth_mbps": bandwidth}
            for path, bandwidth in zip(paths, bandwidths, strict=True)
        ],
        "price_per_gb_minor": 100,
        "currency": "USD",
        "valid_until": in_minutes(30),
        **fields,
    }
    return client.post(request_url(service_request_id, "availability"), body, format="json")


def answered(client, service_request_id, provider, **fields) -> dict:
    response = answer(client, service_request_id, provider, **fields)
    assert response.status_code == 201, response.content
    return response.json()


def ids_in(response) -> list[int]:
    assert response.status_code == 200, response.content
    return [item["id"] for item in response.json()["results"]]


# --- client devices ------------------------------------------------------------------------


def test_a_recipient_registers_lists_and_removes_a_client_device(maker, recipient):
    response = maker.post(
        DEVICES,
        {"name": "Field probe", "identifier": "SN-0001", "phone_number": "+14155550123"},
        format="json",
    )

    assert response.status_code == 201, response.content
    device = response.json()
    assert (device["name"], device["identifier"], device["phone_number"]) == (
        "Field probe",
        "SN-0001",
        "+14155550123",
    )
    assert device["url"] == f"http://testserver{DEVICES}{device['id']}/"
    assert [d["id"] for d in maker.get(DEVICES).json()["results"]] == [device["id"]]
    assert maker.get(f"{DEVICES}{device['id']}/").json()["name"] == "Field probe"

    assert maker.delete(f"{DEVICES}{device['id']}/").status_code == 204
    assert_problem(maker.get(f"{DEVICES}{device['id']}/"), status=404, code="device_not_found")
    assert not ClientDevice.objects.filter(organization=recipient).exists()


@pytest.mark.parametrize("number", ["4155550123", "+0441234567", "+44-20-7946-0958", "+1"])
def test_a_device_whose_telephone_number_is_not_e164_is_refused_naming_the_field(maker, number):
    response = maker.post(
        DEVICES, {"name": "Probe", "identifier": "SN-1", "phone_number": number}, format="json"
    )

    body = assert_problem(response, status=400, code="validation_failed")
    assert list(body["errors"]) == ["phone_number"]
    assert "E.164" in body["errors"]["phone_number"][0]
    assert not ClientDevice.objects.exists()


def test_a_device_without_a_telephone_number_is_registered(maker):
    response = maker.post(DEVICES, {"name": "Gateway", "identifier": "gw-1"}, format="json")

    assert response.status_code == 201, response.content
    assert response.json()["phone_number"] == ""


def test_a_telephone_number_typed_with_spaces_is_stored_without_them(maker):
    response = maker.post(
        DEVICES,
        {"name": "Probe", "identifier": "SN-9", "phone_number": "+44 20 7946 0958 12"},
        format="json",
    )

    assert response.status_code == 201, response.content
    assert response.json()["phone_number"] == "+44207946095812"


def test_a_second_device_with_the_same_identifier_is_refused(maker, recipient):
    ClientDeviceFactory(organization=recipient, identifier="SN-7")

    response = maker.post(DEVICES, {"name": "Copy", "identifier": "SN-7"}, format="json")

    body = assert_problem(response, status=409, code="already_exists")
    assert "already has a device with this identifier" in str(body["errors"])
    assert ClientDevice.objects.filter(organization=recipient).count() == 1


def test_another_organizations_device_is_not_found_and_stays(maker):
    theirs = ClientDeviceFactory()

    assert_problem(maker.get(f"{DEVICES}{theirs.pk}/"), status=404, code="device_not_found")
    assert_problem(maker.delete(f"{DEVICES}{theirs.pk}/"), status=404, code="device_not_found")
    assert ids_in(maker.get(DEVICES)) == []
    assert ClientDevice.objects.filter(pk=theirs.pk).exists()


def test_a_provider_cannot_register_a_client_device(client_of):
    provider = provider_with_paths(1000)

    response = client_of(provider).post(
        DEVICES, {"name": "Probe", "identifier": "SN-1"}, format="json"
    )

    assert_problem(response, status=403, code="not_a_recipient")
    assert not ClientDevice.objects.exists()


def test_devices_without_credentials_are_401():
    assert_problem(APIClient().get(DEVICES), status=401, code="not_authenticated")


# --- creating a request: broadcast ---------------------------------------------------------


def test_a_request_is_broadcast_to_the_eligible_providers_and_hidden_from_the_others(
    maker, profile, recipient, client_of
):
    able = provider_with_paths(1000, services_offered=["dedupe"])
    also_able = provider_with_paths(500, services_offered=["dedupe", "compress"])
    unable = provider_with_paths(1000)  # no dedupe
    device = ClientDeviceFactory(organization=recipient)

    response = create(maker, profile, services=["dedupe"], device=device.pk, negotiate=True)

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "open"
    assert body["data_bytes"] == 10 * GB
    assert body["services"] == ["dedupe"]
    assert (body["profile"], body["device"], body["negotiate"]) == (profile.pk, device.pk, True)
    assert body["url"] == f"http://testserver{request_url(body['id'])}"
    assert body["links"]["plan"] == f"http://testserver{request_url(body['id'], 'plan')}"
    assert ids_in(maker.get(REQUESTS, {"role": "mine"})) == [body["id"]]

    for provider in (able, also_able):
        client = client_of(provider)
        assert ids_in(client.get(REQUESTS, {"role": "received"})) == [body["id"]]
        seen = client.get(request_url(body["id"])).json()
        assert seen["data_bytes"] == 10 * GB
        # a provider sees neither the maker's profile nor its device, nor the plan's link
        assert "profile" not in seen and "device" not in seen
        assert "plan" not in seen["links"]
        assert seen["yours"] == {"message": None}

    outsider = client_of(unable)
    assert ids_in(outsider.get(REQUESTS, {"role": "received"})) == []
    assert ids_in(outsider.get(REQUESTS)) == []
    assert_problem(
        outsider.get(request_url(body["id"])), status=404, code="service_request_not_found"
    )
    assert_problem(
        outsider.get(request_url(body["id"], "availability")),
        status=404,
        code="service_request_not_found",
    )


def test_a_request_goes_to_the_other_providers_and_never_back_to_its_maker(client_of):
    # an organization that both buys and sells asks the *other* providers (issue 5: "a
    # request ... is communicated to other providers"); it cannot answer its own request
    own = provider_with_paths(1000)
    own.organization.kind = OrganizationKind.BOTH
    own.organization.save()
    other = provider_with_paths(1000)
    maker_client = client_of(own)
    profile = SegmentationProfileFactory(organization=own.organization)

    body = created(maker_client, profile)

    assert ids_in(client_of(other).get(REQUESTS, {"role": "received"})) == [body["id"]]
    assert ids_in(maker_client.get(REQUESTS, {"role": "mine"})) == [body["id"]]
    assert ids_in(maker_client.get(REQUESTS, {"role": "received"})) == []
    assert_problem(answer(maker_client, body["id"], own), status=404, code="not_asked")
    assert not AvailabilityMessage.objects.exists()


def test_a_request_nobody_can_serve_is_422_no_eligible_provider(maker, profile):
    provider_with_paths(1000)  # offers no anonymize-ip

    response = create(maker, profile, services=["anonymize-ip"])

    body = assert_problem(response, status=422, code="no_eligible_provider")
    assert "No verified provider offers segmentation, anonymize-ip" in body["detail"]
    assert not ServiceRequest.objects.exists()


def test_a_request_with_another_organizations_profile_is_404_profile_not_found(maker):
    provider_with_paths(1000)
    theirs = SegmentationProfileFactory()

    response = create(maker, theirs)

    assert_problem(response, status=404, code="profile_not_found")
    assert not ServiceRequest.objects.exists()


def test_a_request_with_another_organizations_device_is_404_device_not_found(maker, profile):
    provider_with_paths(1000)

    response = create(maker, profile, device=ClientDeviceFactory().pk)

    assert_problem(response, status=404, code="device_not_found")
    assert not ServiceRequest.objects.exists()


def test_a_request_whose_deadline_has_passed_is_422_deadline_past(maker, profile):
    provider_with_paths(1000)

    response = create(maker, profile, deadline=in_minutes(-1))

    body = assert_problem(response, status=422, code="deadline_past")
    assert "has passed" in body["detail"]
    assert not ServiceRequest.objects.exists()


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"data_bytes": 0}, "data_bytes"),
        ({"deadline": "tomorrow at noon"}, "deadline"),
        ({"services": ["teleport"]}, "services"),
        ({"currency": "XYZ"}, "currency"),
        ({"price_limit_minor": -1}, "price_limit_minor"),
    ],
)
def test_a_malformed_request_is_400_naming_the_field(maker, profile, fields, field):
    provider_with_paths(1000)

    response = create(maker, profile, **fields)

    body = assert_problem(response, status=400, code="validation_failed")
    assert field in body["errors"]
    assert not ServiceRequest.objects.exists()


def test_the_same_idempotency_key_replays_the_request_without_a_second_one(maker, profile):
    provider_with_paths(1000)
    deadline = in_minutes(120)
    headers = {"Idempotency-Key": "request-2026-001"}

    first = create(maker, profile, deadline=deadline, headers=headers)
    second = create(maker, profile, deadline=deadline, headers=headers)

    assert first.status_code == second.status_code == 201
    assert second.json()["id"] == first.json()["id"]
    assert second["Idempotent-Replayed"] == "true"
    assert ServiceRequest.objects.count() == 1


def test_service_requests_without_credentials_are_401(profile):
    anonymous = APIClient()

    assert_problem(anonymous.get(REQUESTS), status=401, code="not_authenticated")
    response = anonymous.post(REQUESTS, {"profile": profile.pk}, format="json")
    assert_problem(response, status=401, code="not_authenticated")


def test_a_read_scoped_key_may_list_but_not_request_service(
    recipient, profile, issue_key, key_client
):
    provider_with_paths(1000)
    reader = key_client(issue_key(recipient, scope=ApiKeyScope.READ))

    assert ids_in(reader.get(REQUESTS)) == []
    assert_problem(create(reader, profile), status=403, code="insufficient_scope")
    assert not ServiceRequest.objects.exists()


def test_creating_a_request_queues_a_webhook_delivery_for_each_eligible_providers_endpoint(
    maker, profile, settings, django_capture_on_commit_callbacks
):
    # the deliveries' first attempts are queued as tasks, which no worker runs here (the
    # sending itself is tests/providers/test_webhooks.py's)
    able = provider_with_paths(1000, services_offered=["dedupe"])
    unable = provider_with_paths(1000)
    endpoint = WebhookEndpointFactory(provider=able)
    ignored = WebhookEndpointFactory(provider=unable)

    settings.SITE_URL = "https://exchange.example"
    with django_capture_on_commit_callbacks(execute=True):
        body = created(maker, profile, services=["dedupe"])

    delivery = WebhookDelivery.objects.get(endpoint=endpoint)
    assert delivery.event == "service_request.created"
    assert delivery.payload["service_request"] == body["id"]
    assert delivery.payload["data_bytes"] == 10 * GB
    # a receiver knows the exchange only by its address: the link is absolute
    assert delivery.payload["availability_url"] == "https://exchange.example" + request_url(
        body["id"], "availability"
    )
    assert "profile" not in delivery.payload
    assert delivery.status == "pending"
    assert not WebhookDelivery.objects.filter(endpoint=ignored).exists()


# --- availability messages -----------------------------------------------------------------


@pytest.fixture
def open_request(maker, profile):
    """Returns a function: a request (10 GB, due in two hours) broadcast to the providers that
    exist when it is called, as its id."""

    def make(**fields) -> int:
        return created(maker, profile, **fields)["id"]

    return make


def test_a_provider_answers_with_its_paths_and_the_bandwidth_available(open_request, client_of):
    provider = provider_with_paths(1000, 400)
    request_id = open_request()
    client = client_of(provider)

    response = answer(client, request_id, provider, bandwidths=[800, 400], price_per_gb_minor=120)

    assert response.status_code == 201, response.content
    message = response.json()
    assert message["provider"] == {"id": provider.pk, "name": provider.legal_name}
    assert sorted((p["bandwidth_mbps"], p["capacity_mbps"]) for p in message["paths"]) == [
        (400, 400),
        (800, 1000),
    ]
    assert (message["price_per_gb_minor"], message["currency"]) == (120, "USD")
    assert message["valid"] is True
    yours = client.get(request_url(request_id)).json()["yours"]
    assert (yours["message"], yours["valid"]) == (message["id"], True)


@pytest.mark.parametrize(
    ("case", "status", "code"),
    [
        ("someone_elses_path", 422, "path_not_yours"),
        ("above_capacity", 422, "bandwidth_above_capacity"),
        ("expired", 422, "message_expired"),
        ("other_currency", 422, "currency_mismatch"),
        ("same_path_twice", 422, "duplicate_path"),
    ],
)
def test_bad_availability_is_refused_with_its_code_and_nothing_is_stored(
    open_request, client_of, case, status, code
):
    provider = provider_with_paths(1000)
    other = provider_with_paths(1000)
    request_id = open_request()
    path = paths_of(provider)[0]
    fields = {
        "someone_elses_path": {"paths": [{"path": paths_of(other)[0].pk, "bandwidth_mbps": 500}]},
        "above_capacity": {"paths": [{"path": path.pk, "bandwidth_mbps": 1001}]},
        "expired": {"valid_until": in_minutes(-0.1)},
        "other_currency": {"currency": "EUR"},
        "same_path_twice": {
            "paths": [
                {"path": path.pk, "bandwidth_mbps": 100},
                {"path": path.pk, "bandwidth_mbps": 200},
            ]
        },
    }[case]

    response = answer(client_of(provider), request_id, provider, **fields)

    body = assert_problem(response, status=status, code=code)
    assert body["detail"]
    assert not AvailabilityMessage.objects.exists()


def test_a_bandwidth_above_capacity_names_the_path_and_its_capacity(open_request, client_of):
    provider = provider_with_paths(400)
    request_id = open_request()

    response = answer(client_of(provider), request_id, provider, bandwidths=[401])

    body = assert_problem(response, status=422, code="bandwidth_above_capacity")
    path = paths_of(provider)[0]
    assert body["detail"] == (f"401 Mbit/s on {path.name} is more than its capacity of 400 Mbit/s.")


def test_a_second_message_while_the_first_holds_is_409_duplicate_message(open_request, client_of):
    provider = provider_with_paths(1000)
    request_id = open_request()
    client = client_of(provider)
    first = answered(client, request_id, provider)

    response = answer(client, request_id, provider, price_per_gb_minor=80)

    body = assert_problem(response, status=409, code="duplicate_message")
    assert f"message {first['id']} holds until" in body["detail"]
    assert AvailabilityMessage.objects.get().price_per_gb_minor == 100


def test_the_recipient_cannot_answer_its_own_request_403_not_a_provider(open_request, maker):
    provider = provider_with_paths(1000)
    request_id = open_request()

    response = answer(maker, request_id, provider)

    assert_problem(response, status=403, code="not_a_provider")
    assert not AvailabilityMessage.objects.exists()


def test_a_provider_the_request_was_not_sent_to_gets_404(open_request, client_of):
    provider_with_paths(1000)
    request_id = open_request()
    latecomer = provider_with_paths(1000)  # verified after the broadcast

    response = answer(client_of(latecomer), request_id, latecomer)

    assert_problem(response, status=404, code="service_request_not_found")
    assert not AvailabilityMessage.objects.exists()


def test_a_read_scoped_provider_key_cannot_answer(open_request, issue_key, key_client):
    provider = provider_with_paths(1000)
    request_id = open_request()
    reader = key_client(issue_key(provider.organization, scope=ApiKeyScope.READ))

    assert_problem(answer(reader, request_id, provider), status=403, code="insufficient_scope")
    assert not AvailabilityMessage.objects.exists()


def test_the_maker_sees_every_message_and_a_provider_only_its_own(open_request, maker, client_of):
    one = provider_with_paths(1000)
    two = provider_with_paths(500)
    request_id = open_request()
    first = answered(client_of(one), request_id, one)
    second = answered(client_of(two), request_id, two)

    everything = maker.get(request_url(request_id, "availability"))
    own = client_of(two).get(request_url(request_id, "availability"))

    assert everything.status_code == own.status_code == 200
    assert sorted(m["id"] for m in everything.json()) == sorted([first["id"], second["id"]])
    assert [m["id"] for m in own.json()] == [second["id"]]
    assert own.json()[0]["provider"]["id"] == two.pk


# --- the plan --------------------------------------------------------------------------------


def test_the_maker_gets_a_plan_sharing_the_volume_over_the_answers_with_reasons(
    open_request, maker, client_of
):
    fast = provider_with_paths(1000, name="Fast Fibre")
    slow = provider_with_paths(250, name="Slow Copper")
    request_id = open_request()
    answered(client_of(fast), request_id, fast)
    answered(client_of(slow), request_id, slow)

    response = maker.get(request_url(request_id, "plan"))

    assert response.status_code == 200, response.content
    plan = response.json()
    assert plan["feasible"] is True
    assert plan["volume_bytes"] == 10 * GB
    assert sum(line["bytes"] for line in plan["lines"]) == 10 * GB
    shares = {line["provider"]["name"]: line["bytes"] for line in plan["lines"]}
    assert shares == {"Fast Fibre": 8 * GB, "Slow Copper": 2 * GB}
    assert all(line["reason"] for line in plan["lines"])
    assert plan["reasons"]
    assert plan["assemblage_provider"] == {"id": fast.pk, "name": "Fast Fibre"}
    assert plan["total_cost_minor"] == 1000
    # asked again with nothing changed: the same plan
    assert maker.get(request_url(request_id, "plan")).json()["id"] == plan["id"]


def test_a_plan_the_deadline_cannot_allow_says_which_constraint_fails(
    open_request, maker, client_of
):
    provider = provider_with_paths(100)
    # 10 GB at 100 Mbit/s takes 800 s; the deadline leaves 10 minutes
    request_id = open_request(deadline=in_minutes(10))
    answered(client_of(provider), request_id, provider)

    plan = maker.get(request_url(request_id, "plan")).json()

    assert plan["feasible"] is False
    assert plan["failures"] == ["deadline_too_short"]
    assert any("deadline" in reason for reason in plan["reasons"])
    assert plan["lines"] == []


def test_a_provider_may_not_see_the_plan_403_not_the_maker(open_request, client_of):
    provider = provider_with_paths(1000)
    request_id = open_request()
    client = client_of(provider)
    answered(client, request_id, provider)

    assert_problem(client.get(request_url(request_id, "plan")), status=403, code="not_the_maker")


def test_there_is_no_plan_before_any_provider_answers_404_no_plan(open_request, maker):
    provider_with_paths(1000)
    request_id = open_request()

    response = maker.get(request_url(request_id, "plan"))

    body = assert_problem(response, status=404, code="no_plan")
    assert "no provider has answered" in body["detail"]


def test_another_recipient_gets_404_on_the_request_and_its_plan(
    open_request, issue_key, key_client
):
    provider_with_paths(1000)
    request_id = open_request()
    stranger = key_client(issue_key(OrganizationFactory()))

    assert_problem(
        stranger.get(request_url(request_id)), status=404, code="service_request_not_found"
    )
    assert_problem(
        stranger.get(request_url(request_id, "plan")),
        status=404,
        code="service_request_not_found",
    )
    assert_problem(
        stranger.post(request_url(request_id, "cancel")),
        status=404,
        code="service_request_not_found",
    )


# --- negotiation -----------------------------------------------------------------------------


def test_a_negotiation_takes_lower_quotes_and_shows_providers_the_lowest_price(
    open_request, maker, client_of
):
    first = provider_with_paths(500)
    second = provider_with_paths(500)
    late = provider_with_paths(500)
    request_id = open_request()
    answered(client_of(first), request_id, first)
    answered(client_of(second), request_id, second)

    response = maker.post(
        request_url(request_id, "negotiation"), {"closes_at": in_minutes(5)}, format="json"
    )

    assert response.status_code == 201, response.content
    negotiation = response.json()["negotiation"]
    assert (negotiation["status"], negotiation["quotes"]) == ("open", 0)
    assert negotiation["lowest_quote_minor"] is None

    quoted = client_of(first).post(
        request_url(request_id, "quotes"), {"price_per_gb_minor": 70}, format="json"
    )
    assert quoted.status_code == 201, quoted.content
    assert quoted.json()["negotiation"]["lowest_quote_minor"] == 70

    again = client_of(first).post(
        request_url(request_id, "quotes"), {"price_per_gb_minor": 70}, format="json"
    )
    body = assert_problem(again, status=422, code="quote_not_lower")
    assert "below your current price of" in body["detail"]

    # the other provider sees where the reverse auction stands, without names
    seen = client_of(second).get(request_url(request_id)).json()["negotiation"]
    assert (seen["status"], seen["quotes"], seen["lowest_quote_minor"]) == ("open", 1, 70)

    # a provider that answered after the negotiation opened was not invited to it
    answered(client_of(late), request_id, late)
    refused = client_of(late).post(
        request_url(request_id, "quotes"), {"price_per_gb_minor": 10}, format="json"
    )
    assert_problem(refused, status=403, code="not_invited")
    assert (
        client_of(second).get(request_url(request_id)).json()["negotiation"]["lowest_quote_minor"]
        == 70
    )


def test_only_the_maker_opens_a_negotiation_and_only_after_answers(open_request, maker, client_of):
    provider = provider_with_paths(1000)
    request_id = open_request()
    client = client_of(provider)

    early = maker.post(request_url(request_id, "negotiation"), {}, format="json")
    assert_problem(early, status=409, code="no_answers")

    answered(client, request_id, provider)
    by_provider = client.post(request_url(request_id, "negotiation"), {}, format="json")
    assert_problem(by_provider, status=403, code="not_the_maker")


def test_a_quote_without_an_open_negotiation_is_409(open_request, client_of):
    provider = provider_with_paths(1000)
    request_id = open_request()
    client = client_of(provider)
    answered(client, request_id, provider)

    response = client.post(
        request_url(request_id, "quotes"), {"price_per_gb_minor": 50}, format="json"
    )

    assert_problem(response, status=409, code="no_negotiation")


# --- accepting the plan, cancelling ----------------------------------------------------------


def capture_upload() -> SimpleUploadedFile:
    return SimpleUploadedFile(
        "many.pcap", MANY.read_bytes(), content_type="application/vnd.tcpdump.pcap"
    )


def test_accepting_the_plan_with_a_capture_starts_its_job_and_closes_the_request(
    open_request, maker, client_of, recipient
):
    big = provider_with_paths(750)
    small = provider_with_paths(250)
    data = MANY.read_bytes()
    request_id = open_request(data_bytes=len(data))
    answered(client_of(big), request_id, big)
    answered(client_of(small), request_id, small)
    plan = maker.get(request_url(request_id, "plan")).json()
    assert plan["feasible"] is True

    response = maker.post(
        request_url(request_id, "accept"), {"file": capture_upload()}, format="multipart"
    )

    assert response.status_code == 201, response.content
    body = response.json()
    job = Job.objects.get(pk=body["id"])
    assert response["Location"] == f"/api/v1/jobs/{job.pk}/"
    assert body["status"] == "queued"
    assert body["input"]["name"] == "many.pcap"
    assert body["input"]["bytes"] == len(data)
    assert (job.organization, job.plan_id) == (recipient, plan["id"])
    detail = maker.get(request_url(request_id)).json()
    assert detail["status"] == "accepted"
    assert detail["accepted_at"] is not None
    assert detail["links"]["job"] == f"http://testserver/api/v1/jobs/{job.pk}/"

    second = maker.post(
        request_url(request_id, "accept"), {"file": capture_upload()}, format="multipart"
    )
    assert_problem(second, status=409, code="request_closed")
    assert Job.objects.count() == 1
    cancel = maker.post(request_url(request_id, "cancel"))
    assert_problem(cancel, status=409, code="request_accepted")


def test_accepting_before_the_plan_was_computed_does_not_claim_nobody_answered(
    open_request, maker, client_of
):
    provider = provider_with_paths(1000)
    request_id = open_request()
    answered(client_of(provider), request_id, provider)

    # the maker accepts without having asked for the plan first
    response = maker.post(
        request_url(request_id, "accept"), {"file": capture_upload()}, format="multipart"
    )

    body = assert_problem(response, status=409, code="no_plan")
    assert "no provider has answered" not in body["detail"]
    assert not Job.objects.exists()


def test_an_infeasible_plan_cannot_be_accepted(open_request, maker, client_of):
    provider = provider_with_paths(100)
    request_id = open_request(deadline=in_minutes(10))
    answered(client_of(provider), request_id, provider)
    assert maker.get(request_url(request_id, "plan")).json()["feasible"] is False

    response = maker.post(
        request_url(request_id, "accept"), {"file": capture_upload()}, format="multipart"
    )

    body = assert_problem(response, status=409, code="plan_infeasible")
    assert "deadline" in body["detail"]
    assert not Job.objects.exists()
    assert maker.get(request_url(request_id)).json()["status"] == "open"


def test_a_provider_may_not_accept_the_plan(open_request, client_of):
    provider = provider_with_paths(1000)
    request_id = open_request()
    client = client_of(provider)
    answered(client, request_id, provider)

    response = client.post(
        request_url(request_id, "accept"), {"file": capture_upload()}, format="multipart"
    )

    assert_problem(response, status=403, code="not_the_maker")
    assert not Job.objects.exists()


def test_a_plan_cannot_be_accepted_before_there_is_one(open_request, maker):
    provider_with_paths(1000)
    request_id = open_request()

    response = maker.post(
        request_url(request_id, "accept"), {"file": capture_upload()}, format="multipart"
    )

    assert_problem(response, status=409, code="no_plan")
    assert not Job.objects.exists()


def test_a_cancelled_request_takes_no_more_answers(open_request, maker, client_of):
    provider = provider_with_paths(1000)
    request_id = open_request()
    client = client_of(provider)

    assert_problem(client.post(request_url(request_id, "cancel")), status=403, code="not_the_maker")
    response = maker.post(request_url(request_id, "cancel"))

    assert response.status_code == 200, response.content
    assert response.json()["status"] == "cancelled"
    assert ids_in(maker.get(REQUESTS, {"status": "cancelled"})) == [request_id]
    refused = answer(client, request_id, provider)
    body = assert_problem(refused, status=409, code="request_closed")
    assert "cancelled" in body["detail"]
    assert not AvailabilityMessage.objects.exists()


@pytest.mark.parametrize(
    "fields",
    [{"data_bytes": 10**25}, {"price_limit_minor": 10**25}, {"sla_min_rate_mbps": 10**12}],
)
def test_numbers_too_large_to_store_are_a_validation_error_not_a_crash(maker, profile, fields):
    provider_with_paths(1000)
    response = create(maker, profile, **fields)
    body = assert_problem(response, status=400, code="validation_failed")
    assert list(body["errors"]) == list(fields)
    assert not ServiceRequest.objects.exists()


def test_deleting_a_routing_path_that_was_offered_is_a_409(maker, profile, client_of):
    provider = provider_with_paths(1000)
    path = paths_of(provider)[0]
    body = created(maker, profile)
    partner = client_of(provider)
    answered = partner.post(
        f"{REQUESTS}{body['id']}/availability/",
        {
            "paths": [{"path": path.pk, "bandwidth_mbps": 500}],
            "price_per_gb_minor": 90,
            "currency": "USD",
            "valid_until": in_minutes(30),
        },
        format="json",
    )
    assert answered.status_code == 201, answered.content

    response = partner.delete(f"/api/v1/routing-paths/{path.pk}/")

    assert_problem(response, status=409, code="routing_path_in_use")
    assert provider.routing_paths.filter(pk=path.pk).exists()
