"""Service requests through the services: broadcast to the eligible providers, availability
messages and their bad input, the plan over the valid messages, negotiation, and the accepted
plan's job dispersed over the planned providers."""

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from providers.models import WorkLocation
from providers.services import RoutingPathInUse, routing_path_delete
from segmentation import services
from segmentation.jobfiles import job_dir
from segmentation.models import (
    AvailabilityMessage,
    JobStatus,
    NegotiationStatus,
    Plan,
    ServiceRequestStatus,
    UsageRecord,
    WorkItem,
    WorkItemKind,
    WorkItemStatus,
)
from segmentation.service_requests import (
    PathOffer,
    RequestRefused,
    RequestSpec,
    availability_submit,
    negotiation_open,
    negotiations_close,
    negotiations_open_due,
    plan_accept,
    plan_compute,
    plan_current,
    quote_submit,
    service_request_create,
)
from tests.captures import CAPTURES_DIR
from tests.factories import (
    ClientDeviceFactory,
    OfferFactory,
    OrganizationFactory,
    ProviderProfileFactory,
    RoutingPathFactory,
    RoutingPathHopFactory,
    SegmentationProfileFactory,
    VerifiedProviderFactory,
    member_of,
)

pytestmark = pytest.mark.django_db

MANY = CAPTURES_DIR / "many-protocols.pcap"
GB = 10**9


@pytest.fixture(autouse=True)
def _committed(django_capture_on_commit_callbacks, monkeypatch):
    """On-commit effects (webhooks queued, notices) run as after a commit; job tasks are not
    queued, as `job_run` drives the job."""
    monkeypatch.setattr(services, "_job_advance_enqueue", lambda job_id: None)
    monkeypatch.setattr(services, "_work_item_run_enqueue", lambda item_id: None)
    sent = []
    monkeypatch.setattr(
        "providers.services.webhook_broadcast",
        lambda *, providers, event, payload: sent.append(
            (sorted(p.pk for p in providers), event, payload)
        ),
    )
    return sent


def committed(django_capture_on_commit_callbacks, function, **kwargs):
    with django_capture_on_commit_callbacks(execute=True):
        return function(**kwargs)


def provider_with_paths(*capacities, services_offered=(), price=100, name=None):
    """A verified provider offering segmentation (and `services_offered`), with one routing
    path per capacity, each through a network of its own."""
    kwargs = {"legal_name": name} if name else {}
    provider = VerifiedProviderFactory(**kwargs)
    OfferFactory(provider=provider, service="segmentation", price_per_gb_minor=price)
    for service in services_offered:
        OfferFactory(provider=provider, service=service, price_per_gb_minor=price)
    for capacity in capacities:
        path = RoutingPathFactory(provider=provider, capacity_mbps=capacity)
        RoutingPathHopFactory(path=path, position=0)
    return provider


def paths_of(provider):
    return list(provider.routing_paths.order_by("pk"))


@pytest.fixture
def recipient():
    organization = OrganizationFactory()
    return organization, member_of(organization)


def request_for(recipient, *, profile=None, deadline=None, **spec):
    organization, user = recipient
    profile = profile or SegmentationProfileFactory(organization=organization)
    return service_request_create(
        organization=organization,
        user=user,
        spec=RequestSpec(
            profile=profile,
            data_bytes=spec.pop("data_bytes", 10 * GB),
            deadline=deadline or timezone.now() + timedelta(hours=2),
            **spec,
        ),
    )


def answer(service_request, provider, *, bandwidths=None, price=100, minutes=30, **kwargs):
    paths = paths_of(provider)
    bandwidths = bandwidths or [path.capacity_mbps for path in paths]
    return availability_submit(
        provider=provider,
        service_request=service_request,
        paths=[PathOffer(path.pk, bw) for path, bw in zip(paths, bandwidths, strict=False)],
        price_per_gb_minor=price,
        currency=kwargs.pop("currency", "USD"),
        valid_until=kwargs.pop("valid_until", timezone.now() + timedelta(minutes=minutes)),
    )


# --- broadcast ------------------------------------------------------------------------------


def test_a_request_goes_to_every_eligible_provider_and_no_other(
    recipient, _committed, django_capture_on_commit_callbacks
):
    able = provider_with_paths(1000, services_offered=["dedupe"])
    also_able = provider_with_paths(500, services_offered=["dedupe", "compress"])
    provider_with_paths(1000)  # no dedupe
    unverified = ProviderProfileFactory()
    OfferFactory(provider=unverified, service="segmentation")
    OfferFactory(provider=unverified, service="dedupe")
    blocked = provider_with_paths(1000, services_offered=["dedupe"])
    profile = SegmentationProfileFactory(organization=recipient[0], blocked_providers=[blocked.pk])

    service_request = committed(
        django_capture_on_commit_callbacks,
        request_for,
        recipient=recipient,
        profile=profile,
        services=["dedupe"],
    )

    assert set(service_request.broadcast_to.all()) == {able, also_able}
    assert service_request.services == ["dedupe"]
    (providers, event, payload) = _committed[-1]
    assert providers == sorted([able.pk, also_able.pk])
    assert event == "service_request.created"
    assert payload["service_request"] == service_request.pk
    assert payload["data_bytes"] == 10 * GB
    assert "profile" not in payload


def test_the_services_default_to_those_of_the_profiles_pipeline(recipient):
    provider_with_paths(1000, services_offered=["anonymize-ip", "dedupe"])
    profile = SegmentationProfileFactory(
        organization=recipient[0],
        pipeline=[{"service": "dedupe"}, {"service": "anonymize-ip"}],
    )
    service_request = request_for(recipient, profile=profile)
    assert service_request.services == ["anonymize-ip", "dedupe"]


def test_a_request_nobody_can_serve_is_refused_and_says_why(recipient):
    provider_with_paths(1000)
    with pytest.raises(RequestRefused) as refused:
        request_for(recipient, services=["anonymize-ip"])
    assert refused.value.code == "no_eligible_provider"
    assert "No verified provider offers segmentation, anonymize-ip" in refused.value.message

    only = provider_with_paths(1000, services_offered=["anonymize-ip"])
    profile = SegmentationProfileFactory(organization=recipient[0], blocked_providers=[only.pk])
    with pytest.raises(RequestRefused) as refused:
        request_for(recipient, profile=profile, services=["anonymize-ip"])
    assert "blocked by the profile" in refused.value.message
    assert not recipient[0].service_requests.exists()


@pytest.mark.parametrize(
    ("spec", "code"),
    [
        ({"deadline": timezone.now() - timedelta(minutes=1)}, "deadline_past"),
        ({"data_bytes": 0}, "invalid_volume"),
        ({"services": ["teleport"]}, "invalid_services"),
        ({"price_limit_minor": -5}, "invalid_price_limit"),
        ({"sla_min_rate_mbps": 0}, "invalid_sla"),
    ],
)
def test_bad_requests_are_refused_with_a_code(recipient, spec, code):
    provider_with_paths(1000)
    with pytest.raises(RequestRefused) as refused:
        request_for(recipient, **spec)
    assert refused.value.code == code


def test_a_device_or_profile_of_another_organization_is_refused(recipient):
    provider_with_paths(1000)
    stranger = OrganizationFactory()
    with pytest.raises(RequestRefused) as refused:
        request_for(recipient, device=ClientDeviceFactory(organization=stranger))
    assert refused.value.code == "device_not_found"
    with pytest.raises(RequestRefused) as refused:
        request_for(recipient, profile=SegmentationProfileFactory(organization=stranger))
    assert refused.value.code == "profile_not_found"


# --- availability messages ------------------------------------------------------------------------


def test_an_availability_message_records_the_paths_and_bandwidth(recipient):
    provider = provider_with_paths(1000, 400)
    service_request = request_for(recipient)
    message = answer(service_request, provider, bandwidths=[800, 400], price=120)
    assert message.price_per_gb_minor == 120
    assert sorted(p.bandwidth_mbps for p in message.paths.all()) == [400, 800]


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("someone_elses_path", "path_not_yours"),
        ("above_capacity", "bandwidth_above_capacity"),
        ("expired", "message_expired"),
        ("currency", "currency_mismatch"),
        ("same_path_twice", "duplicate_path"),
        ("no_paths", "no_paths"),
    ],
)
def test_bad_availability_is_refused_and_nothing_is_stored(recipient, case, code):
    provider = provider_with_paths(1000)
    other = provider_with_paths(1000)
    service_request = request_for(recipient)
    path = paths_of(provider)[0]
    kwargs = {
        "paths": [PathOffer(path.pk, 500)],
        "currency": "USD",
        "valid_until": timezone.now() + timedelta(minutes=5),
    }
    if case == "someone_elses_path":
        kwargs["paths"] = [PathOffer(paths_of(other)[0].pk, 500)]
    elif case == "above_capacity":
        kwargs["paths"] = [PathOffer(path.pk, 1001)]
    elif case == "expired":
        kwargs["valid_until"] = timezone.now() - timedelta(seconds=1)
    elif case == "currency":
        kwargs["currency"] = "EUR"
    elif case == "same_path_twice":
        kwargs["paths"] = [PathOffer(path.pk, 100), PathOffer(path.pk, 200)]
    elif case == "no_paths":
        kwargs["paths"] = []
    with pytest.raises(RequestRefused) as refused:
        availability_submit(
            provider=provider, service_request=service_request, price_per_gb_minor=90, **kwargs
        )
    assert refused.value.code == code
    assert refused.value.message
    assert not AvailabilityMessage.objects.exists()


def test_a_second_message_while_the_first_holds_is_refused_then_allowed_after(recipient):
    provider = provider_with_paths(1000)
    service_request = request_for(recipient)
    first = answer(service_request, provider)
    with pytest.raises(RequestRefused) as refused:
        answer(service_request, provider, price=80)
    assert refused.value.code == "duplicate_message"
    assert f"message {first.pk} holds until" in refused.value.message
    AvailabilityMessage.objects.filter(pk=first.pk).update(
        valid_until=timezone.now() - timedelta(seconds=1)
    )
    assert answer(service_request, provider, price=80).price_per_gb_minor == 80


def test_a_provider_the_request_was_not_sent_to_cannot_answer(recipient):
    provider_with_paths(1000)
    service_request = request_for(recipient)
    latecomer = provider_with_paths(1000)  # verified after the broadcast
    with pytest.raises(RequestRefused) as refused:
        answer(service_request, latecomer)
    assert refused.value.code == "not_asked"


# --- the plan ---------------------------------------------------------------------------------


def test_the_plan_shares_the_volume_over_the_valid_messages_and_explains_it(recipient):
    fast = provider_with_paths(1000, price=100, name="Fast Fibre")
    slow = provider_with_paths(250, price=100, name="Slow Copper")
    service_request = request_for(recipient, data_bytes=10 * GB)
    answer(service_request, fast)
    answer(service_request, slow)

    plan = plan_current(service_request=service_request)

    assert plan.feasible
    lines = {line.provider_id: line for line in plan.lines.all()}
    assert set(lines) == {fast.pk, slow.pk}
    assert sum(line.bytes for line in lines.values()) == 10 * GB
    # fastest first: every path at full bandwidth, shares in proportion to bandwidth
    assert lines[fast.pk].bytes == 8 * GB
    assert lines[slow.pk].bytes == 2 * GB
    assert plan.makespan_seconds == pytest.approx(10 * GB * 8 / 1.25e9)
    assert plan.total_cost_minor == 1000
    assert plan.assemblage_provider_id == fast.pk
    assert all(line.reason for line in lines.values())
    assert plan.reasons
    # nothing changed: the same plan; a new message: a new plan
    assert plan_current(service_request=service_request).pk == plan.pk
    third = provider_with_paths(1000)
    service_request.broadcast_to.add(third)
    answer(service_request, third)
    assert plan_current(service_request=service_request).pk != plan.pk


def test_expired_messages_are_left_out_of_the_plan(recipient):
    kept = provider_with_paths(1000)
    gone = provider_with_paths(1000)
    service_request = request_for(recipient)
    answer(service_request, kept)
    expiring = answer(service_request, gone)
    first = plan_current(service_request=service_request)
    assert first.lines.count() == 2

    AvailabilityMessage.objects.filter(pk=expiring.pk).update(
        valid_until=timezone.now() - timedelta(seconds=1)
    )
    plan = plan_current(service_request=service_request)

    assert plan.pk != first.pk
    assert [line.provider_id for line in plan.lines.all()] == [kept.pk]
    assert plan.messages_used == 1


def test_a_deadline_no_plan_can_meet_is_explained(recipient):
    provider = provider_with_paths(100)
    # 10 GB at 100 Mbit/s takes 800 s; the deadline leaves 10 minutes
    service_request = request_for(recipient, deadline=timezone.now() + timedelta(minutes=10))
    answer(service_request, provider)
    plan = plan_current(service_request=service_request)
    assert not plan.feasible
    assert plan.failures == ["deadline_too_short"]
    assert any("deadline" in reason for reason in plan.reasons)
    assert not plan.lines.exists()


def test_the_guaranteed_rate_of_an_sla_bounds_the_plan_like_a_deadline(recipient):
    provider = provider_with_paths(100)
    service_request = request_for(recipient, sla_min_rate_mbps=200)
    answer(service_request, provider)
    plan = plan_current(service_request=service_request)
    assert not plan.feasible
    assert "deadline_too_short" in plan.failures


def test_a_price_limit_moves_data_to_the_cheaper_path(recipient):
    cheap = provider_with_paths(500, price=50)
    dear = provider_with_paths(500, price=150)
    # proportional would cost 10 GB x 100 = 1,000; the limit is 800
    service_request = request_for(recipient, price_limit_minor=800)
    answer(service_request, cheap, price=50)
    answer(service_request, dear, price=150)
    plan = plan_current(service_request=service_request)
    assert plan.feasible
    assert plan.total_cost_minor <= 800
    lines = {line.provider_id: line.bytes for line in plan.lines.all()}
    assert lines[cheap.pk] > lines[dear.pk]
    assert "price_limit" in plan.binding


def test_blocked_networks_and_preferred_providers_of_the_profile_are_honoured(recipient):
    one = provider_with_paths(500, price=100)
    two = provider_with_paths(500, price=100)
    blocked_network = paths_of(two)[0].hops.get().network
    profile = SegmentationProfileFactory(
        organization=recipient[0], blocked_networks=[blocked_network.pk]
    )
    service_request = request_for(recipient, profile=profile)
    answer(service_request, one)
    answer(service_request, two)
    plan = plan_current(service_request=service_request)
    assert [line.provider_id for line in plan.lines.all()] == [one.pk]
    assert plan.exclusions[0]["provider"] == two.pk
    assert "blocked_network" in plan.exclusions[0]["causes"]


# --- negotiation ----------------------------------------------------------------------------


def test_a_negotiation_takes_lower_quotes_and_plans_again_when_it_closes(
    recipient, _committed, django_capture_on_commit_callbacks
):
    first = provider_with_paths(500, price=100)
    second = provider_with_paths(500, price=100)
    outsider = provider_with_paths(500, price=100)
    service_request = request_for(recipient)
    answer(service_request, first)
    answer(service_request, second)
    before = plan_current(service_request=service_request)

    negotiation = committed(
        django_capture_on_commit_callbacks,
        negotiation_open,
        service_request=service_request,
        closes_at=timezone.now() + timedelta(minutes=5),
    )
    providers, event, payload = _committed[-1]
    assert event == "service_request.quote_requested"
    assert providers == sorted([first.pk, second.pk])
    assert payload["negotiation"] == negotiation.pk

    quote_submit(provider=first, service_request=service_request, price_per_gb_minor=70)
    with pytest.raises(RequestRefused) as refused:
        quote_submit(provider=first, service_request=service_request, price_per_gb_minor=70)
    assert refused.value.code == "quote_not_lower"
    service_request.broadcast_to.add(outsider)
    answer(service_request, outsider)
    with pytest.raises(RequestRefused) as refused:
        quote_submit(provider=outsider, service_request=service_request, price_per_gb_minor=1)
    assert refused.value.code == "not_invited"

    assert negotiations_close(now=timezone.now()) == 0  # not due yet
    assert negotiations_close(now=timezone.now() + timedelta(minutes=6)) == 1
    negotiation.refresh_from_db()
    assert negotiation.status == NegotiationStatus.CLOSED
    after = service_request.plans.order_by("-created_at", "-pk").first()
    assert after.pk != before.pk
    assert after.negotiation_id == negotiation.pk
    prices = {line.provider_id: line.price_per_gb_minor for line in after.lines.all()}
    assert prices[first.pk] == 70
    assert prices[second.pk] == 100
    with pytest.raises(RequestRefused) as refused:
        quote_submit(provider=second, service_request=service_request, price_per_gb_minor=60)
    assert refused.value.code == "no_negotiation"


def test_equal_quotes_rank_the_earlier_first_in_the_plan(recipient):
    early = provider_with_paths(1000, price=100)
    late = provider_with_paths(1000, price=100)
    profile = SegmentationProfileFactory(organization=recipient[0], cost_weight=1.0)
    # cheapest first: one path suffices before the deadline, so the tie decides
    service_request = request_for(recipient, profile=profile)
    answer(service_request, early)
    answer(service_request, late)
    negotiation_open(
        service_request=service_request, closes_at=timezone.now() + timedelta(minutes=5)
    )
    quote_submit(provider=early, service_request=service_request, price_per_gb_minor=60)
    quote_submit(provider=late, service_request=service_request, price_per_gb_minor=60)
    negotiations_close(now=timezone.now() + timedelta(minutes=6))
    plan = service_request.plans.order_by("-created_at", "-pk").first()
    assert [(line.provider_id, line.bytes) for line in plan.lines.all()] == [(early.pk, 10 * GB)]


def test_a_negotiation_needs_answers_and_closes_before_the_deadline(recipient):
    provider_with_paths(1000)
    service_request = request_for(recipient)
    with pytest.raises(RequestRefused) as refused:
        negotiation_open(service_request=service_request)
    assert refused.value.code == "no_answers"
    answer(service_request, service_request.broadcast_to.get())
    with pytest.raises(RequestRefused) as refused:
        negotiation_open(
            service_request=service_request, closes_at=service_request.deadline + timedelta(1)
        )
    assert refused.value.code == "invalid_close"


# --- accepting the plan ------------------------------------------------------------------------


def job_run(job, *, rounds=50):
    for _ in range(rounds):
        job.refresh_from_db()
        if job.ended:
            return job
        services.job_advance(job_id=job.pk)
        for item in WorkItem.objects.filter(
            job=job, status=WorkItemStatus.PENDING, location=WorkLocation.EXCHANGE
        ):
            services.work_item_run(item_id=item.pk)
    job.refresh_from_db()
    return job


def test_an_accepted_plan_starts_a_job_dispersed_over_the_planned_providers(recipient):
    big = provider_with_paths(750)
    small = provider_with_paths(250)
    data = MANY.read_bytes()
    service_request = request_for(recipient, data_bytes=len(data))
    answer(service_request, big)
    answer(service_request, small)
    plan = plan_current(service_request=service_request)

    job = plan_accept(
        service_request=service_request,
        user=recipient[1],
        chunks=[data],
        size=len(data),
        input_name="many.pcap",
    )
    service_request.refresh_from_db()
    assert service_request.status == ServiceRequestStatus.ACCEPTED
    assert job.plan_id == plan.pk and job.lease_id is None

    job = job_run(job)

    assert job.status == JobStatus.SUCCEEDED, job.failure_reason
    assert (job_dir(job.pk) / "output.pcap").read_bytes() == data
    carried = {}
    for item in job.items.all():
        carried[item.provider_id] = carried.get(item.provider_id, 0) + item.bytes_in
        assert item.plan_line.plan_id == plan.pk
    assert set(carried) == {big.pk, small.pk}
    share = carried[big.pk] / sum(carried.values())
    assert 0.6 < share < 0.9  # planned 0.75; segments are whole connections
    assert {u.provider_id for u in UsageRecord.objects.filter(job=job)} == {big.pk, small.pk}
    assert all(u.lease_id is None for u in UsageRecord.objects.filter(job=job))
    manifest = job.manifest
    assert manifest["plan"] == plan.pk and manifest["service_request"] == service_request.pk
    assert {s["path"]["id"] for s in manifest["segments"]} == {
        line.path_id for line in plan.lines.all()
    }


def test_subcontracting_still_applies_to_a_planned_job(recipient):
    able = provider_with_paths(500, services_offered=["anonymize-ip"])
    plain = provider_with_paths(500)
    profile = SegmentationProfileFactory(
        organization=recipient[0],
        pipeline=[{"service": "anonymize-ip", "where": "udp"}],
    )
    data = MANY.read_bytes()
    # the request needs no service, so a provider without anonymize-ip is planned too
    service_request = request_for(recipient, profile=profile, services=[], data_bytes=len(data))
    answer(service_request, able)
    answer(service_request, plain)
    plan_current(service_request=service_request)
    job = plan_accept(
        service_request=service_request,
        user=None,
        chunks=[data],
        size=len(data),
        input_name="many.pcap",
    )
    job = job_run(job)
    assert job.status == JobStatus.SUCCEEDED, job.failure_reason
    subcontracted = job.items.get(kind=WorkItemKind.SUBCONTRACT)
    assert subcontracted.provider == able
    assert subcontracted.packets_in > 0
    plain_items = job.items.filter(provider=plain, kind=WorkItemKind.SEGMENT)
    assert plain_items.exists()
    assert all(item.steps == [] for item in plain_items)


def accept(service_request):
    return plan_accept(
        service_request=service_request, user=None, chunks=[b""], size=0, input_name="x"
    )


def test_an_out_of_date_or_infeasible_plan_cannot_be_accepted(recipient):
    provider = provider_with_paths(1000)
    service_request = request_for(recipient)
    with pytest.raises(RequestRefused) as refused:
        accept(service_request)
    assert refused.value.code == "no_plan"
    message = answer(service_request, provider)
    plan_current(service_request=service_request)
    AvailabilityMessage.objects.filter(pk=message.pk).update(
        valid_until=timezone.now() - timedelta(seconds=1)
    )
    with pytest.raises(RequestRefused) as refused:
        accept(service_request)
    assert refused.value.code == "plan_outdated"
    assert Plan.objects.filter(service_request=service_request).count() == 1
    service_request.refresh_from_db()
    assert service_request.status == ServiceRequestStatus.OPEN

    slow = provider_with_paths(10)
    hurried = request_for(recipient, deadline=timezone.now() + timedelta(minutes=1))
    answer(hurried, slow)
    assert not plan_current(service_request=hurried).feasible
    with pytest.raises(RequestRefused) as refused:
        accept(hurried)
    assert refused.value.code == "plan_infeasible"
    assert "deadline" in refused.value.message


def test_a_bad_capture_refuses_the_acceptance_and_the_request_stays_open(recipient):
    provider = provider_with_paths(1000)
    service_request = request_for(recipient)
    answer(service_request, provider)
    plan_current(service_request=service_request)
    with pytest.raises(RequestRefused) as refused:
        plan_accept(
            service_request=service_request,
            user=None,
            chunks=[b"not a capture at all"],
            size=20,
            input_name="notes.txt",
        )
    assert refused.value.code == "not_a_capture"
    service_request.refresh_from_db()
    assert service_request.status == ServiceRequestStatus.OPEN


# --- the provider console ----------------------------------------------------------------------


def test_the_console_lists_the_requests_sent_to_the_provider_and_its_answer(recipient):
    asked = provider_with_paths(1000)
    other = provider_with_paths(1000)
    profile = SegmentationProfileFactory(organization=recipient[0], blocked_providers=[other.pk])
    service_request = request_for(recipient, profile=profile, data_bytes=3 * GB)
    stranger = OrganizationFactory()
    hidden = request_for(
        (stranger, None),
        profile=SegmentationProfileFactory(organization=stranger, blocked_providers=[asked.pk]),
    )
    client = Client()
    client.force_login(member_of(asked.organization))
    listing = reverse("console:segmentation_servicerequest_changelist")

    page = client.get(listing).content.decode()
    assert f"/requests/{service_request.pk}/" in page
    assert f"/requests/{hidden.pk}/" not in page
    assert "not yet" in page and "2.8\xa0GB" in page

    answer(service_request, asked)
    assert "valid until" in client.get(listing).content.decode()
    change = reverse("console:segmentation_servicerequest_change", args=[hidden.pk])
    assert client.get(change).status_code == 404


# --- what review found ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "param"),
    [("file-size", "100000000"), ("round-robin", "2"), ("connection", "2"), ("packet-count", "")],
)
def test_a_planned_job_follows_the_plans_proportions_whatever_the_profiles_split(
    recipient, method, param
):
    providers = [provider_with_paths(capacity) for capacity in (400, 300, 300)]
    profile = SegmentationProfileFactory(
        organization=recipient[0], method=method, param=param or "100000"
    )
    data = MANY.read_bytes()
    service_request = request_for(recipient, profile=profile, data_bytes=len(data))
    for provider in providers:
        answer(service_request, provider)
    plan = plan_current(service_request=service_request)
    job = job_run(
        plan_accept(
            service_request=service_request,
            user=None,
            chunks=[data],
            size=len(data),
            input_name="many.pcap",
        )
    )
    assert job.status == JobStatus.SUCCEEDED, job.failure_reason
    assert (job_dir(job.pk) / "output.pcap").read_bytes() == data
    carried = {provider.pk: 0 for provider in providers}
    for item in job.items.all():
        carried[item.provider_id] += item.bytes_in
    total = sum(carried.values())
    for line in plan.lines.all():
        assert abs(carried[line.provider_id] / total - line.fraction) < 0.12, (carried, method)
    shares = {entry["provider"]["id"]: entry for entry in job.manifest["dispersal"]}
    assert shares[providers[0].pk]["planned_fraction"] == pytest.approx(0.4, abs=1e-6)


def test_a_subcontractor_is_never_a_provider_the_profile_blocks(recipient):
    planned = provider_with_paths(1000)
    only_able = provider_with_paths(1000, services_offered=["anonymize-ip"])
    profile = SegmentationProfileFactory(
        organization=recipient[0],
        pipeline=[{"service": "anonymize-ip", "where": "udp"}],
        blocked_providers=[only_able.pk],
    )
    data = MANY.read_bytes()
    service_request = request_for(recipient, profile=profile, services=[], data_bytes=len(data))
    answer(service_request, planned)
    plan_current(service_request=service_request)
    job = job_run(
        plan_accept(
            service_request=service_request,
            user=None,
            chunks=[data],
            size=len(data),
            input_name="m",
        )
    )
    assert job.status == JobStatus.FAILED
    assert job.failure_code == "no_subcontractor"
    assert not job.items.filter(provider=only_able).exists()


def test_a_plan_the_time_left_cannot_hold_is_planned_again_and_not_accepted(recipient):
    provider = provider_with_paths(100)
    # 10 GB at 100 Mbit/s: 800 s, with an hour left
    service_request = request_for(recipient, deadline=timezone.now() + timedelta(hours=1))
    answer(service_request, provider, minutes=120)
    plan = plan_current(service_request=service_request)
    assert plan.feasible
    later = service_request.deadline - timedelta(seconds=600)
    replanned = plan_current(service_request=service_request, now=later)
    assert replanned.pk != plan.pk and not replanned.feasible
    assert replanned.failures == ["deadline_too_short"]


def test_a_second_negotiation_starts_from_the_first_ones_quotes(recipient):
    provider = provider_with_paths(1000)
    service_request = request_for(recipient)
    answer(service_request, provider, price=100)
    first = negotiation_open(
        service_request=service_request, closes_at=timezone.now() + timedelta(minutes=5)
    )
    quote_submit(provider=provider, service_request=service_request, price_per_gb_minor=50)
    negotiations_close(now=first.closes_at + timedelta(seconds=1))
    negotiation_open(
        service_request=service_request, closes_at=timezone.now() + timedelta(minutes=10)
    )
    with pytest.raises(RequestRefused) as refused:
        quote_submit(provider=provider, service_request=service_request, price_per_gb_minor=90)
    assert refused.value.code == "quote_not_lower"
    assert "0.50 USD" in refused.value.message
    plan = plan_compute(service_request=service_request)
    assert [line.price_per_gb_minor for line in plan.lines.all()] == [50]


def test_a_request_that_negotiates_opens_its_negotiation_after_collecting_answers(
    recipient, settings, _committed, django_capture_on_commit_callbacks
):
    settings.NEGOTIATION_COLLECT_SECONDS = 60
    settings.NEGOTIATION_SECONDS = 300
    first, second = provider_with_paths(1000), provider_with_paths(1000)
    service_request = request_for(recipient, negotiate=True)
    answer(service_request, first)
    answer(service_request, second)
    plan_current(service_request=service_request)
    with pytest.raises(RequestRefused) as refused:
        accept(service_request)
    assert refused.value.code == "negotiation_pending"

    assert negotiations_open_due(now=timezone.now()) == 0  # still collecting answers
    with django_capture_on_commit_callbacks(execute=True):
        assert negotiations_open_due(now=timezone.now() + timedelta(seconds=61)) == 1
    negotiation = service_request.negotiations.get()
    assert set(negotiation.invited.all()) == {first, second}
    assert _committed[-1][1] == "service_request.quote_requested"
    assert negotiations_open_due(now=timezone.now() + timedelta(seconds=62)) == 0  # once
    with pytest.raises(RequestRefused) as refused:
        accept(service_request)
    assert refused.value.code == "negotiation_open"


def test_a_capture_larger_than_the_planned_volume_is_refused(recipient):
    provider = provider_with_paths(1000)
    data = MANY.read_bytes()
    service_request = request_for(recipient, data_bytes=len(data) // 2)
    answer(service_request, provider)
    plan_current(service_request=service_request)
    for size in (len(data), None):  # announced, or found while storing
        with pytest.raises(RequestRefused) as refused:
            plan_accept(
                service_request=service_request,
                user=None,
                chunks=[data],
                size=size,
                input_name="big.pcap",
            )
        assert refused.value.code == "volume_mismatch"
        assert f"{len(data) // 2:,} bytes the plan was made for" in refused.value.message
    service_request.refresh_from_db()
    assert service_request.status == ServiceRequestStatus.OPEN


def test_accepting_a_plan_another_replaced_is_refused(recipient):
    first, second = provider_with_paths(1000), provider_with_paths(1000)
    service_request = request_for(recipient)
    answer(service_request, first)
    seen = plan_current(service_request=service_request)
    answer(service_request, second)
    plan_current(service_request=service_request)
    with pytest.raises(RequestRefused) as refused:
        plan_accept(
            service_request=service_request,
            user=None,
            chunks=[b""],
            size=0,
            input_name="x",
            plan_id=seen.pk,
        )
    assert refused.value.code == "plan_outdated"
    assert f"Plan {seen.pk} is no longer" in refused.value.message


def test_a_minimum_rating_nobody_meets_refuses_the_request_saying_why(recipient):
    provider_with_paths(1000)
    profile = SegmentationProfileFactory(organization=recipient[0], min_provider_rating=3)
    with pytest.raises(RequestRefused) as refused:
        request_for(recipient, profile=profile)
    assert refused.value.code == "no_eligible_provider"
    assert "rated at least 3" in refused.value.message


def test_a_routing_path_once_offered_cannot_be_deleted(recipient):
    provider = provider_with_paths(1000)
    answer(request_for(recipient), provider)
    with pytest.raises(RoutingPathInUse):
        routing_path_delete(path=paths_of(provider)[0])
    assert provider.routing_paths.count() == 1
