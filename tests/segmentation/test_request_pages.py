"""The service request pages in the browser (Django test client): a recipient's new request
form and its refusals, the client devices page, a provider's answer and quote on the request
page, the maker's page with the plan drawn (or why no plan meets the request), the negotiation,
accepting the plan with a capture, and isolation between organizations."""

from datetime import UTC, datetime, timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from marketplace.models import ClientDevice
from segmentation.models import (
    AvailabilityMessage,
    Job,
    NegotiationStatus,
    Quote,
    ServiceRequest,
    ServiceRequestStatus,
)
from tests.captures import CAPTURES_DIR
from tests.factories import (
    ClientDeviceFactory,
    OrganizationFactory,
    SegmentationProfileFactory,
    member_of,
)
from tests.segmentation.test_service_requests import answer, paths_of, provider_with_paths

pytestmark = pytest.mark.django_db

NEW = reverse("service_request_new")
LIST = reverse("service_request_list")
DEVICES = reverse("client_device_list")
MANY = CAPTURES_DIR / "many-protocols.pcap"
GB = 10**9


def page(pk: int) -> str:
    return reverse("service_request_detail", args=[pk])


def _text(response) -> str:
    return response.content.decode()


def deadline_in(minutes: float) -> str:
    """A deadline as the form's datetime-local input sends it, in UTC."""
    return (timezone.now() + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M")


@pytest.fixture
def recipient():
    return OrganizationFactory(name="Acme Buyers")


@pytest.fixture
def profile(recipient):
    return SegmentationProfileFactory(organization=recipient, name="By connection")


@pytest.fixture
def maker(recipient, login_client):
    """A signed-in member of the recipient."""
    return login_client(member_of(recipient))


@pytest.fixture
def provider():
    """A verified provider offering segmentation, with one 1000 Mbit/s path."""
    return provider_with_paths(1000, name="Fast Fibre")


@pytest.fixture
def provider_client(provider, login_client):
    return login_client(member_of(provider.organization))


def send_request(client, profile, **fields):
    data = {
        "profile": profile.pk,
        "volume": "10",
        "volume_unit": "GB",
        "deadline": deadline_in(120),
        "currency": "USD",
        "price_limit": "",
        **fields,
    }
    return client.post(NEW, data)


def requested(client, profile, **fields) -> ServiceRequest:
    response = send_request(client, profile, **fields)
    assert response.status_code == 302, _text(response)
    return ServiceRequest.objects.order_by("-pk").first()


def answer_on_page(client, service_request, provider, *, bandwidth, price="0.80", minutes=30):
    (path,) = paths_of(provider)
    return client.post(
        page(service_request.pk),
        {
            "action": "answer",
            f"path_{path.pk}": str(bandwidth),
            "price": price,
            "valid_minutes": str(minutes),
        },
    )


# --- a new request --------------------------------------------------------------------------


def test_a_recipient_sends_a_request_from_the_form_and_lands_on_its_page(
    maker, profile, provider, recipient
):
    device = ClientDeviceFactory(organization=recipient, name="Roof probe")
    form = maker.get(NEW)
    assert form.status_code == 200
    assert "By connection" in _text(form) and "Roof probe" in _text(form)
    deadline = deadline_in(120)

    response = send_request(
        maker, profile, volume="2.5", deadline=deadline, device=device.pk, price_limit="12.50"
    )

    service_request = ServiceRequest.objects.get()
    assert response.status_code == 302
    assert response["Location"] == page(service_request.pk)
    assert service_request.data_bytes == 2_500_000_000
    assert service_request.deadline == datetime.strptime(deadline, "%Y-%m-%dT%H:%M").replace(
        tzinfo=UTC
    )
    assert (service_request.device, service_request.price_limit_minor) == (device, 1250)
    assert list(service_request.broadcast_to.all()) == [provider]
    detail = maker.get(response["Location"])
    text = _text(detail)
    assert detail.status_code == 200
    assert f"Request {service_request.pk} sent to 1 eligible providers." in text
    assert "2500000000 bytes" in text
    assert f"by {deadline.replace('T', ' ')} UTC" in text
    assert "12.50 USD" in text
    assert "No provider has answered yet." in text
    assert "from Roof probe" in text
    listed = _text(maker.get(LIST))
    assert f'href="{page(service_request.pk)}"' in listed


def test_a_deadline_in_the_past_is_refused_and_the_form_keeps_the_input(maker, profile, provider):
    past = deadline_in(-60)

    response = send_request(maker, profile, volume="3", deadline=past)

    text = _text(response)
    assert response.status_code == 400
    assert f"The deadline {past.replace('T', ' ')} UTC has passed." in text
    assert f'value="{past}"' in text
    assert 'name="volume" value="3"' in text
    assert not ServiceRequest.objects.exists()


def test_a_price_limit_finer_than_a_cent_is_refused_and_kept(maker, profile, provider):
    response = send_request(maker, profile, price_limit="1.234", currency="USD")

    text = _text(response)
    assert response.status_code == 400
    assert "USD amounts have at most 2 decimal places." in text
    assert 'value="1.234"' in text
    assert not ServiceRequest.objects.exists()


def test_a_request_nobody_can_serve_says_why_on_the_form(maker, profile, provider):
    response = send_request(maker, profile, services=["anonymize-ip"])

    assert response.status_code == 400
    assert "No verified provider offers segmentation, anonymize-ip" in _text(response)
    assert not ServiceRequest.objects.exists()


def test_the_new_request_page_asks_for_a_profile_first(maker):
    response = maker.get(NEW)

    assert response.status_code == 200
    assert "You have no segmentation profile yet" in _text(response)
    assert f'href="{reverse("profile_list")}"' in _text(response)


def test_the_request_pages_ask_an_anonymous_visitor_to_log_in(client):
    for url in (LIST, NEW, DEVICES, page(1)):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))


# --- client devices -------------------------------------------------------------------------


def test_a_recipient_registers_a_device_on_the_devices_page(maker, recipient):
    response = maker.post(
        DEVICES, {"name": "Roof probe", "identifier": "SN-0042", "phone_number": "+44 20 7946 0958"}
    )

    assert response.status_code == 302
    assert response["Location"] == DEVICES
    text = _text(maker.get(DEVICES))
    assert "Roof probe registered." in text
    assert "SN-0042" in text and "+442079460958" in text
    assert ClientDevice.objects.get(organization=recipient).phone_number == "+442079460958"


def test_a_telephone_number_not_in_e164_is_refused_with_a_clear_message(maker):
    response = maker.post(
        DEVICES, {"name": "Roof probe", "identifier": "SN-0042", "phone_number": "0044 20 7946"}
    )

    text = _text(response)
    assert response.status_code == 400
    assert "Enter the number in E.164 form: a plus, the country code, then the number" in text
    assert 'value="0044 20 7946"' in text and 'value="SN-0042"' in text
    assert not ClientDevice.objects.exists()


def test_a_recipient_removes_a_device(maker, recipient):
    device = ClientDeviceFactory(organization=recipient, name="Old probe")

    response = maker.post(DEVICES, {"remove": device.pk})

    assert response.status_code == 302
    text = _text(maker.get(DEVICES))
    assert "Old probe removed." in text
    assert "No devices yet." in text
    assert not ClientDevice.objects.filter(pk=device.pk).exists()


def test_another_organizations_device_cannot_be_removed(maker):
    theirs = ClientDeviceFactory(name="Their probe")

    response = maker.post(DEVICES, {"remove": theirs.pk})

    assert response.status_code == 404
    assert ClientDevice.objects.filter(pk=theirs.pk).exists()
    assert "Their probe" not in _text(maker.get(DEVICES))


# --- the provider's side ----------------------------------------------------------------------


def test_a_provider_sees_the_request_and_answers_it_on_its_page(
    maker, profile, provider, provider_client
):
    service_request = requested(maker, profile)
    listed = _text(provider_client.get(LIST))
    assert f"Requests sent to {provider.legal_name}" in listed
    assert f'href="{page(service_request.pk)}"' in listed
    form = _text(provider_client.get(page(service_request.pk)))
    (path,) = paths_of(provider)
    assert "You have not answered yet." in form
    assert f'name="path_{path.pk}"' in form
    assert "Capacity 1000 Mbit/s" in form
    # a provider does not see the maker's profile
    assert "By connection" not in form

    response = answer_on_page(provider_client, service_request, provider, bandwidth=800)

    assert response.status_code == 302
    assert response["Location"] == page(service_request.pk)
    message = AvailabilityMessage.objects.get()
    assert (message.provider, message.price_per_gb_minor, message.currency) == (
        provider,
        80,
        "USD",
    )
    assert [p.bandwidth_mbps for p in message.paths.all()] == [800]
    assert timedelta(minutes=29) < message.valid_until - timezone.now() <= timedelta(minutes=30)
    text = _text(provider_client.get(page(service_request.pk)))
    assert "Your availability was sent." in text
    assert f"{path.name}: 800 Mbit/s" in text and "0.80 USD" in text


def test_a_bandwidth_above_the_paths_capacity_is_refused_on_the_page(
    maker, profile, provider, provider_client
):
    service_request = requested(maker, profile)
    (path,) = paths_of(provider)

    response = answer_on_page(provider_client, service_request, provider, bandwidth=1001)

    assert response.status_code == 400
    assert f"1001 Mbit/s on {path.name} is more than its capacity of 1000 Mbit/s." in _text(
        response
    )
    assert not AvailabilityMessage.objects.exists()


def test_a_price_finer_than_a_cent_is_refused_on_the_answer_form(
    maker, profile, provider, provider_client
):
    service_request = requested(maker, profile)

    response = answer_on_page(
        provider_client, service_request, provider, bandwidth=500, price="0.805"
    )

    assert response.status_code == 400
    assert "USD amounts have at most 2 decimal places." in _text(response)
    assert not AvailabilityMessage.objects.exists()


# --- the maker's page: the plan ---------------------------------------------------------------


def test_the_makers_page_draws_the_plan_with_its_lines_and_reasons(
    maker, profile, provider, provider_client, login_client
):
    slow = provider_with_paths(250, name="Slow Copper")
    service_request = requested(maker, profile)
    answer_on_page(provider_client, service_request, provider, bandwidth=1000, price="1.00")
    answer_on_page(
        login_client(member_of(slow.organization)),
        service_request,
        slow,
        bandwidth=250,
        price="1.00",
    )

    response = maker.get(page(service_request.pk))

    text = _text(response)
    plan = response.context["plan"]
    assert plan.feasible
    assert 'data-testid="plan-drawing"' in text
    assert 'data-testid="plan-infeasible"' not in text
    lines = list(plan.lines.all())
    assert sum(line.bytes for line in lines) == 10 * GB
    assert {line.provider.legal_name: line.bytes for line in lines} == {
        "Fast Fibre": 8 * GB,
        "Slow Copper": 2 * GB,
    }
    assert "2 segments</strong> over 2 provider paths" in text
    assert "assemblage point <strong>Fast Fibre</strong>" in text
    for line in lines:
        assert f"{line.provider.legal_name} / {line.path.name}" in text
        assert f"<td>{line.bytes}</td>" in text
        assert escape(line.reason) in text
    for reason in plan.reasons:
        assert escape(reason) in text
    assert "Fast Fibre" in text and "Slow Copper" in text
    assert 'data-testid="accept-form"' in text


def test_a_deadline_too_short_shows_that_no_plan_meets_the_request_and_why(
    maker, profile, login_client
):
    slow = provider_with_paths(100, name="Slow Copper")
    # 10 GB at 100 Mbit/s takes 800 s; the deadline leaves at most 10 minutes
    service_request = requested(maker, profile, deadline=deadline_in(11))
    answer_on_page(login_client(member_of(slow.organization)), service_request, slow, bandwidth=100)

    response = maker.get(page(service_request.pk))

    text = _text(response)
    assert 'data-testid="plan-infeasible"' in text
    assert "No plan meets the request." in text
    assert 'data-testid="plan-drawing"' not in text
    assert 'data-testid="accept-form"' not in text
    reasons = response.context["plan"].reasons
    assert any("deadline" in reason for reason in reasons)
    for reason in reasons:
        assert escape(reason) in text


def test_before_any_answer_the_page_says_the_plan_comes_with_the_first(maker, profile, provider):
    service_request = requested(maker, profile)

    text = _text(maker.get(page(service_request.pk)))

    assert "No plan yet: it is computed as soon as a provider answers." in text
    assert 'data-testid="accept-form"' not in text


# --- negotiation and acceptance ---------------------------------------------------------------


def test_a_negotiation_opened_by_the_maker_lets_the_provider_quote_lower(
    maker, profile, provider, provider_client
):
    service_request = requested(maker, profile)
    answer_on_page(provider_client, service_request, provider, bandwidth=1000, price="0.80")
    before = _text(provider_client.get(page(service_request.pk)))
    assert 'value="quote"' not in before

    opened = maker.post(page(service_request.pk), {"action": "negotiate", "minutes": "10"})

    assert opened.status_code == 302
    negotiation = service_request.negotiations.get()
    assert negotiation.status == NegotiationStatus.OPEN
    assert list(negotiation.invited.all()) == [provider]
    maker_text = _text(maker.get(page(service_request.pk)))
    assert "The providers were asked for better quotes." in maker_text
    assert "Negotiation open to quotes until" in maker_text
    assert "0 providers quoted lower" in maker_text
    provider_text = _text(provider_client.get(page(service_request.pk)))
    assert 'value="quote"' in provider_text
    assert "Lowest quote so far: none per GB" in provider_text

    quoted = provider_client.post(page(service_request.pk), {"action": "quote", "price": "0.70"})

    assert quoted.status_code == 302
    assert Quote.objects.get().price_per_gb_minor == 70
    text = _text(provider_client.get(page(service_request.pk)))
    assert "Your quote was recorded." in text
    assert "Lowest quote so far: 0.70 USD per GB" in text
    not_lower = provider_client.post(page(service_request.pk), {"action": "quote", "price": "0.70"})
    assert not_lower.status_code == 400
    assert "A quote must be below your current price of 0.70 USD per GB." in _text(not_lower)
    assert Quote.objects.count() == 1
    # the maker's plan now prices the provider's data at its quote
    plan = maker.get(page(service_request.pk)).context["plan"]
    assert [line.price_per_gb_minor for line in plan.lines.all()] == [70]
    assert "1 provider quoted lower" in _text(maker.get(page(service_request.pk)))


def test_the_maker_accepts_the_plan_with_a_capture_and_is_taken_to_the_job(
    maker, profile, provider, provider_client, recipient
):
    data = MANY.read_bytes()
    service_request = requested(maker, profile, volume=f"{len(data) / 10**6:.6f}", volume_unit="MB")
    assert service_request.data_bytes == len(data)
    answer_on_page(provider_client, service_request, provider, bandwidth=1000)
    plan = maker.get(page(service_request.pk)).context["plan"]
    assert plan.feasible

    with MANY.open("rb") as capture:
        response = maker.post(page(service_request.pk), {"action": "accept", "capture": capture})

    job = Job.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("job_detail", args=[job.pk])
    assert (job.organization, job.plan, job.input_name) == (recipient, plan, MANY.name)
    job_page = maker.get(response["Location"])
    assert job_page.status_code == 200
    assert f"Plan accepted: job {job.pk} started." in _text(job_page)
    service_request.refresh_from_db()
    assert service_request.status == ServiceRequestStatus.ACCEPTED
    text = _text(maker.get(page(service_request.pk)))
    assert f'href="{reverse("job_detail", args=[job.pk])}"' in text
    assert "Plan accepted" in text
    assert 'data-testid="accept-form"' not in text


def test_a_file_that_is_not_a_capture_is_refused_and_the_request_stays_open(
    maker, profile, provider
):
    service_request = requested(maker, profile)
    answer(service_request, provider)
    maker.get(page(service_request.pk))  # the plan, as the maker saw it

    response = maker.post(
        page(service_request.pk),
        {"action": "accept", "capture": SimpleUploadedFile("notes.txt", b"not a capture")},
    )

    assert response.status_code == 400
    assert "notes.txt is not a packet capture" in _text(response)
    service_request.refresh_from_db()
    assert service_request.status == ServiceRequestStatus.OPEN


def test_the_maker_cancels_a_request_and_providers_can_no_longer_answer(
    maker, profile, provider, provider_client
):
    service_request = requested(maker, profile)

    response = maker.post(page(service_request.pk), {"action": "cancel"})

    assert response.status_code == 302
    text = _text(maker.get(page(service_request.pk)))
    assert f"Request {service_request.pk} cancelled." in text
    assert "Cancelled" in text
    provider_text = _text(provider_client.get(page(service_request.pk)))
    assert 'data-testid="answer-form"' not in provider_text
    refused = answer_on_page(provider_client, service_request, provider, bandwidth=500)
    assert refused.status_code == 400
    assert "The request is cancelled." in _text(refused)
    assert not AvailabilityMessage.objects.exists()


# --- isolation ----------------------------------------------------------------------------------


def test_another_organization_gets_404_on_the_request_page(maker, profile, provider, login_client):
    service_request = requested(maker, profile)
    stranger = login_client(member_of(OrganizationFactory()))
    not_asked = provider_with_paths(1000)  # verified after the broadcast
    latecomer = login_client(member_of(not_asked.organization))

    for client in (stranger, latecomer):
        assert client.get(page(service_request.pk)).status_code == 404
        assert client.post(page(service_request.pk), {"action": "cancel"}).status_code == 404
        assert f'href="{page(service_request.pk)}"' not in _text(client.get(LIST))
    service_request.refresh_from_db()
    assert service_request.status == ServiceRequestStatus.OPEN


def test_removing_a_device_that_is_not_a_number_is_a_404(maker):
    response = maker.post(reverse("client_device_list"), {"remove": "abc"})
    assert response.status_code == 404
