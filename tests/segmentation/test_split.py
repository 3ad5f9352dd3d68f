"""Splitting as PcapSplitter does, checked against groupings computed here from dpkt's parse."""

import struct
from collections import defaultdict
from pathlib import Path

import dpkt
import pytest

from segmentation.assemble import AssembleError, assemble, assemble_segments
from segmentation.capture import capture_open, capture_writer
from segmentation.decode import Flow, flow_of, ip_summary, network_layer
from segmentation.packet import CaptureError, Packet
from segmentation.split import (
    METHODS,
    SegmentIndex,
    SplitError,
    bpf_prefilter,
    segment_assign,
    split_capture,
    split_param_parse,
)
from tests.captures import CAPTURES_DIR

DATA = CAPTURES_DIR
ALL_FILES = sorted(DATA.glob("*.pcap")) + sorted(DATA.glob("*.pcapng"))
MANY = DATA / "many-protocols.pcap"
SYN, ACK = 0x02, 0x10

SPLITS = [
    ("file-size", 20000),
    ("packet-count", 7),
    ("round-robin", 4),
    ("bpf-filter", "greater 100"),
    ("client-ip", None),
    ("client-ip", 3),
    ("server-ip", None),
    ("server-ip", 2),
    ("server-port", None),
    ("server-port", 3),
    ("client-port", None),
    ("client-port", 3),
    ("ip-src-dst", None),
    ("ip-src-dst", 2),
    ("connection", None),
    ("connection", 5),
]


def _originals(path: Path) -> list[bytes]:
    """The input's packets as dpkt reads them (not our reader)."""
    with open(path, "rb") as file:
        reader = dpkt.pcapng.Reader(file) if path.suffix == ".pcapng" else dpkt.pcap.Reader(file)
        return [bytes(buf) for _ts, buf in reader]


def _split(path: Path, tmp_path: Path, method: str, param=None, bpf=None):
    output = tmp_path / "out"
    output.mkdir(parents=True, exist_ok=True)
    index_path = tmp_path / "segments.idx"
    segments = split_capture(
        path, output, method=method, param=param, bpf=bpf, index_path=index_path
    )
    return segments, SegmentIndex(index_path)


def _segment_of_each_packet(path: Path, segments, index: SegmentIndex) -> dict[int, int]:
    """Checks each segment file against the input; returns {packet index: segment number}."""
    originals = _originals(path)
    where: dict[int, int] = {}
    for segment in segments:
        with capture_open(segment.path) as reader:
            packets = list(reader)
        indices = list(index.indices(segment.number))
        assert len(packets) == len(indices) == segment.packets > 0
        assert segment.bytes == segment.path.stat().st_size
        assert indices == sorted(set(indices)), "order kept within a segment"
        for position, packet in zip(indices, packets, strict=True):
            assert packet.data == originals[position]
            assert position not in where, "a packet in two segments"
            where[position] = segment.number
    return where


@pytest.mark.parametrize(("method", "param"), SPLITS, ids=[f"{m}-{p}" for m, p in SPLITS])
@pytest.mark.parametrize("path", ALL_FILES, ids=[path.name for path in ALL_FILES])
def test_segments_partition_the_input_exactly(path, method, param, tmp_path):
    segments, index = _split(path, tmp_path, method, param)
    where = _segment_of_each_packet(path, segments, index)
    assert sorted(where) == list(range(len(_originals(path)))), "every packet in one segment"
    assert segments.packets_read == len(where)
    extension = path.suffix
    for segment in segments:
        assert segment.path.name == f"{path.stem}-{segment.number:04d}{extension}"
    if isinstance(param, int) and method not in ("file-size", "packet-count"):
        assert len(segments) <= param
        assert all(0 <= segment.number < param for segment in segments)
    # the pure assignment API numbers the packets exactly as the split wrote them
    with capture_open(path) as reader:
        assigned = {
            packet.index: number
            for packet, number in segment_assign(reader, method=method, param=param)
        }
    assert assigned == where


@pytest.mark.parametrize("path", ALL_FILES, ids=[path.name for path in ALL_FILES])
def test_unchanged_segments_assemble_back_to_the_input(path, tmp_path):
    segments, _index = _split(path, tmp_path, "connection", 4)
    output = tmp_path / f"assembled{path.suffix}"
    with capture_open(path) as like:
        result = assemble_segments(segments, tmp_path / "segments.idx", output, like=like)
    assert result.packets == len(_originals(path))
    if path.suffix == ".pcap":
        assert output.read_bytes() == path.read_bytes()
    else:
        with capture_open(path) as original, capture_open(output) as assembled:
            assert [(p.data, p.ts_ns, p.interface, p.linktype) for p in assembled] == [
                (p.data, p.ts_ns, p.interface, p.linktype) for p in original
            ]


# -- expected groupings for many-protocols.pcap, computed from dpkt -------------------------


def _dpkt_view(buf: bytes):
    """(src, dst, proto, sport, dport, flags) of a TCP/UDP packet that is not a fragment;
    (src, dst, None, ...) for other IP packets; None for non-IP."""
    ethernet = dpkt.ethernet.Ethernet(buf)
    ip = ethernet.data
    if isinstance(ip, dpkt.ip.IP):
        fragment = bool(ip.mf or ip.offset)
    elif isinstance(ip, dpkt.ip6.IP6):
        fragment = dpkt.ip.IP_PROTO_FRAGMENT in ip.extension_hdrs
    else:
        return None
    src, dst, l4 = bytes(ip.src), bytes(ip.dst), ip.data
    if not fragment and isinstance(l4, dpkt.tcp.TCP):
        return (src, dst, 6, l4.sport, l4.dport, l4.flags)
    if not fragment and isinstance(l4, dpkt.udp.UDP):
        return (src, dst, 17, l4.sport, l4.dport, 0)
    return (src, dst, None, None, None, 0)


def _views(path: Path):
    return [_dpkt_view(buf) for buf in _originals(path)]


def _connection(view):
    """Both directions together: the unordered pair of endpoints plus the protocol."""
    if view is None or view[2] is None:
        return None
    src, dst, proto, sport, dport, _flags = view
    return (proto, frozenset({(src, sport), (dst, dport)}))


def _partition(where: dict[int, int]) -> set[frozenset[int]]:
    groups = defaultdict(set)
    for position, number in where.items():
        groups[number].add(position)
    return {frozenset(group) for group in groups.values()}


def _numbered_in_order_of_appearance(where: dict[int, int], first: int, cap=None):
    """Segments get numbers first, first+1, ... (mod cap) as their first packets appear."""
    order = []
    for position in sorted(where):
        if where[position] not in order:
            order.append(where[position])
    expected = [n if cap is None else n % cap for n in range(first, first + len(order))]
    return order == expected


def _expected_connection_groups(views) -> list[list[int]]:
    groups: list[list[int]] = []
    current: dict = {}
    last_pure_syn: dict = {}
    for position, view in enumerate(views):
        key = _connection(view)
        pure_syn = view is not None and view[2] == 6 and view[5] & (SYN | ACK) == SYN
        is_tcp = key is not None and key[0] == 6
        if key not in current or (is_tcp and pure_syn and not last_pure_syn[key]):
            current[key] = len(groups)
            groups.append([])
        if is_tcp:
            last_pure_syn[key] = pure_syn
        groups[current[key]].append(position)
    return groups


def test_connection_split_of_many_protocols_matches_dpkt_connections(tmp_path):
    segments, index = _split(MANY, tmp_path, "connection")
    where = _segment_of_each_packet(MANY, segments, index)
    expected = _expected_connection_groups(_views(MANY))
    assert _partition(where) == {frozenset(group) for group in expected}
    assert len(segments) == len(expected) > 100
    assert _numbered_in_order_of_appearance(where, first=1)


def test_connection_split_with_a_cap_deals_connections_out_in_turn(tmp_path):
    segments, index = _split(MANY, tmp_path, "connection", 5)
    where = _segment_of_each_packet(MANY, segments, index)
    expected = _expected_connection_groups(_views(MANY))
    for number, group in enumerate(expected, start=1):
        assert {where[position] for position in group} == {number % 5}
    assert [segment.number for segment in segments] == [0, 1, 2, 3, 4]


def test_ip_src_dst_split_of_many_protocols_matches_dpkt_address_pairs(tmp_path):
    segments, index = _split(MANY, tmp_path, "ip-src-dst")
    where = _segment_of_each_packet(MANY, segments, index)
    groups = defaultdict(set)
    for position, view in enumerate(_views(MANY)):
        groups[None if view is None else frozenset(view[:2])].add(position)
    assert _partition(where) == {frozenset(group) for group in groups.values()}
    assert _numbered_in_order_of_appearance(where, first=1)


def _client_ip(src, dst, proto, sport, dport, flags):
    if proto == 6 and flags & SYN:
        return dst if flags & ACK else src
    return src if sport >= dport else dst


def _server_ip(src, dst, proto, sport, dport, flags):
    if proto == 6 and flags & SYN:
        return src if flags & ACK else dst
    return dst if sport >= dport else src


def _multicast(address: bytes) -> bool:
    return address[0] >> 4 == 0xE if len(address) == 4 else address[0] == 0xFF


def _server_port(src, dst, proto, sport, dport, flags):
    if proto == 6 and flags & SYN:
        return sport if flags & ACK else dport
    if proto == 17 and _multicast(src):
        return dport
    if proto == 17 and _multicast(dst):
        return sport
    return min(sport, dport)


def _client_port(src, dst, proto, sport, dport, flags):
    if proto == 6 and flags & SYN:
        return dport if flags & ACK else sport
    if proto == 17 and _multicast(src):
        return sport
    if proto == 17 and _multicast(dst):
        return dport
    return max(sport, dport)


@pytest.mark.parametrize(
    ("method", "value_of"),
    [
        ("client-ip", _client_ip),
        ("server-ip", _server_ip),
        ("server-port", _server_port),
        ("client-port", _client_port),
    ],
)
def test_ip_port_splits_of_many_protocols_match_dpkt_clients_and_servers(
    method, value_of, tmp_path
):
    segments, index = _split(MANY, tmp_path, method)
    where = _segment_of_each_packet(MANY, segments, index)
    decided: dict = {}
    groups = defaultdict(set)
    outside = set()
    for position, view in enumerate(_views(MANY)):
        key = _connection(view)
        if key is None:
            outside.add(position)
            continue
        if key not in decided:  # the connection's first packet decides
            decided[key] = value_of(*view)
        groups[decided[key]].add(position)
    assert outside and {where[position] for position in outside} == {0}
    assert _partition(where) == {frozenset(group) for group in groups.values()} | {
        frozenset(outside)
    }
    assert _numbered_in_order_of_appearance(
        {position: number for position, number in where.items() if number}, first=1
    )
    if method == "server-port":
        assert {80, 53, 443} <= set(groups)


@pytest.mark.parametrize("method", ["client-ip", "server-ip", "server-port", "client-port"])
def test_ip_port_splits_with_a_cap_open_no_more_files(method, tmp_path):
    (tmp_path / "unlimited").mkdir()
    (tmp_path / "capped").mkdir()
    unlimited, _index = _split(MANY, tmp_path / "unlimited", method)
    capped, index = _split(MANY, tmp_path / "capped", method, 2)
    assert len(unlimited) > 2
    assert [segment.number for segment in capped] == [0, 1]
    assert sum(segment.packets for segment in capped) == sum(s.packets for s in unlimited)
    _segment_of_each_packet(MANY, capped, index)


def test_file_size_follows_pcapsplitters_running_total(tmp_path):
    size = 100_000
    segments, index = _split(MANY, tmp_path, "file-size", size)
    where = _segment_of_each_packet(MANY, segments, index)
    total = 0
    for position, data in enumerate(_originals(MANY)):
        total += len(data) + 16
        assert where[position] == total // (size - 24)
    largest_record = max(len(data) for data in _originals(MANY)) + 16
    assert len(segments) == 30
    for segment in segments:
        assert segment.bytes <= size + largest_record


def test_packet_count_puts_exactly_n_packets_in_each_file_but_the_last(tmp_path):
    segments, _index = _split(MANY, tmp_path, "packet-count", 100)
    assert [segment.number for segment in segments] == list(range(48))
    assert [segment.packets for segment in segments] == [100] * 47 + [9]


def test_round_robin_deals_packets_in_turn(tmp_path):
    segments, index = _split(DATA / "tls.pcap", tmp_path, "round-robin", 3)
    where = _segment_of_each_packet(DATA / "tls.pcap", segments, index)
    assert all(number == position % 3 for position, number in where.items())


def test_bpf_filter_method_puts_matches_in_file_0_and_the_rest_in_file_1(tmp_path):
    segments, index = _split(MANY, tmp_path, "bpf-filter", "udp port 53")
    where = _segment_of_each_packet(MANY, segments, index)
    for position, view in enumerate(_views(MANY)):
        dns = view is not None and view[2] == 17 and 53 in (view[3], view[4])
        assert where[position] == (0 if dns else 1)


def test_bpf_prefilter_drops_the_packets_it_does_not_match(tmp_path):
    segments, index = _split(MANY, tmp_path, "connection", bpf="tcp")
    where = _segment_of_each_packet(MANY, segments, index)
    tcp = {position for position, view in enumerate(_views(MANY)) if view and view[2] == 6}
    assert set(where) == tcp
    assert segments.packets_read == len(_originals(MANY))
    # methods count only the kept packets: round-robin deals the k-th UDP packet to file k % 2
    segments, index = _split(MANY, tmp_path / "rr", "round-robin", 2, bpf="udp")
    where = _segment_of_each_packet(MANY, segments, index)
    udp = [position for position, view in enumerate(_views(MANY)) if view and view[2] == 17]
    assert [where[position] for position in udp] == [k % 2 for k in range(len(udp))]


def test_pcapng_segments_keep_interfaces_and_link_types(tmp_path):
    path = DATA / "pcapng-example.pcapng"
    segments, index = _split(path, tmp_path, "connection")
    with capture_open(path) as reader:
        originals = list(reader)
    for segment in segments:
        with capture_open(segment.path) as reader:
            assert reader.format == "pcapng"
            for packet, position in zip(reader, index.indices(segment.number), strict=True):
                original = originals[position]
                assert (packet.interface, packet.linktype, packet.ts_ns) == (
                    original.interface,
                    original.linktype,
                    original.ts_ns,
                )


# -- TCP connection life and fragments, on hand-built captures ------------------------------


def _tcp(src, dst, sport, dport, flags) -> bytes:
    segment = dpkt.tcp.TCP(sport=sport, dport=dport, flags=flags, off=5)
    ip = dpkt.ip.IP(src=bytes(src), dst=bytes(dst), p=6, data=segment)
    ip.len = len(bytes(ip))
    return bytes(dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, type=0x0800, data=ip))


def _udp(src, dst, sport, dport) -> bytes:
    datagram = dpkt.udp.UDP(sport=sport, dport=dport, data=b"payload")
    datagram.ulen = len(bytes(datagram))
    ip = dpkt.ip.IP(src=bytes(src), dst=bytes(dst), p=17, data=datagram)
    ip.len = len(bytes(ip))
    return bytes(dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, type=0x0800, data=ip))


def _packets(frames: list[bytes]) -> list[Packet]:
    return [Packet(i, frame, i * 1000, len(frame), 1) for i, frame in enumerate(frames)]


CLIENT, SERVER = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])


def _numbers(frames, method, param=None) -> list[int]:
    return [n for _p, n in segment_assign(_packets(frames), method=method, param=param)]


def test_a_new_syn_on_a_used_five_tuple_starts_a_new_connection():
    frames = [
        _tcp(CLIENT, SERVER, 40000, 80, SYN),
        _tcp(CLIENT, SERVER, 40000, 80, SYN),  # retransmitted SYN: same connection
        _tcp(SERVER, CLIENT, 80, 40000, SYN | ACK),
        _tcp(CLIENT, SERVER, 40000, 80, ACK),
        _tcp(CLIENT, SERVER, 40000, 80, SYN),  # the port is reused: a new connection
        _tcp(SERVER, CLIENT, 80, 40000, SYN | ACK),
        _udp(CLIENT, SERVER, 40000, 80),  # UDP on the same ports: another connection
    ]
    assert _numbers(frames, "connection") == [1, 1, 1, 1, 2, 2, 3]


def test_client_and_server_come_from_the_syn_or_else_the_ports():
    frames = [
        _tcp(SERVER, CLIENT, 80, 40000, SYN | ACK),  # only the SYN/ACK seen: client is dst
        _tcp(CLIENT, SERVER, 1000, 2000, SYN),  # a SYN from the lower port: still the client
        _tcp(CLIENT, SERVER, 443, 50000, ACK),  # mid-connection: the higher port, SERVER, is client
    ]
    assert _numbers(frames, "client-ip") == [1, 1, 2]
    assert _numbers(frames, "server-port") == [1, 2, 3]
    assert _numbers(frames, "client-port") == [1, 2, 3]


def test_udp_with_a_multicast_group_takes_the_server_port_from_the_group_side():
    group = bytes([239, 1, 1, 1])
    frames = [
        _udp(CLIENT, group, 6000, 5000),  # to a group: server port 6000 (the source's)
        _udp(CLIENT, SERVER, 6000, 7000),  # unicast: the lower port, 6000
        _udp(CLIENT, SERVER, 6000, 5000),  # unicast: the lower port, 5000
        _udp(group, SERVER, 5000, 6000),  # from a group: server port 6000 (the destination's)
    ]
    assert _numbers(frames, "server-port") == [1, 1, 2, 1]
    assert _numbers(frames, "client-port") == [1, 2, 3, 1]


def test_every_ip_fragment_is_outside_connections(tmp_path):
    path = DATA / "ip4_fragments.pcap"
    with capture_open(path) as reader:
        packets = list(reader)
    fragments = {
        packet.index
        for packet in packets
        if struct.unpack_from("!H", packet.data, 20)[0] & 0x3FFF  # MF or an offset
    }
    assert len(fragments) > 10
    numbers = dict((packet.index, n) for packet, n in segment_assign(packets, method="server-port"))
    assert {numbers[index] for index in fragments} == {0}
    numbers = dict((packet.index, n) for packet, n in segment_assign(packets, method="connection"))
    assert len({numbers[index] for index in fragments}) == 1


# -- decoding ---------------------------------------------------------------------------------


RAW_IPV4 = bytes.fromhex("4500001c0001000040110000c0a80001c0a8000204d2162e00080000")
RAW_IPV6 = bytes.fromhex(
    "6000000000081140"  # version 6, payload 8 bytes, next header UDP, hop limit 64
    + "20010db8"
    + "00" * 11
    + "01"
    + "20010db8"
    + "00" * 11
    + "02"
    + "04d2162e00080000"  # UDP 1234 -> 5678
)


def _first(name: str) -> Packet:
    with capture_open(DATA / name) as reader:
        return next(iter(reader))


def test_network_layer_through_each_link_type():
    assert network_layer(_first("http-packets.pcap").data, 1) == (14, 4)
    assert network_layer(_first("sll.pcap").data, 113) == (16, 4)
    with capture_open(DATA / "raw_ip.pcap") as reader:
        assert {network_layer(p.data, 101) for p in reader} == {(0, 4), (0, 6)}
    assert network_layer(_first("four_ipv6_http_streams.pcap").data, 12) == (0, 6)
    with capture_open(DATA / "VlanPackets.pcap") as reader:
        vlan = next(
            p for p in reader if p.data[12:14] == b"\x81\x00" and p.data[16:18] == b"\x81\x00"
        )
    assert network_layer(vlan.data, 1) == (22, 4)  # two 802.1Q tags
    with capture_open(DATA / "null_loopback.pcap") as reader:
        assert {network_layer(p.data, 0) for p in reader} == {(4, 4), (4, 6), None}
    ip = RAW_IPV4
    assert network_layer(struct.pack("<I", 2) + ip, 0) == (4, 4)
    assert network_layer(struct.pack(">I", 2) + ip, 108) == (4, 4)
    assert network_layer(struct.pack(">I", 30) + RAW_IPV6, 0) == (4, 6)
    sll2 = struct.pack("!HHIHBB8s", 0x0800, 0, 1, 1, 0, 6, b"\0" * 8)
    assert network_layer(sll2 + ip, 276) == (20, 4)
    assert network_layer(b"\x00" * 12 + b"\x88\xa8\x00\x01\x81\x00\x00\x02\x08\x00" + ip, 1) == (
        22,
        4,
    )
    assert network_layer(b"\x00" * 12 + b"\x08\x06" + b"\x00" * 28, 1) is None  # ARP
    assert network_layer(b"", 1) is None
    assert network_layer(ip, 147) is None  # a link type we do not read


def test_flow_of_tcp_udp_and_the_rest():
    assert flow_of(RAW_IPV4, 101) == Flow(
        bytes([192, 168, 0, 1]), bytes([192, 168, 0, 2]), 1234, 5678, 17
    )
    assert flow_of(RAW_IPV6, 101).src_port == 1234
    tcp = _tcp(CLIENT, SERVER, 40000, 80, SYN)
    assert flow_of(tcp, 1) == Flow(CLIENT, SERVER, 40000, 80, 6)
    assert flow_of(tcp[:40], 1) is None  # a truncated TCP header
    icmp = bytearray(RAW_IPV4)
    icmp[9] = 1
    assert flow_of(bytes(icmp), 101) is None
    first_fragment = bytearray(RAW_IPV4)
    first_fragment[6] = 0x20  # more fragments, offset 0: the UDP header is there
    assert flow_of(bytes(first_fragment), 101) is not None
    assert ip_summary(bytes(first_fragment), 101).fragmented
    later_fragment = bytearray(RAW_IPV4)
    later_fragment[7] = 0x10  # an offset
    assert flow_of(bytes(later_fragment), 101) is None


# -- parameters and errors ----------------------------------------------------------------------


def test_unknown_method_lists_the_known_ones():
    with pytest.raises(SplitError) as caught:
        split_param_parse("by-colour", None)
    assert all(method in str(caught.value) for method in METHODS)


@pytest.mark.parametrize("method", ["file-size", "packet-count", "round-robin", "bpf-filter"])
def test_a_method_that_needs_a_parameter_refuses_to_run_without(method):
    with pytest.raises(SplitError, match="needs a parameter"):
        split_param_parse(method, None)


@pytest.mark.parametrize("param", ["0", "-3", "abc", "1.5", 0, -1, True, ""])
@pytest.mark.parametrize("method", ["packet-count", "round-robin", "connection", "client-ip"])
def test_a_parameter_must_be_a_positive_integer(method, param):
    if param == "" and method in ("connection", "client-ip"):
        assert split_param_parse(method, param) is None  # no limit
        return
    with pytest.raises(SplitError):
        split_param_parse(method, param)


def test_parameters_as_text_or_numbers():
    assert split_param_parse("packet-count", "25") == 25
    assert split_param_parse("connection", 8) == 8
    assert split_param_parse("connection", None) is None
    assert split_param_parse("file-size", 41) == 41
    with pytest.raises(SplitError, match="at least 41"):
        split_param_parse("file-size", 40)


def test_bad_bpf_gives_libpcaps_message(tmp_path):
    (tmp_path / "out").mkdir()
    for kwargs in (
        {"method": "bpf-filter", "param": "tcp and"},
        {"method": "connection", "bpf": "port"},
    ):
        with pytest.raises(SplitError, match=r"bad BPF filter .*syntax error"):
            split_capture(MANY, tmp_path / "out", **kwargs)
    assert list((tmp_path / "out").iterdir()) == []


def test_missing_output_folder(tmp_path):
    with pytest.raises(SplitError, match="does not exist"):
        split_capture(MANY, tmp_path / "nowhere", method="connection")


def test_a_malformed_capture_leaves_no_segments_behind(tmp_path):
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(MANY.read_bytes()[:1_000_000])
    (tmp_path / "out").mkdir()
    with pytest.raises(CaptureError) as caught:
        split_capture(cut, tmp_path / "out", method="connection", index_path=tmp_path / "i")
    assert caught.value.record is not None and caught.value.offset is not None
    assert list((tmp_path / "out").iterdir()) == []
    assert not (tmp_path / "i").exists()


# -- assemblage -------------------------------------------------------------------------------


def test_assemble_keeps_survivors_in_order_when_a_part_dropped_packets(tmp_path):
    segments, index = _split(DATA / "tls.pcap", tmp_path, "round-robin", 2)
    # a processing service kept only every other packet of segment 1
    with capture_open(segments[1].path) as reader:
        survivors = [packet for i, packet in enumerate(reader) if i % 2 == 0]
        kept = tmp_path / "kept.pcap"
        with capture_writer(kept, like=reader) as writer:
            for packet in survivors:
                writer.write(packet)
    kept_indices = list(index.indices(1))[::2]
    output = tmp_path / "out.pcap"
    with capture_open(DATA / "tls.pcap") as like:
        originals = list(like)
        assemble([(segments[0].path, index.indices(0)), (kept, kept_indices)], output, like=like)
    expected = sorted(list(index.indices(0)) + kept_indices)
    with capture_open(output) as reader:
        assert [p.data for p in reader] == [originals[i].data for i in expected]


def test_assemble_refuses_indices_that_disagree_or_repeat(tmp_path):
    segments, index = _split(DATA / "tls.pcap", tmp_path, "round-robin", 2)
    with capture_open(DATA / "tls.pcap") as like:
        with pytest.raises(AssembleError, match="disagree"):
            assemble([(segments[0].path, list(index.indices(0))[:-1])], tmp_path / "o", like=like)
        with pytest.raises(AssembleError, match="two parts"):
            assemble(
                [(segments[0].path, index.indices(0)), (segments[0].path, index.indices(0))],
                tmp_path / "o",
                like=like,
            )


# -- the chunked pcap paths: numbering a chunk at once, copying runs of records --------------


def _pcap_of(frames: list[bytes], path: Path) -> Path:
    with open(path, "wb") as file:
        writer = dpkt.pcap.Writer(file, linktype=1)
        for k, frame in enumerate(frames):
            writer.writepkt(frame, ts=1_700_000_000 + k / 1000)
    return path


def _vlan(frame: bytes, tag: int = 7) -> bytes:
    """The Ethernet frame with an 802.1Q tag inserted after the addresses."""
    return frame[:12] + struct.pack("!HH", 0x8100, tag) + frame[12:]


def _split_numbers(path: Path, tmp_path: Path, method: str, param=None) -> list[int]:
    segments, index = _split(path, tmp_path, method, param)
    where = _segment_of_each_packet(path, segments, index)
    return [where[position] for position in sorted(where)]


def _assigned_numbers(path: Path, method: str, param=None) -> list[int]:
    """Packet by packet, through `segment_assign` (no chunk, no numpy)."""
    with capture_open(path) as reader:
        return [n for _p, n in segment_assign(reader, method=method, param=param)]


@pytest.mark.parametrize("read_bytes", [4096, 20000, 1 << 20])
@pytest.mark.parametrize("param", [None, 5])
@pytest.mark.parametrize(
    "name", ["many-protocols.pcap", "http-packets.pcap", "VlanPackets.pcap", "sll.pcap"]
)
def test_connection_numbers_by_chunk_equal_numbers_packet_by_packet(
    name, param, read_bytes, tmp_path, monkeypatch
):
    # small reads put connections, SYNs and the packets after them across chunk boundaries
    monkeypatch.setattr("segmentation.split._READ_BYTES", read_bytes)
    path = DATA / name
    assert _split_numbers(path, tmp_path, "connection", param) == _assigned_numbers(
        path, "connection", param
    )


def test_connection_numbers_by_chunk_follow_syns_and_tagged_packets_of_a_connection(tmp_path):
    """In one chunk: a 5-tuple reused after a SYN, repeated SYNs, and the same connection
    seen untagged (numbered with numpy) and through a VLAN tag (decoded one by one)."""
    other = bytes([10, 0, 0, 3])
    frames = [
        _tcp(CLIENT, SERVER, 40000, 80, SYN),
        _tcp(CLIENT, other, 40001, 443, SYN),
        _tcp(CLIENT, SERVER, 40000, 80, SYN),  # repeated: the same connection
        _tcp(SERVER, CLIENT, 80, 40000, SYN | ACK),
        _vlan(_tcp(CLIENT, SERVER, 40000, 80, ACK)),
        _tcp(CLIENT, SERVER, 40000, 80, ACK),
        _vlan(_tcp(CLIENT, SERVER, 40000, 80, SYN)),  # reused, seen through the tag
        _tcp(SERVER, CLIENT, 80, 40000, SYN | ACK),  # belongs to the new connection
        _tcp(other, CLIENT, 443, 40001, ACK),
        _udp(CLIENT, SERVER, 40000, 80),
        _tcp(CLIENT, SERVER, 40000, 80, ACK),
        _tcp(CLIENT, SERVER, 40000, 80, SYN),  # reused again, untagged
        _tcp(CLIENT, SERVER, 40000, 80, ACK),
        # a connection only ever seen untagged: SYN, ACK, then the 5-tuple reused
        _tcp(CLIENT, other, 40002, 22, SYN),
        _tcp(other, CLIENT, 22, 40002, ACK),
        _tcp(CLIENT, other, 40002, 22, SYN),
        _tcp(CLIENT, other, 40002, 22, ACK),
    ]
    path = _pcap_of(frames, tmp_path / "syns.pcap")
    expected = [1, 2, 1, 1, 1, 1, 3, 3, 2, 4, 3, 5, 5, 6, 6, 7, 7]
    assert _assigned_numbers(path, "connection") == expected
    assert _split_numbers(path, tmp_path / "split", "connection") == expected


def test_other_methods_a_route_and_a_prefilter_number_chunks_record_by_record(tmp_path):
    segments, index = _split(MANY, tmp_path, "client-port", 3, bpf="tcp or udp")
    where = _segment_of_each_packet(MANY, segments, index)
    with capture_open(MANY) as reader:
        kept = bpf_prefilter(reader, "tcp or udp")
        assigned = {p.index: n for p, n in segment_assign(kept, method="client-port", param=3)}
    assert where == assigned


def test_the_index_records_each_records_size_for_pcap_input(tmp_path):
    segments, index = _split(MANY, tmp_path, "connection", 4)
    for segment in segments:
        with capture_open(segment.path) as reader:
            sizes = [16 + len(packet.data) for packet in reader]
        assert list(index.sizes(segment.number)) == sizes
    segments, index = _split(DATA / "pcapng-example.pcapng", tmp_path / "ng", "connection")
    assert index.sizes(segments[0].number) is None  # re-encoded: sizes are not the input's


@pytest.mark.parametrize("name", ["many-protocols.pcap", "DnsPackets.pcap"])
def test_assembly_of_many_parts_goes_through_the_heap_and_gives_the_input_back(name, tmp_path):
    path = DATA / name
    segments, _index = _split(path, tmp_path, "connection")  # one file per connection
    assert len(segments) > 64  # more parts than the windowed merge takes
    output = tmp_path / "assembled.pcap"
    with capture_open(path) as like:
        assemble_segments(segments, tmp_path / "segments.idx", output, like=like)
    assert output.read_bytes() == path.read_bytes()


def test_assembly_with_sizes_refuses_a_segment_that_changed_since_the_split(tmp_path):
    segments, _index = _split(MANY, tmp_path, "connection", 2)
    target = segments[1].path
    original = target.read_bytes()
    output = tmp_path / "assembled.pcap"
    # a record's captured length no longer what the split wrote
    changed = bytearray(original)
    changed[24 + 8] ^= 0x01
    target.write_bytes(bytes(changed))
    with capture_open(MANY) as like, pytest.raises(CaptureError, match="disagrees"):
        assemble_segments(segments, tmp_path / "segments.idx", output, like=like)
    # one record more, or one fewer
    with capture_open(target) as reader:
        first = next(iter(reader))
    extra = first.header + first.data
    for content, message in ((original + extra, "more records"), (original[:-20], "fewer")):
        target.write_bytes(content)
        with capture_open(MANY) as like, pytest.raises(CaptureError, match=message):
            assemble_segments(segments, tmp_path / "segments.idx", output, like=like)
    target.write_bytes(original)
    with capture_open(MANY) as like:
        assemble_segments(segments, tmp_path / "segments.idx", output, like=like)
    assert output.read_bytes() == MANY.read_bytes()


def test_assembly_reports_indices_that_disagree_or_repeat(tmp_path):
    segments, index = _split(DATA / "tls.pcap", tmp_path, "round-robin", 2)
    with capture_open(DATA / "tls.pcap") as like:
        for indices in (list(index.indices(0))[:-1], [*index.indices(0), 999]):
            with pytest.raises(AssembleError, match="disagree"):
                assemble([(segments[0].path, indices)], tmp_path / "o", like=like)
        with pytest.raises(AssembleError, match="two parts"):
            assemble(
                [(segments[0].path, index.indices(0)), (segments[0].path, index.indices(0))],
                tmp_path / "o",
                like=like,
            )
