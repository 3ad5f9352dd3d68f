"""Jobs through the services, run in this process: the split into work items, processing,
subcontracting, assemblage with its manifest, metering, pacing, SLA breaches and bad input.

The workers' own loop is not used here (see test_job_durability.py for real worker processes):
`job_run` calls the same services the tasks call, in the order the queue would run them."""

import hashlib
import io
import ipaddress
import json
import struct
from dataclasses import dataclass
from datetime import timedelta

import dpkt
import pytest
from django.utils import timezone

from providers.models import WorkLocation
from segmentation import services
from segmentation.capture import capture_open
from segmentation.jobfiles import job_dir
from segmentation.models import (
    Job,
    JobStatus,
    SlaBreach,
    UsageRecord,
    WorkItem,
    WorkItemKind,
    WorkItemStatus,
)
from segmentation.processing import headers_length
from segmentation.selectors import job_progress, usage_by_provider
from segmentation.split import METHODS
from tests.captures import CAPTURES_DIR
from tests.factories import (
    LeaseFactory,
    OfferFactory,
    OrganizationFactory,
    VerifiedProviderFactory,
    member_of,
)

pytestmark = pytest.mark.django_db

PCAP_CAPTURES = sorted(path.name for path in CAPTURES_DIR.glob("*.pcap"))
METHOD_PARAMS = {
    "file-size": "200000",
    "packet-count": "500",
    "client-ip": "",
    "server-ip": "",
    "server-port": "",
    "client-port": "",
    "ip-src-dst": "",
    "connection": "",
    "bpf-filter": "udp",
    "round-robin": "4",
}


@pytest.fixture(autouse=True)
def _committed(django_capture_on_commit_callbacks, monkeypatch):
    """Each service call's on-commit effects (failed jobs' files removed, notifications) run
    as they would after its commit; tasks are not queued, since `job_run` drives the job."""
    monkeypatch.setattr(services, "_job_advance_enqueue", lambda job_id: None)
    monkeypatch.setattr(services, "_work_item_run_enqueue", lambda item_id: None)

    def call(function, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return function(**kwargs)

    monkeypatch.setattr(_Commit, "call", staticmethod(call))


class _Commit:
    call = None


def job_run(job: Job, *, rounds: int = 50) -> Job:
    """Drive a job as the workers would: advance it, run its waiting exchange items."""
    for _ in range(rounds):
        job.refresh_from_db()
        if job.ended:
            return job
        _Commit.call(services.job_advance, job_id=job.pk)
        waiting = WorkItem.objects.filter(
            job=job, status=WorkItemStatus.PENDING, location=WorkLocation.EXCHANGE
        )
        for item in waiting:
            _Commit.call(services.work_item_run, item_id=item.pk)
    job.refresh_from_db()
    return job


def submit(lease, data: bytes, *, name="capture.pcap", organization=None, chunks=None, **spec):
    spec.setdefault("method", "connection")
    return _Commit.call(
        services.job_submit,
        organization=organization or lease.winner,
        user=None,
        lease_id=lease.pk,
        chunks=[data] if chunks is None else chunks,
        size=len(data) if chunks is None else None,
        input_name=name,
        spec=services.JobSpec(**spec),
    )


def output_of(job: Job) -> bytes:
    return (job_dir(job.pk) / f"output.{job.input_format}").read_bytes()


def pcap_packets(data: bytes) -> list[tuple[float, bytes]]:
    return [(ts, bytes(buf)) for ts, buf in dpkt.pcap.Reader(io.BytesIO(data))]


@pytest.fixture
def lease():
    lease = LeaseFactory()
    OfferFactory(provider=lease.block.provider, service="segmentation")
    return lease


# --- identity --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PCAP_CAPTURES)
def test_identity_pipeline_gives_the_input_back_byte_for_byte(lease, name):
    data = (CAPTURES_DIR / name).read_bytes()

    job = job_run(submit(lease, data, name=name))

    assert job.status == JobStatus.SUCCEEDED, job.failure_reason
    assert output_of(job) == data
    assert job.output_sha256 == hashlib.sha256(data).hexdigest()
    assert job.items_done == job.items_total == job.items.count() >= 1
    assert sum(item.packets_in for item in job.items.all()) == job.packets_total


@pytest.mark.parametrize("method", METHODS)
def test_every_split_method_partitions_the_capture_and_reassembles_it(lease, method):
    data = (CAPTURES_DIR / "many-protocols.pcap").read_bytes()

    job = job_run(submit(lease, data, method=method, param=METHOD_PARAMS[method]))

    assert job.status == JobStatus.SUCCEEDED, job.failure_reason
    assert output_of(job) == data
    segments = job.manifest["segments"]
    assert sum(segment["packets_in"] for segment in segments) == len(pcap_packets(data))
    assert len({segment["number"] for segment in segments}) == len(segments)


def test_pcapng_input_gives_a_pcapng_output_with_the_same_packets(lease):
    data = (CAPTURES_DIR / "pcapng-example.pcapng").read_bytes()

    job = job_run(submit(lease, data, name="example.pcapng", method="round-robin", param="3"))

    assert job.status == JobStatus.SUCCEEDED, job.failure_reason
    assert job.input_format == "pcapng"
    with (
        capture_open(CAPTURES_DIR / "pcapng-example.pcapng") as original,
        capture_open(job_dir(job.pk) / "output.pcapng") as output,
    ):
        expected = [(p.data, p.ts_ns, p.interface) for p in original]
        assert [(p.data, p.ts_ns, p.interface) for p in output] == expected
    assert len(job.manifest["segments"]) == 3


def test_bpf_filter_limits_what_is_split(lease):
    data = (CAPTURES_DIR / "many-protocols.pcap").read_bytes()
    udp = [
        (ts, buf)
        for ts, buf in pcap_packets(data)
        if isinstance(getattr(dpkt.ethernet.Ethernet(buf).data, "data", None), dpkt.udp.UDP)
    ]

    job = job_run(submit(lease, data, bpf_filter="udp"))

    assert job.status == JobStatus.SUCCEEDED, job.failure_reason
    assert pcap_packets(output_of(job)) == udp
    assert job.output_packets == len(udp) < job.packets_total


# --- processing and the manifest ---------------------------------------------------------------


def test_manifest_describes_every_segment_and_the_output(lease):
    OfferFactory(provider=lease.block.provider, service="strip-payload")
    data = (CAPTURES_DIR / "tls.pcap").read_bytes()

    job = job_run(submit(lease, data, pipeline=[{"service": "strip-payload"}]))

    assert job.status == JobStatus.SUCCEEDED, job.failure_reason
    manifest = json.loads((job_dir(job.pk) / "manifest.json").read_text())
    assert manifest == job.manifest
    assert manifest["input"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert manifest["output"]["sha256"] == hashlib.sha256(output_of(job)).hexdigest()
    provider = lease.block.provider
    for segment in manifest["segments"]:
        assert segment["provider"] == {"id": provider.pk, "name": provider.legal_name}
        assert segment["kind"] == "segment" and segment["location"] == "exchange"
        assert segment["packets"] == segment["packets_in"]
        assert len(segment["sha256"]) == 64 and segment["seconds"] >= 0
        assert segment["started_at"] <= segment["finished_at"]
    packets = pcap_packets(output_of(job))
    assert len(packets) == len(pcap_packets(data))
    assert all(len(buf) == headers_length(buf, 1) for _, buf in packets)
    assert manifest["output"]["bytes"] < manifest["input"]["bytes"]


def test_dedupe_removes_injected_duplicates_and_nothing_else(lease):
    OfferFactory(provider=lease.block.provider, service="dedupe")
    original = pcap_packets((CAPTURES_DIR / "http-packets.pcap").read_bytes())
    out = io.BytesIO()
    writer = dpkt.pcap.Writer(out)
    for number, (ts, buf) in enumerate(original):
        writer.writepkt(buf, ts)
        if number % 7 == 0:
            writer.writepkt(buf, ts)  # an injected copy right after the packet

    job = job_run(
        submit(
            lease,
            out.getvalue(),
            method="packet-count",
            param="1000000",
            pipeline=[{"service": "dedupe", "window": 2}],
        )
    )

    assert job.status == JobStatus.SUCCEEDED, job.failure_reason
    assert [buf for _, buf in pcap_packets(output_of(job))] == [buf for _, buf in original]


# --- subcontracting ----------------------------------------------------------------------------


@dataclass
class _Addresses:
    src: bytes
    dst: bytes
    protocol: int


def _ip_of(buf: bytes) -> _Addresses | None:
    """The IP addresses and next protocol of an Ethernet frame, read by hand (no dpkt layer
    parsing: stripped packets are cut after their headers)."""
    offset, ethertype = 14, int.from_bytes(buf[12:14], "big")
    while ethertype in (0x8100, 0x88A8):
        ethertype, offset = int.from_bytes(buf[offset + 2 : offset + 4], "big"), offset + 4
    if ethertype == 0x0800 and len(buf) >= offset + 20:
        return _Addresses(
            buf[offset + 12 : offset + 16], buf[offset + 16 : offset + 20], buf[offset + 9]
        )
    if ethertype == 0x86DD and len(buf) >= offset + 40:
        return _Addresses(
            buf[offset + 8 : offset + 24], buf[offset + 24 : offset + 40], buf[offset + 6]
        )
    return None


@pytest.fixture
def anonymizers():
    """Two verified providers offering anonymize-ip: the cheap one and a dearer one."""
    cheap, dear = VerifiedProviderFactory(), VerifiedProviderFactory()
    for provider, price in ((cheap, 100), (dear, 900)):
        OfferFactory(provider=provider, service="anonymize-ip", price_per_gb_minor=price)
        OfferFactory(provider=provider, service="strip-payload", price_per_gb_minor=price)
    return cheap, dear


SUBCONTRACTED = [{"service": "anonymize-ip", "where": "udp"}, {"service": "strip-payload"}]


def test_packets_needing_a_service_the_provider_lacks_are_subcontracted_to_the_cheapest(
    lease, anonymizers
):
    cheap, _dear = anonymizers
    OfferFactory(provider=lease.block.provider, service="strip-payload")
    data = (CAPTURES_DIR / "many-protocols.pcap").read_bytes()

    job = job_run(submit(lease, data, method="server-port", pipeline=SUBCONTRACTED))

    assert job.status == JobStatus.SUCCEEDED, job.failure_reason
    subcontract = job.items.get(kind=WorkItemKind.SUBCONTRACT)
    assert subcontract.provider == cheap
    assert set(job.items.exclude(pk=subcontract.pk).values_list("provider", flat=True)) == {
        lease.block.provider.pk
    }
    before, after = pcap_packets(data), pcap_packets(output_of(job))
    assert len(after) == len(before)
    udp = [index for index, (_, buf) in enumerate(before) if _is_udp(buf)]
    assert subcontract.packets_in == len(udp) > 0
    mapping: dict[bytes, bytes] = {}
    for index, ((ts_in, buf_in), (ts_out, buf_out)) in enumerate(zip(before, after, strict=True)):
        assert ts_in == ts_out  # the original order, nothing lost or doubled
        ip_in, ip_out = _ip_of(buf_in), _ip_of(buf_out)
        if ip_in is None:
            continue
        if index in udp:
            assert (ip_out.src, ip_out.dst) != (ip_in.src, ip_in.dst)
            for a, b in ((ip_in.src, ip_out.src), (ip_in.dst, ip_out.dst)):
                assert mapping.setdefault(a, b) == b  # one address, one pseudonym
                assert len(a) == len(b)
        else:
            assert (ip_out.src, ip_out.dst) == (ip_in.src, ip_in.dst)
        assert len(buf_out) == headers_length(buf_out, 1)
    _assert_prefixes_preserved(mapping)
    kinds = {(record.provider_id, record.kind) for record in UsageRecord.objects.filter(job=job)}
    assert (cheap.pk, WorkItemKind.SUBCONTRACT) in kinds
    assert (lease.block.provider.pk, WorkItemKind.SEGMENT) in kinds


def _is_udp(buf: bytes) -> bool:
    ip = _ip_of(buf)
    return ip is not None and ip.protocol == 17


def _assert_prefixes_preserved(mapping: dict[bytes, bytes]) -> None:
    addresses = [(a, b) for a, b in mapping.items() if len(a) == 4]
    assert len(addresses) >= 2
    for a, a_out in addresses:
        for b, b_out in addresses:
            shared = _common_prefix(a, b)
            assert _common_prefix(a_out, b_out) == shared


def _common_prefix(a: bytes, b: bytes) -> int:
    x = int(ipaddress.IPv4Address(a)) ^ int(ipaddress.IPv4Address(b))
    return 32 - x.bit_length()


def test_the_profiles_preferred_provider_wins_over_the_cheapest(lease, anonymizers):
    _cheap, dear = anonymizers
    OfferFactory(provider=lease.block.provider, service="strip-payload")
    data = (CAPTURES_DIR / "DnsPackets.pcap").read_bytes()

    job = job_run(
        submit(lease, data, pipeline=SUBCONTRACTED, preferred_providers=[999_999, dear.pk])
    )

    assert job.status == JobStatus.SUCCEEDED, job.failure_reason
    assert job.items.get(kind=WorkItemKind.SUBCONTRACT).provider == dear


def test_a_service_nobody_offers_fails_the_job_with_the_reason(lease):
    data = (CAPTURES_DIR / "DnsPackets.pcap").read_bytes()

    job = job_run(submit(lease, data, pipeline=[{"service": "anonymize-ip"}]))

    assert job.status == JobStatus.FAILED
    assert job.failure_code == "no_subcontractor"
    assert "anonymize-ip" in job.failure_reason
    assert not job_dir(job.pk).exists()


def test_suspended_or_unverified_providers_are_not_subcontracted(lease, anonymizers):
    cheap, dear = anonymizers
    cheap.status = "suspended"
    cheap.save()
    OfferFactory(provider=lease.block.provider, service="strip-payload")

    job = job_run(
        submit(lease, (CAPTURES_DIR / "DnsPackets.pcap").read_bytes(), pipeline=SUBCONTRACTED)
    )

    assert job.items.get(kind=WorkItemKind.SUBCONTRACT).provider == dear


# --- metering, pacing, SLA ---------------------------------------------------------------------


def test_usage_is_metered_per_provider_and_lease(lease, anonymizers):
    cheap, _ = anonymizers
    OfferFactory(provider=lease.block.provider, service="strip-payload")
    data = (CAPTURES_DIR / "many-protocols.pcap").read_bytes()
    first = job_run(submit(lease, data, pipeline=SUBCONTRACTED))
    second = job_run(submit(lease, data))

    usage = usage_by_provider(lease=lease)

    assert first.status == second.status == JobStatus.SUCCEEDED
    by_provider = {(row["provider_id"], row["kind"]): row for row in usage}
    items = WorkItem.objects.filter(job__lease=lease)
    for (provider_id, kind), row in by_provider.items():
        mine = items.filter(provider_id=provider_id, kind=kind)
        assert row["bytes"] == sum(item.bytes_in for item in mine)
        assert row["packets"] == sum(item.packets_in for item in mine)
        assert row["items"] == mine.count()
    total_packets = sum(row["packets"] for row in usage)
    assert total_packets == first.packets_total + second.packets_total
    assert by_provider[(cheap.pk, "subcontract")]["packets"] > 0


def test_a_job_is_paced_to_the_blocks_max_rate():
    lease = LeaseFactory(block__max_rate_mbps=4, block__min_rate_mbps=1)
    data = (CAPTURES_DIR / "many-protocols.pcap").read_bytes()  # 2.9 MB: 5.9 s at 4 Mbit/s

    job = job_run(submit(lease, data, method="round-robin", param="3"))

    assert job.status == JobStatus.SUCCEEDED, job.failure_reason
    seconds = (job.finished_at - job.started_at).total_seconds()
    megabits = job.bytes_total * 8 / 1_000_000
    assert megabits / seconds <= 4  # never faster than the block allows
    assert not SlaBreach.objects.exists()


def test_a_job_slower_than_the_guaranteed_rate_records_an_sla_breach(settings):
    settings.SLA_GRACE_SECONDS = 0
    lease = LeaseFactory(block__max_rate_mbps=100_000_000, block__min_rate_mbps=100_000_000)
    data = (CAPTURES_DIR / "many-protocols.pcap").read_bytes()

    job = job_run(submit(lease, data))

    assert job.status == JobStatus.SUCCEEDED
    breach = SlaBreach.objects.get(job=job)
    assert breach.lease == lease
    assert breach.guaranteed_mbps == 100_000_000
    assert 0 < breach.measured_mbps < breach.guaranteed_mbps
    assert breach.bytes == job.bytes_total
    assert breach.seconds > breach.allowed_seconds


def test_progress_figures_follow_the_job(lease):
    data = (CAPTURES_DIR / "many-protocols.pcap").read_bytes()
    job = submit(lease, data, method="round-robin", param="4")
    assert job_progress(job)["status"] == "queued"

    _Commit.call(services.job_advance, job_id=job.pk)
    job.refresh_from_db()
    progress = job_progress(job)
    assert (progress["status"], progress["items_total"], progress["items_done"]) == (
        "processing",
        4,
        0,
    )
    assert progress["percent"] == 0 and progress["output_url"] is None
    _Commit.call(services.work_item_run, item_id=job.items.first().pk)
    job.refresh_from_db()
    progress = job_progress(job)
    assert progress["items_done"] == 1
    assert 0 < progress["percent"] < 100
    assert progress["packets_done"] == job.items.first().packets_in

    job = job_run(job)
    progress = job_progress(job)
    assert progress["percent"] == 100 and progress["status"] == "succeeded"
    assert progress["output_url"] == f"/jobs/{job.pk}/output/"


# --- bad input ---------------------------------------------------------------------------------


def _rejected(lease, data, **spec) -> services.JobRejected:
    with pytest.raises(services.JobRejected) as caught:
        submit(lease, data, **spec)
    return caught.value


def _assert_failed_job(rejection, code):
    assert rejection.code == code
    job = Job.objects.get(pk=rejection.job.pk)
    assert job.status == JobStatus.FAILED and job.failure_code == code
    assert job.failure_reason == rejection.message
    assert not job_dir(job.pk).exists()
    return job


def test_a_file_that_is_not_a_capture_is_refused(lease):
    rejection = _rejected(lease, b"GET / HTTP/1.1\r\nHost: example\r\n\r\n" * 10)

    _assert_failed_job(rejection, "not_a_capture")
    assert "not a packet capture" in rejection.message


def test_an_empty_file_is_refused(lease):
    _assert_failed_job(_rejected(lease, b""), "not_a_capture")


def test_a_truncated_capture_fails_the_job_naming_the_record_and_offset(lease):
    data = (CAPTURES_DIR / "http-packets.pcap").read_bytes()
    cut = data[: len(data) // 2]

    job = job_run(submit(lease, cut))

    assert job.status == JobStatus.FAILED and job.failure_code == "bad_capture"
    assert "record" in job.failure_reason and "byte offset" in job.failure_reason
    assert not job_dir(job.pk).exists()


def test_a_capture_without_packets_fails_the_job(lease):
    header = (CAPTURES_DIR / "http-packets.pcap").read_bytes()[:24]

    job = job_run(submit(lease, header))

    assert job.status == JobStatus.FAILED and job.failure_code == "no_packets"
    assert "holds no packets" in job.failure_reason


def test_a_filter_nothing_matches_fails_the_job(lease):
    data = (CAPTURES_DIR / "http-packets.pcap").read_bytes()

    job = job_run(submit(lease, data, bpf_filter="port 4"))

    assert job.status == JobStatus.FAILED and job.failure_code == "no_packets"
    assert "port 4" in job.failure_reason


def test_a_capture_over_the_upload_limit_is_refused_without_storing_it(lease, settings):
    settings.JOB_UPLOAD_MAX_BYTES = 10_000
    data = (CAPTURES_DIR / "http-packets.pcap").read_bytes()

    announced = _rejected(lease, data)
    unannounced = _rejected(
        lease, data, chunks=[data[i : i + 4096] for i in range(0, len(data), 4096)]
    )

    _assert_failed_job(announced, "upload_too_large")
    _assert_failed_job(unannounced, "upload_too_large")
    assert "10,000 bytes" in announced.message


def test_bad_bpf_syntax_is_refused(lease):
    data = (CAPTURES_DIR / "http-packets.pcap").read_bytes()

    rejection = _rejected(lease, data, bpf_filter="tcp and and port")
    pipeline = _rejected(lease, data, pipeline=[{"service": "filter", "expression": "udp port"}])

    assert "BPF filter" in _assert_failed_job(rejection, "bad_bpf").failure_reason
    reason = _assert_failed_job(pipeline, "invalid_pipeline").failure_reason
    assert "bad BPF expression 'udp port'" in reason


@pytest.mark.parametrize(
    ("method", "param", "says"),
    [("slice", "", "slice"), ("packet-count", "many", "packet-count"), ("file-size", "-5", "")],
)
def test_bad_split_methods_and_parameters_are_refused(lease, method, param, says):
    rejection = _rejected(lease, b"irrelevant", method=method, param=param)

    _assert_failed_job(rejection, "invalid_split")
    assert says in rejection.message


def test_a_lease_that_has_ended_is_refused(lease):
    lease.ends_at = timezone.now() - timedelta(minutes=1)
    lease.save()

    rejection = _rejected(lease, (CAPTURES_DIR / "http-packets.pcap").read_bytes())

    assert _assert_failed_job(rejection, "lease_ended").lease == lease
    assert "ended" in rejection.message


def test_someone_elses_lease_is_refused_without_revealing_it(lease):
    stranger = OrganizationFactory()
    data = (CAPTURES_DIR / "http-packets.pcap").read_bytes()

    rejection = _rejected(lease, data, organization=stranger)

    job = _assert_failed_job(rejection, "lease_not_found")
    assert job.organization == stranger and job.lease is None
    assert not Job.objects.filter(lease=lease).exists()


def test_a_bad_job_disturbs_nothing_else(lease):
    data = (CAPTURES_DIR / "many-protocols.pcap").read_bytes()
    good = submit(lease, data)
    _Commit.call(services.job_advance, job_id=good.pk)  # split: its work items are waiting

    bad = job_run(submit(lease, data[: len(data) - 100]))
    _rejected(lease, b"not a capture at all")
    good = job_run(good)

    assert bad.status == JobStatus.FAILED
    assert good.status == JobStatus.SUCCEEDED
    assert output_of(good) == data


def test_a_partners_work_item_fails_the_job_after_too_many_attempts(lease, settings):
    settings.WORK_MAX_ATTEMPTS = 2
    provider = lease.block.provider
    provider.work_location = WorkLocation.PARTNER
    provider.save()
    from marketplace.services import api_key_create

    api_key, _ = api_key_create(
        organization=provider.organization,
        created_by=member_of(provider.organization),
        name="agent",
        scope="write",
    )
    job = job_run(submit(lease, (CAPTURES_DIR / "DnsPackets.pcap").read_bytes()))
    assert job.status == JobStatus.PROCESSING

    for _ in range(2):
        item, token = _Commit.call(services.work_claim, api_key=api_key)
        _Commit.call(
            services.work_fail, api_key=api_key, item_id=item.pk, token=token, reason="disk full"
        )

    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and job.failure_code == "work_item_failed"
    assert "disk full" in job.failure_reason
    assert services.work_claim(api_key=api_key) is None


def test_pcap_record_counts_stay_consistent_with_struct_layout():
    # the truncated-capture test cuts inside a record: make sure it does not cut at a boundary
    data = (CAPTURES_DIR / "http-packets.pcap").read_bytes()
    offset, boundaries = 24, {24}
    while offset < len(data):
        (caplen,) = struct.unpack_from("<I", data, offset + 8)
        offset += 16 + caplen
        boundaries.add(offset)
    assert len(data) // 2 not in boundaries


# --- robustness ------------------------------------------------------------------------------


def test_a_block_without_a_guaranteed_rate_never_records_a_breach(settings):
    settings.SLA_GRACE_SECONDS = 0
    lease = LeaseFactory(block__min_rate_mbps=0)

    job = job_run(submit(lease, (CAPTURES_DIR / "DnsPackets.pcap").read_bytes()))

    assert job.status == JobStatus.SUCCEEDED, job.failure_reason
    assert not SlaBreach.objects.exists()


def test_a_bad_bpf_filter_methods_parameter_is_refused_at_once(lease):
    rejection = _rejected(lease, b"irrelevant", method="bpf-filter", param="tcp and (")

    assert "bpf-filter" in _assert_failed_job(rejection, "bad_bpf").failure_reason


def test_a_malformed_pipeline_step_is_refused_with_its_reason(lease):
    rejection = _rejected(lease, b"irrelevant", pipeline=[{"service": []}])

    assert (
        "unknown processing service"
        in _assert_failed_job(rejection, "invalid_pipeline").failure_reason
    )


def test_a_second_run_of_the_split_leaves_the_first_runs_items_and_files_alone(lease):
    data = (CAPTURES_DIR / "many-protocols.pcap").read_bytes()
    job = submit(lease, data, method="round-robin", param="3")
    _Commit.call(services.job_advance, job_id=job.pk)
    items = list(job.items.values_list("pk", "segment_path", "sha256_in"))
    # a stale run of the same task (its worker's lease ran out while it worked) starts again
    Job.objects.filter(pk=job.pk).update(status=JobStatus.SPLITTING)
    _Commit.call(services.job_advance, job_id=job.pk)
    Job.objects.filter(pk=job.pk).update(status=JobStatus.PROCESSING)

    job = job_run(job)

    assert job.status == JobStatus.SUCCEEDED, job.failure_reason
    assert output_of(job) == data
    assert sorted(item[1:] for item in items) == sorted(
        job.items.values_list("segment_path", "sha256_in")
    )
    assert not list(job_dir(job.pk).glob("split.tmp-*"))


def test_the_reconciler_queues_again_what_a_dead_worker_never_queued(lease, monkeypatch):
    queued = []
    monkeypatch.setattr(
        services, "_job_advance_enqueue", lambda job_id: queued.append(("job", job_id))
    )
    monkeypatch.setattr(
        services, "_work_item_run_enqueue", lambda item_id: queued.append(("item", item_id))
    )
    data = (CAPTURES_DIR / "DnsPackets.pcap").read_bytes()
    waiting = submit(lease, data, method="round-robin", param="2")  # queued, never advanced
    split = submit(lease, data, method="round-robin", param="2")
    _Commit.call(services.job_advance, job_id=split.pk)  # its items' tasks were lost
    queued.clear()

    assert services.jobs_reconcile(idle_seconds=60) == 0  # nothing idle long enough yet
    nudged = services.jobs_reconcile(idle_seconds=0)

    assert nudged == 2
    assert ("job", waiting.pk) in queued
    assert {entry for entry in queued if entry[0] == "item"} == {
        ("item", pk) for pk in split.items.values_list("pk", flat=True)
    }
    for pk in (waiting.pk, split.pk):  # nudged jobs are left alone for a while
        assert Job.objects.get(pk=pk).updated_at > timezone.now() - timedelta(seconds=5)
    assert services.jobs_reconcile(idle_seconds=5) == 0


def test_anonymization_in_the_exchange_gives_a_recipient_the_same_pseudonyms_in_every_job(lease):
    OfferFactory(provider=lease.block.provider, service="anonymize-ip")
    data = (CAPTURES_DIR / "DnsPackets.pcap").read_bytes()
    other_buyer_lease = LeaseFactory()
    OfferFactory(provider=other_buyer_lease.block.provider, service="anonymize-ip")

    first = job_run(submit(lease, data, pipeline=[{"service": "anonymize-ip"}]))
    second = job_run(
        submit(lease, data, method="round-robin", param="3", pipeline=[{"service": "anonymize-ip"}])
    )
    stranger = job_run(submit(other_buyer_lease, data, pipeline=[{"service": "anonymize-ip"}]))

    assert not first.key_per_job and not second.key_per_job
    assert output_of(first) == output_of(second) != data
    assert output_of(stranger) != output_of(first)  # keyed per recipient
