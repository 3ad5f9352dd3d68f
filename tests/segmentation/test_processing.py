"""Processing services (SPEC §5.3) on the real captures in ../shared/data/pcap.

Expected results are computed here independently of the services: addresses and checksums
with dpkt, duplicates with a naive re-statement of editcap's rule.
"""

import ipaddress
import itertools
import random
import struct
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import dpkt
import pytest

from providers.models import Service
from segmentation import processing
from segmentation.capture import capture_open
from segmentation.cryptopan import CryptoPAn
from segmentation.decode import network_layer
from segmentation.packet import Packet
from segmentation.processing import (
    SERVICES,
    ProcessingError,
    anonymize_ip,
    compress_bytes,
    compress_file,
    decompress_bytes,
    decompress_file,
    dedupe,
    filter_packets,
    pipeline_build,
    recipient_key,
    services_required,
    strip_payload,
)
from tests.captures import CAPTURES_DIR

PCAP_DIR = CAPTURES_DIR
CAPTURES = sorted(path.name for path in PCAP_DIR.iterdir())
IP_CAPTURES = [
    "DnsPackets.pcap",
    "four_ipv6_http_streams.pcap",
    "http-packets.pcap",
    "ip4_fragments.pcap",
    "many-protocols.pcap",
    "null_loopback.pcap",
    "pcapng-example.pcapng",
    "raw_ip.pcap",
    "sll.pcap",
    "tls.pcap",
]
KEY_A = bytes(range(32))
KEY_B = bytes(range(1, 33))


def read(name: str) -> list[Packet]:
    with capture_open(PCAP_DIR / name) as reader:
        return list(reader)


# --- independent views of a packet, through dpkt ---------------------------------------------


def ip_of(packet: Packet):
    """(offset, dpkt IP or IP6 object) of a packet's IP header, or None."""
    located = network_layer(packet.data, packet.linktype)
    if located is None:
        return None
    offset, version = located
    try:
        if version == 4:
            return offset, dpkt.ip.IP(packet.data[offset:])
        return offset, dpkt.ip6.IP6(packet.data[offset:])
    except (dpkt.UnpackError, struct.error):
        return None


def addresses_of(packet: Packet) -> list[bytes]:
    parsed = ip_of(packet)
    return [] if parsed is None else [parsed[1].src, parsed[1].dst]


def checksum_state(packet: Packet) -> tuple[bool | None, bool | None]:
    """Whether the IPv4 header checksum and the TCP/UDP/ICMP(v6) checksum verify.

    None where there is nothing to verify: no IPv4 header, a fragment, a capture cut short, a
    transport without a checksum.
    """
    parsed = ip_of(packet)
    if parsed is None:
        return None, None
    offset, ip = parsed
    raw = packet.data[offset:]
    if isinstance(ip, dpkt.ip.IP):
        header = raw[: ip.hl * 4]
        header_ok = dpkt.in_cksum(header) == 0
        if ip.mf or ip.offset or len(raw) < ip.len:
            return header_ok, None
        segment = raw[ip.hl * 4 : ip.len]
        pseudo = ip.src + ip.dst + struct.pack("!xBH", ip.p, len(segment))
    else:
        header_ok = None
        if len(raw) < 40 + ip.plen or not isinstance(ip.data, dpkt.Packet):
            return header_ok, None
        segment = raw[40 + ip.plen - len(ip.data) : 40 + ip.plen]
        pseudo = ip.src + ip.dst + struct.pack("!I3xB", len(segment), ip.p)
    if ip.p in (6, 17, 58):
        if ip.p == 17 and segment[6:8] == b"\x00\x00":
            return header_ok, None
        return header_ok, dpkt.in_cksum(pseudo + segment) == 0
    if ip.p == 1:
        return header_ok, dpkt.in_cksum(segment) == 0
    return header_ok, None


def common_prefix_length(a: bytes, b: bytes) -> int:
    bits = len(a) * 8
    return bits - (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).bit_length()


# --- anonymize-ip ----------------------------------------------------------------------------


def address_mapping(captures: list[str], key: bytes) -> dict[bytes, bytes]:
    mapping: dict[bytes, bytes] = {}
    for name in captures:
        packets = read(name)
        for before, after in zip(packets, anonymize_ip(packets, key=key), strict=True):
            for original, anonymized in zip(addresses_of(before), addresses_of(after), strict=True):
                assert mapping.setdefault(original, anonymized) == anonymized
    return mapping


def test_anonymize_ip_keeps_every_common_prefix_length_across_the_captures():
    mapping = address_mapping(IP_CAPTURES, KEY_A)
    ipv4 = [pair for pair in mapping.items() if len(pair[0]) == 4]
    ipv6 = [pair for pair in mapping.items() if len(pair[0]) == 16]
    assert len(ipv4) > 50 and len(ipv6) > 10
    assert len(set(mapping.values())) == len(mapping)  # one-to-one
    assert sum(original != anonymized for original, anonymized in mapping.items()) > 0.9 * len(
        mapping
    )
    for pairs in (ipv4, ipv6):
        for (a, anon_a), (b, anon_b) in itertools.combinations(pairs, 2):
            assert common_prefix_length(a, b) == common_prefix_length(anon_a, anon_b), (
                ipaddress.ip_address(a),
                ipaddress.ip_address(b),
            )


def test_anonymize_ip_maps_addresses_as_crypto_pan_does():
    cryptopan = CryptoPAn(KEY_A)
    mapping = address_mapping(["tls.pcap", "raw_ip.pcap"], KEY_A)
    for original, anonymized in mapping.items():
        assert cryptopan.anonymize_bytes(original) == anonymized


def test_anonymize_ip_is_deterministic_per_key_and_differs_between_keys():
    packets = read("many-protocols.pcap")
    first = list(anonymize_ip(packets, key=KEY_A))
    again = list(anonymize_ip(read("many-protocols.pcap"), key=KEY_A))
    other = list(anonymize_ip(packets, key=KEY_B))
    assert first == again
    assert [p.data for p in first] != [p.data for p in other]
    for mine, theirs in zip(first, other, strict=True):
        if addresses_of(mine):
            assert addresses_of(mine) != addresses_of(theirs)


def test_anonymize_ip_changes_only_addresses_and_checksums():
    packets = read("http-packets.pcap")
    for before, after in zip(packets, anonymize_ip(packets, key=KEY_A), strict=True):
        assert (after.index, after.ts_ns, after.orig_len, after.linktype) == (
            before.index,
            before.ts_ns,
            before.orig_len,
            before.linktype,
        )
        assert after.header is None and len(after.data) == len(before.data)
        offset = network_layer(before.data, before.linktype)[0]
        changed = {i for i, (x, y) in enumerate(zip(before.data, after.data)) if x != y}
        header_length = (before.data[offset] & 0x0F) * 4
        allowed = set(range(offset + 10, offset + 20)) | {
            offset + header_length + 16,  # TCP checksum
            offset + header_length + 17,
        }
        assert changed <= allowed


@pytest.mark.parametrize("name", IP_CAPTURES)
def test_anonymize_ip_checksums_still_verify_after_rewriting(name):
    packets = read(name)
    verified = 0
    for before, after in zip(packets, anonymize_ip(packets, key=KEY_A), strict=True):
        state = checksum_state(before)
        # a checksum that was right stays right; one wrong in the capture (offload) stays wrong
        assert checksum_state(after) == state, before.index
        verified += (state[0] is True) + (state[1] is True)
    assert verified > 0


def test_anonymize_ip_checksums_verify_on_every_complete_packet():
    verified = 0
    for name in IP_CAPTURES:
        packets = read(name)
        for before, after in zip(packets, anonymize_ip(packets, key=KEY_A), strict=True):
            header_ok, transport_ok = checksum_state(before)
            if header_ok:
                assert checksum_state(after)[0] is True
            if transport_ok:
                assert checksum_state(after)[1] is True
                verified += 1
    assert verified > 5000


def test_anonymize_ip_rewrites_ipv6_headers():
    cryptopan = CryptoPAn(KEY_A)
    packets = read("four_ipv6_http_streams.pcap")
    anonymized = list(anonymize_ip(packets, key=KEY_A))
    for before, after in zip(packets, anonymized, strict=True):
        original, rewritten = addresses_of(before), addresses_of(after)
        assert [len(a) for a in original] == [16, 16]
        assert rewritten == [cryptopan.anonymize_bytes(a) for a in original]
        assert checksum_state(after)[1] is checksum_state(before)[1] is True


def test_anonymize_ip_passes_packets_without_ip_unchanged():
    for name in ("microsecs_big_endian.pcap", "ip4_bad_fragment.pcap", "nanosecs.pcap"):
        packets = read(name)
        out = list(anonymize_ip(packets, key=KEY_A))
        assert all(a is b for a, b in zip(out, packets, strict=True))


def test_anonymize_ip_rewrites_arp_addresses_like_ip_addresses():
    cryptopan = CryptoPAn(KEY_A)
    packets = [p for p in read("many-protocols.pcap") if p.data[12:14] == b"\x08\x06"]
    assert packets
    for before, after in zip(packets, anonymize_ip(packets, key=KEY_A), strict=True):
        arp_before, arp_after = dpkt.arp.ARP(before.data[14:]), dpkt.arp.ARP(after.data[14:])
        assert arp_after.spa == cryptopan.anonymize_bytes(arp_before.spa)
        assert arp_after.tpa == cryptopan.anonymize_bytes(arp_before.tpa)
        assert arp_after.sha == arp_before.sha


def ethernet(ip, ethertype=dpkt.ethernet.ETH_TYPE_IP) -> Packet:
    frame = dpkt.ethernet.Ethernet(
        src=b"\x02\x00\x00\x00\x00\x01", dst=b"\x02\x00\x00\x00\x00\x02", type=ethertype, data=ip
    )
    data = bytes(frame)
    return Packet(index=0, data=data, ts_ns=0, orig_len=len(data), linktype=1)


def ipv4(src: str, dst: str, proto: int, payload) -> dpkt.ip.IP:
    return dpkt.ip.IP(
        src=ipaddress.IPv4Address(src).packed,
        dst=ipaddress.IPv4Address(dst).packed,
        p=proto,
        ttl=64,
        data=payload,
    )


def ipv6(src: str, dst: str, proto: int, payload) -> dpkt.ip6.IP6:
    ip = dpkt.ip6.IP6(
        src=ipaddress.IPv6Address(src).packed,
        dst=ipaddress.IPv6Address(dst).packed,
        nxt=proto,
        hlim=64,
        data=payload,
    )
    ip.plen = len(bytes(payload))
    return ip


def anonymized_one(packet: Packet) -> Packet:
    return next(anonymize_ip([packet], key=KEY_A))


def test_anonymize_ip_rewrites_the_header_quoted_by_an_icmp_error():
    cryptopan = CryptoPAn(KEY_A)
    quoted = bytes(ipv4("192.0.2.7", "198.51.100.9", 17, dpkt.udp.UDP(sport=5353, dport=53)))
    error = dpkt.icmp.ICMP(type=3, code=3, data=dpkt.icmp.ICMP.Unreach(data=quoted))
    packet = ethernet(ipv4("198.51.100.9", "192.0.2.7", 1, error))
    after = anonymized_one(packet)
    outer = dpkt.ip.IP(after.data[14:])
    quoted_after = after.data[14 + 20 + 8 :]
    inner = dpkt.ip.IP(quoted_after)
    assert outer.src == cryptopan.anonymize_bytes(ipaddress.IPv4Address("198.51.100.9").packed)
    assert (inner.src, inner.dst) == (outer.dst, outer.src)
    assert checksum_state(after) == (True, True)
    assert dpkt.in_cksum(quoted_after[:20]) == 0
    # The quoted UDP checksum is the one the anonymized datagram itself would carry.
    alone = anonymized_one(ethernet(dpkt.ip.IP(quoted)))
    assert quoted_after[26:28] == alone.data[14 + 26 : 14 + 28]


def test_anonymize_ip_rewrites_neighbour_discovery_targets_and_ipv6_icmp_errors():
    cryptopan = CryptoPAn(KEY_A)
    target = ipaddress.IPv6Address("2001:db8::99").packed
    solicitation = dpkt.icmp6.ICMP6(type=135, code=0, data=b"\x00" * 4 + target)
    after = anonymized_one(
        ethernet(ipv6("2001:db8::1", "ff02::1:ff00:99", 58, solicitation), 0x86DD)
    )
    assert after.data[-16:] == cryptopan.anonymize_bytes(target)
    assert checksum_state(after) == (None, True)

    quoted = bytes(ipv6("2001:db8::1", "2001:db8:1::5", 17, dpkt.udp.UDP(sport=1, dport=2)))
    unreachable = dpkt.icmp6.ICMP6(type=1, code=4, data=b"\x00" * 4 + quoted)
    after = anonymized_one(ethernet(ipv6("2001:db8:1::5", "2001:db8::1", 58, unreachable), 0x86DD))
    inner = after.data[14 + 40 + 8 :]
    assert inner[8:24] == cryptopan.anonymize_bytes(ipaddress.IPv6Address("2001:db8::1").packed)
    assert checksum_state(after) == (None, True)


def test_anonymize_ip_rewrites_tunnelled_headers():
    cryptopan = CryptoPAn(KEY_A)
    tcp = dpkt.tcp.TCP(sport=1234, dport=80, seq=1, flags=dpkt.tcp.TH_SYN, data=b"x" * 10)
    inner = ipv4("10.1.2.3", "10.9.8.7", 6, tcp)
    after = anonymized_one(ethernet(ipv4("203.0.113.1", "203.0.113.2", 4, inner)))
    tunnelled = dpkt.ip.IP(after.data[14 + 20 :])
    assert tunnelled.src == cryptopan.anonymize_bytes(ipaddress.IPv4Address("10.1.2.3").packed)
    tunnelled_packet = Packet(0, after.data[14 + 20 :], 0, len(after.data) - 34, 101)
    assert checksum_state(tunnelled_packet) == (True, True)
    assert checksum_state(after)[0] is True


def test_anonymize_ip_updates_first_fragments_and_truncated_packets_consistently():
    cryptopan = CryptoPAn(KEY_A)
    udp = dpkt.udp.UDP(sport=7, dport=9, data=bytes(range(200)))
    whole = ethernet(ipv4("192.0.2.1", "192.0.2.200", 17, udp))
    cut = replace(whole, data=whole.data[:60])  # captured with a 60-byte snap length
    after_whole, after_cut = anonymized_one(whole), anonymized_one(cut)
    assert after_cut.data == after_whole.data[:60]
    assert checksum_state(after_whole) == (True, True)
    assert after_cut.data[26:30] == cryptopan.anonymize_bytes(whole.data[26:30])


def test_recipient_key_is_32_bytes_stable_and_differs_per_recipient(settings):
    settings.SECRET_KEY = "a-test-secret-key-that-is-long-enough-for-django-checks-0123456789"
    key = recipient_key(7)
    assert len(key) == 32
    assert recipient_key(7) == key
    assert recipient_key(8) != key
    settings.SECRET_KEY = "another-secret-key-that-is-long-enough-for-django-checks-012345678"
    assert recipient_key(7) != key


def test_recipient_key_is_the_same_in_a_fresh_process(settings):
    secret = "a-test-secret-key-that-is-long-enough-for-django-checks-0123456789"
    settings.SECRET_KEY = secret
    script = (
        "import django; django.setup(); "
        "from segmentation.processing import recipient_key; print(recipient_key(42).hex())"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
        env={
            "DJANGO_SETTINGS_MODULE": "marketplace.settings",
            "SECRET_KEY": secret,
            "PATH": "/usr/bin:/bin",
        },
    )
    assert result.stdout.strip() == recipient_key(42).hex()


# --- strip-payload ---------------------------------------------------------------------------


def transport_header_end(packet: Packet) -> int | None:
    """Where the TCP/UDP/ICMP header ends, from dpkt; None for anything else."""
    parsed = ip_of(packet)
    if parsed is None:
        return None
    offset, ip = parsed
    if isinstance(ip, dpkt.ip.IP):
        if ip.offset:
            return None
        start = offset + ip.hl * 4
    else:
        if not isinstance(ip.data, dpkt.Packet):
            return None
        start = offset + 40 + ip.plen - len(ip.data)
    if isinstance(ip.data, dpkt.tcp.TCP):
        return start + ip.data.off * 4
    if isinstance(ip.data, dpkt.udp.UDP | dpkt.icmp.ICMP | dpkt.icmp6.ICMP6):
        return start + 8
    return None


@pytest.mark.parametrize("keep_bytes", [0, 16, 64])
@pytest.mark.parametrize("name", CAPTURES)
def test_strip_payload_keeps_headers_and_at_most_keep_bytes(name, keep_bytes):
    packets = read(name)
    stripped = list(strip_payload(packets, keep_bytes=keep_bytes))
    checked = 0
    for before, after in zip(packets, stripped, strict=True):
        assert (after.index, after.orig_len, after.ts_ns) == (
            before.index,
            before.orig_len,
            before.ts_ns,
        )
        assert before.data.startswith(after.data)
        if after.data != before.data:
            assert after.header is None
        end = transport_header_end(before)
        if end is not None and end <= len(before.data):
            assert after.data[:end] == before.data[:end]
            assert len(after.data) - end <= keep_bytes
            checked += 1
    if name in IP_CAPTURES:
        assert checked > 0


def test_strip_payload_keeps_only_the_link_header_of_non_ip_frames():
    arp = [p for p in read("many-protocols.pcap") if p.data[12:14] == b"\x08\x06"]
    assert [len(p.data) for p in strip_payload(arp)] == [14] * len(arp)
    assert [len(p.data) for p in strip_payload(arp, keep_bytes=8)] == [22] * len(arp)


def test_strip_payload_cuts_the_payload_of_real_http_packets():
    packets = read("http-packets.pcap")
    before = sum(len(p.data) for p in packets)
    after = sum(len(p.data) for p in strip_payload(packets))
    assert after < before / 5
    assert sum(len(p.data) for p in strip_payload(packets, keep_bytes=100_000)) == before


# --- dedupe ----------------------------------------------------------------------------------


def distinct(packets: list[Packet]) -> list[Packet]:
    """The first packet of each distinct content: a real capture with no duplicates at all."""
    seen: set[bytes] = set()
    return [p for p in packets if not (p.data in seen or seen.add(p.data))]


def editcap_dedupe(packets: list[Packet], window: int = 5) -> list[Packet]:
    """editcap -D window, restated naively: compared with the window - 1 packets before."""
    return [
        p
        for i, p in enumerate(packets)
        if all(q.data != p.data for q in packets[max(0, i - (window - 1)) : i])
    ]


def with_copies(packets: list[Packet], distances: dict[int, int]) -> list[Packet]:
    """Insert, after position i + distance, a copy of packet i (its index marks it a copy)."""
    result = list(packets)
    for position, distance in sorted(distances.items(), reverse=True):
        copy = replace(packets[position], index=1_000_000 + position)
        result.insert(position + distance, copy)
    return result


def test_dedupe_removes_injected_duplicates_and_nothing_else():
    packets = distinct(read("many-protocols.pcap"))
    assert len(packets) > 4000
    copies = {i: 1 + i % 4 for i in range(0, len(packets) - 10, 37)}
    injected = with_copies(packets, copies)
    assert len(injected) == len(packets) + len(copies)
    assert list(dedupe(injected)) == packets


def test_dedupe_window_counts_the_current_packet_as_editcap_does():
    packets = distinct(read("http-packets.pcap"))[:200]
    near = with_copies(packets, {10: 4})  # 3 packets between: within a window of 5
    far = with_copies(packets, {10: 5})  # 4 packets between: outside it
    assert list(dedupe(near)) == packets
    assert list(dedupe(far)) == far
    assert list(dedupe(far, window=6)) == packets
    assert list(dedupe(near, window=1)) == near


@pytest.mark.parametrize("name", ["ip4_fragments.pcap", "microsecs_big_endian.pcap", "sll.pcap"])
@pytest.mark.parametrize("window", [2, 5, 20])
def test_dedupe_agrees_with_editcap_on_real_captures(name, window):
    packets = read(name)
    assert list(dedupe(packets, window=window)) == editcap_dedupe(packets, window)


def test_dedupe_by_time_drops_copies_within_the_window_only():
    packets = distinct(read("DnsPackets.pcap"))[:50]
    timed = [replace(p, ts_ns=i * 10_000_000) for i, p in enumerate(packets)]  # 10 ms apart
    soon = replace(timed[3], index=99, ts_ns=timed[3].ts_ns + 2_000_000)
    late = replace(timed[7], index=98, ts_ns=timed[7].ts_ns + 60_000_000)
    stream = sorted([*timed, soon, late], key=lambda p: p.ts_ns)
    assert list(dedupe(stream, time_window_ns=50_000_000)) == [p for p in stream if p is not soon]


def test_services_called_directly_refuse_bad_parameters():
    packets = read("tls.pcap")
    with pytest.raises(ProcessingError, match="window"):
        list(dedupe(packets, window=0))
    with pytest.raises(ProcessingError, match="either"):
        list(dedupe(packets, window=2, time_window_ns=5))
    with pytest.raises(ProcessingError, match="negative"):
        list(dedupe(packets, time_window_ns=-1))
    with pytest.raises(ProcessingError, match="negative"):
        list(strip_payload(packets, keep_bytes=-1))


def test_dedupe_is_lazy_and_streams():
    endless = (Packet(i, i.to_bytes(4, "big"), i, 4, 1) for i in itertools.count())
    assert [p.index for p in itertools.islice(dedupe(endless), 5)] == [0, 1, 2, 3, 4]


# --- filter ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expression"),
    [
        ("many-protocols.pcap", "tcp"),
        ("many-protocols.pcap", "udp port 53 or icmp"),
        ("sll.pcap", "ip6 or arp"),
        ("raw_ip.pcap", "ip6"),
        ("pcapng-example.pcapng", "tcp port 80"),
        ("VlanPackets.pcap", "vlan"),
        ("microsecs_big_endian.pcap", "tcp"),
    ],
)
def test_filter_keep_and_drop_partition_a_capture(name, expression):
    packets = read(name)
    kept = list(filter_packets(packets, expression=expression))
    dropped = list(filter_packets(packets, expression=expression, mode="drop"))
    assert sorted(kept + dropped, key=lambda p: p.index) == packets
    assert not {p.index for p in kept} & {p.index for p in dropped}


def test_filter_keeps_what_the_expression_describes():
    packets = read("many-protocols.pcap")
    kept = list(filter_packets(packets, expression="tcp"))
    expected = [p for p in packets if (parsed := ip_of(p)) and parsed[1].p == 6]
    assert kept == expected and len(kept) == 4321
    assert list(filter_packets(read("DnsPackets.pcap"), expression="tcp")) == []


def test_filter_refuses_bad_syntax():
    with pytest.raises(ProcessingError, match="bad BPF expression"):
        list(filter_packets(read("tls.pcap"), expression="tcp port ("))
    with pytest.raises(ProcessingError, match="mode"):
        list(filter_packets(read("tls.pcap"), expression="tcp", mode="maybe"))


# --- compress --------------------------------------------------------------------------------


def test_compress_round_trips_the_bytes_of_a_capture():
    data = (PCAP_DIR / "http-packets.pcap").read_bytes()
    packed = compress_bytes(data)
    assert len(packed) < len(data)
    assert decompress_bytes(packed) == data
    assert decompress_bytes(compress_bytes(b"")) == b""
    assert decompress_bytes(compress_bytes(b"abc") + compress_bytes(b"def", level=19)) == b"abcdef"


@pytest.mark.parametrize("bad", [b"", b"not zstd at all", None])
def test_decompress_refuses_what_is_not_whole_zstd_data(bad):
    if bad is None:  # a real frame cut short
        bad = compress_bytes((PCAP_DIR / "tls.pcap").read_bytes())[:-10]
    with pytest.raises(ProcessingError):
        decompress_bytes(bad)


def test_compress_file_round_trips_a_capture(tmp_path):
    source = PCAP_DIR / "many-protocols.pcap"
    packed, unpacked = tmp_path / "segment.pcap.zst", tmp_path / "segment.pcap"
    compress_file(source, packed)
    decompress_file(packed, unpacked)
    assert unpacked.read_bytes() == source.read_bytes()
    assert packed.stat().st_size < source.stat().st_size


def test_decompress_file_of_a_cut_file_fails_and_leaves_no_output(tmp_path):
    packed, cut, out = tmp_path / "a.zst", tmp_path / "cut.zst", tmp_path / "out.pcap"
    compress_file(PCAP_DIR / "sll.pcap", packed)
    cut.write_bytes(packed.read_bytes()[:-100])
    with pytest.raises(ProcessingError, match="truncated"):
        decompress_file(cut, out)
    assert not out.exists()


def test_compress_leaves_packets_alone_in_a_pipeline():
    packets = read("tls.pcap")
    run = pipeline_build([{"service": "compress", "level": 9}], recipient_key=KEY_A)
    assert all(a is b for a, b in zip(run(packets), packets, strict=True))
    assert processing.compression_level([{"service": "compress", "level": 9}]) == 9
    assert processing.compression_level([{"service": "dedupe"}]) is None


# --- registry and pipeline -------------------------------------------------------------------


def test_every_processing_service_of_the_catalogue_is_registered():
    assert set(SERVICES) == set(Service.values) - {Service.SEGMENTATION}


def test_a_pipeline_runs_its_steps_in_order_and_keeps_indexes():
    packets = read("many-protocols.pcap")
    steps = [
        {"service": "filter", "expression": "ip", "mode": "keep"},
        {"service": "dedupe", "window": 5},
        {"service": "anonymize-ip"},
        {"service": "strip-payload", "keep_bytes": 64},
        {"service": "compress"},
    ]
    run = pipeline_build(steps, recipient_key=KEY_A)
    out = list(run(iter(packets)))
    expected = list(
        strip_payload(
            anonymize_ip(dedupe(filter_packets(packets, expression="ip"), window=5), key=KEY_A),
            keep_bytes=64,
        )
    )
    assert out == expected
    indexes = [p.index for p in out]
    assert indexes == sorted(indexes) and 4000 < len(indexes) < len(packets)
    assert services_required(steps) == {
        "filter",
        "dedupe",
        "anonymize-ip",
        "strip-payload",
        "compress",
    }


def test_a_pipeline_streams_an_endless_capture():
    packets = read("tls.pcap")
    endless = (
        replace(packets[i % len(packets)], index=i, ts_ns=i * 1_000_000_000)
        for i in itertools.count()
    )
    steps = [
        {"service": "filter", "expression": "tcp"},
        {"service": "dedupe", "time_window_ns": 10},
        {"service": "anonymize-ip"},
        {"service": "strip-payload"},
        {"service": "compress"},
    ]
    run = pipeline_build(steps, recipient_key=KEY_A)
    first = list(itertools.islice(run(endless), 1000))
    assert [p.index for p in first] == list(range(1000))


def test_an_empty_pipeline_is_the_identity():
    packets = read("tls.pcap")
    assert list(pipeline_build([], recipient_key=KEY_A)(packets)) == packets


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ({"service": "dedupe"}, "list of steps"),
        (["dedupe"], "step 1: expected an object"),
        ([{"service": "segmentation"}], "unknown processing service 'segmentation'"),
        ([{"service": "teleport"}], "unknown processing service 'teleport'"),
        ([{}], "unknown processing service None"),
        ([{"service": "dedupe"}, {"service": "dedupe", "size": 3}], "step 2 .*unknown parameter"),
        ([{"service": "anonymize-ip", "key": "00" * 32}], "unknown parameter key"),
        ([{"service": "strip-payload", "keep_bytes": "64"}], "keep_bytes must be an integer"),
        ([{"service": "strip-payload", "keep_bytes": -1}], "keep_bytes must be between"),
        ([{"service": "strip-payload", "keep_bytes": True}], "keep_bytes must be an integer"),
        ([{"service": "dedupe", "window": 0}], "window must be between"),
        ([{"service": "dedupe", "window": 3, "time_window_ns": 10}], "either window"),
        ([{"service": "filter"}], "expression is required"),
        ([{"service": "filter", "expression": "  "}], "non-empty BPF expression"),
        ([{"service": "filter", "expression": "tcp and"}], "bad BPF expression"),
        ([{"service": "filter", "expression": "tcp", "mode": "both"}], "mode must be one of"),
        ([{"service": "compress", "level": 99}], "level must be between"),
    ],
)
def test_a_bad_pipeline_is_refused_with_a_clear_message(steps, message):
    with pytest.raises(ProcessingError, match=message):
        pipeline_build(steps, recipient_key=KEY_A)


def test_anonymize_ip_in_a_pipeline_needs_a_32_byte_key():
    with pytest.raises(ProcessingError, match="32 bytes"):
        pipeline_build([{"service": "anonymize-ip"}], recipient_key=b"short")
    pipeline_build([{"service": "dedupe"}], recipient_key=b"")  # not needed without it


def test_services_required_refuses_an_unknown_service():
    assert services_required([]) == set()
    with pytest.raises(ProcessingError, match="unknown processing service"):
        services_required([{"service": "anonymize-ip"}, {"service": "segmentation"}])


def test_processing_error_is_a_value_error():
    assert issubclass(ProcessingError, ValueError)


@pytest.mark.parametrize("name", CAPTURES)
def test_anonymize_ip_of_a_cut_packet_is_the_cut_anonymized_packet(name):
    # A short snap length must not change how the captured bytes are rewritten: checksums are
    # updated, not recomputed, and Crypto-PAn maps the first n bits of an address on their
    # own, so even an address the capture cuts is anonymized as far as it goes.
    packets = read(name)[::20]  # a sample: every packet is cut at 60 lengths
    whole = list(anonymize_ip(packets, key=KEY_A))
    for before, after in zip(packets, whole, strict=True):
        located = network_layer(before.data, before.linktype)
        offset, version = located or (0, 0)
        lengths = {0, 1, len(before.data)} | {offset + k for k in range(0, 61)}
        for length in sorted(n for n in lengths if n <= len(before.data)):
            cut = anonymized_one(replace(before, data=before.data[:length]))
            expected = bytearray(after.data[:length])
            if version == 4 and offset + 10 < length < offset + 20:
                # The header checksum can only account for the address bytes captured.
                expected[offset + 10 : offset + 12] = cut.data[offset + 10 : offset + 12]
            if length and cut.data[-1] == before.data[length - 1] != expected[-1]:
                # Half a checksum was captured: it cannot be updated and stays as it was.
                expected[-1] = before.data[length - 1]
            assert cut.data == expected, (before.index, length)


@pytest.mark.parametrize("name", IP_CAPTURES)
def test_services_survive_mangled_headers(name):
    # Real packets with random bytes of their first 80 overwritten and random cuts: nothing
    # raises, nothing is lost, lengths stay.
    rng = random.Random(name)
    packets = []
    for packet in read(name)[:400]:
        for _ in range(5):
            data = bytearray(packet.data[: rng.randrange(len(packet.data) + 1)])
            for _ in range(rng.randrange(1, 4)):
                if data:
                    data[rng.randrange(min(80, len(data)))] = rng.randrange(256)
            packets.append(replace(packet, index=len(packets), data=bytes(data)))
    anonymized = list(anonymize_ip(packets, key=KEY_A))
    stripped = list(strip_payload(packets, keep_bytes=4))
    assert [p.index for p in anonymized] == [p.index for p in stripped] == list(range(len(packets)))
    assert all(len(a.data) == len(p.data) for a, p in zip(anonymized, packets, strict=True))
    assert all(len(a.data) <= len(p.data) for a, p in zip(stripped, packets, strict=True))
