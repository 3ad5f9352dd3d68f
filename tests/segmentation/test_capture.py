"""Reading and writing captures: every shared capture, hand-built pcapng, malformed files."""

import struct
import tracemalloc
from pathlib import Path

import dpkt
import pytest

from segmentation.capture import capture_open, capture_writer
from segmentation.packet import CaptureError, Packet
from tests.captures import CAPTURES_DIR

DATA = CAPTURES_DIR
PCAP_FILES = sorted(DATA.glob("*.pcap"))
PCAPNG_FILES = sorted(DATA.glob("*.pcapng"))
ALL_FILES = PCAP_FILES + PCAPNG_FILES


def _ids(paths):
    return [path.name for path in paths]


def _record_offsets(path: Path) -> list[tuple[int, int]]:
    """(offset, captured length) of each record of a pcap file, read independently."""
    raw = path.read_bytes()
    order = "<" if raw[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    offsets, position = [], 24
    while position < len(raw):
        (caplen,) = struct.unpack_from(order + "I", raw, position + 8)
        offsets.append((position, caplen))
        position += 16 + caplen
    return offsets


def _dpkt_packets(path: Path):
    with open(path, "rb") as file:
        reader = dpkt.pcapng.Reader(file) if path.suffix == ".pcapng" else dpkt.pcap.Reader(file)
        return [(ts, bytes(buf)) for ts, buf in reader]


def test_shared_captures_are_all_there():
    assert len(PCAP_FILES) >= 13 and PCAPNG_FILES


@pytest.mark.parametrize("path", ALL_FILES, ids=_ids(ALL_FILES))
def test_reader_gives_every_packet_as_dpkt_reads_it(path):
    expected = _dpkt_packets(path)
    with capture_open(path) as reader:
        packets = list(reader)
    assert [packet.index for packet in packets] == list(range(len(expected)))
    assert [packet.data for packet in packets] == [data for _ts, data in expected]
    for packet, (ts, _data) in zip(packets, expected, strict=True):
        # dpkt applies the first interface's timestamp resolution to every interface; the
        # second interface of pcapng-example.pcapng has the default (microseconds) instead
        if packet.interface == 0:
            assert packet.ts_ns / 1e9 == pytest.approx(float(ts), abs=1e-6)
    assert reader.packets_read == len(expected)


@pytest.mark.parametrize("path", PCAP_FILES, ids=_ids(PCAP_FILES))
def test_every_pcap_file_is_written_back_byte_for_byte(path, tmp_path):
    output = tmp_path / path.name
    with capture_open(path) as reader, capture_writer(output, like=reader) as writer:
        for packet in reader:
            writer.write(packet)
    assert output.read_bytes() == path.read_bytes()


def test_nanosecond_timestamps_are_kept_to_the_nanosecond(tmp_path):
    path = DATA / "nanosecs.pcap"
    raw = path.read_bytes()
    sec, nsec = struct.unpack_from("<II", raw, 24)
    with capture_open(path) as reader:
        assert reader.nanosecond
        packets = list(reader)
        assert packets[0].ts_ns == sec * 1_000_000_000 + nsec
        # a packet whose header is rebuilt keeps its nanoseconds
        output = tmp_path / "rebuilt.pcap"
        with capture_writer(output, like=reader) as writer:
            for packet in packets:
                packet.header = None
                writer.write(packet)
    assert output.read_bytes() == raw


def test_big_endian_pcap_reads_its_header_in_its_byte_order():
    path = DATA / "microsecs_big_endian.pcap"
    raw = path.read_bytes()
    sec, usec, caplen, orig_len = struct.unpack_from(">IIII", raw, 24)
    with capture_open(path) as reader:
        assert (reader.format, reader.byte_order, reader.nanosecond) == ("pcap", ">", False)
        assert reader.linktype == struct.unpack_from(">I", raw, 20)[0]
        first = next(iter(reader))
    assert first.ts_ns == sec * 1_000_000_000 + usec * 1000
    assert (len(first.data), first.orig_len) == (caplen, orig_len)


def test_link_types_come_from_the_file_header():
    expected = {
        "sll.pcap": 113,
        "raw_ip.pcap": 101,
        "null_loopback.pcap": 0,
        "VlanPackets.pcap": 1,
        "four_ipv6_http_streams.pcap": 12,
    }
    for name, linktype in expected.items():
        with capture_open(DATA / name) as reader:
            assert reader.linktype == linktype
            assert all(packet.linktype == linktype for packet in reader)


def test_a_changed_packet_gets_a_new_record_header(tmp_path):
    output = tmp_path / "changed.pcap"
    with capture_open(DATA / "tls.pcap") as reader:
        packets = list(reader)
        packets[0].data = packets[0].data[:40]
        packets[0].header = None
        with capture_writer(output, like=reader) as writer:
            for packet in packets:
                writer.write(packet)
    with capture_open(output) as again:
        reread = list(again)
    assert reread[0].data == packets[0].data
    assert reread[0].orig_len == packets[0].orig_len
    assert reread[0].ts_ns // 1000 == packets[0].ts_ns // 1000
    assert [p.data for p in reread[1:]] == [p.data for p in packets[1:]]


def test_pcapng_round_trip_keeps_packets_timestamps_and_interfaces(tmp_path):
    path = DATA / "pcapng-example.pcapng"
    output = tmp_path / "copy.pcapng"
    with capture_open(path) as reader:
        packets = list(reader)
        with capture_writer(output, like=reader) as writer:
            for packet in packets:
                writer.write(packet)
    assert len(reader.interfaces) == 2
    assert {packet.interface for packet in packets} == {0, 1}
    assert {packet.linktype for packet in packets} == {1, 113}
    with capture_open(output) as again:
        assert again.format == "pcapng"
        reread = list(again)
    assert [(p.data, p.ts_ns, p.orig_len, p.interface, p.linktype) for p in reread] == [
        (p.data, p.ts_ns, p.orig_len, p.interface, p.linktype) for p in packets
    ]
    assert [(i.linktype, i.snaplen, i.units) for i in again.interfaces] == [
        (i.linktype, i.snaplen, i.units) for i in reader.interfaces
    ]
    # another reader agrees with what was written
    assert [data for _ts, data in _dpkt_packets(output)] == [p.data for p in packets]


# -- hand-built pcapng: several sections, both byte orders, every packet block type ---------


def _block(order: str, block_type: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    length = len(body) + 12
    return struct.pack(order + "II", block_type, length) + body + struct.pack(order + "I", length)


def _shb(order: str) -> bytes:
    return _block(order, 0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1))


def _idb(order: str, linktype: int, snaplen: int = 0, tsresol: int | None = None) -> bytes:
    options = b""
    if tsresol is not None:
        options = struct.pack(order + "HHB3x", 9, 1, tsresol) + struct.pack(order + "HH", 0, 0)
    return _block(order, 1, struct.pack(order + "HHI", linktype, 0, snaplen) + options)


def _epb(order: str, interface: int, ticks: int, data: bytes, orig_len: int | None = None) -> bytes:
    head = struct.pack(
        order + "IIIII",
        interface,
        ticks >> 32,
        ticks & 0xFFFFFFFF,
        len(data),
        len(data) if orig_len is None else orig_len,
    )
    return _block(order, 6, head + data)


def _spb(order: str, data: bytes) -> bytes:
    return _block(order, 3, struct.pack(order + "I", len(data)) + data)


def _pb(order: str, interface: int, ticks: int, data: bytes) -> bytes:
    head = struct.pack(
        order + "HHIIII", interface, 0, ticks >> 32, ticks & 0xFFFFFFFF, len(data), len(data)
    )
    return _block(order, 2, head + data)


ETHERNET_FRAME = bytes(range(60))
RAW_IP = bytes.fromhex("4500001c0001000040110000c0a80001c0a8000204d2162e00080000")


def test_pcapng_with_sections_in_both_byte_orders_and_all_packet_blocks(tmp_path):
    path = tmp_path / "built.pcapng"
    path.write_bytes(
        _shb(">")
        + _idb(">", 1, 0, tsresol=9)  # nanoseconds
        + _epb(">", 0, 1_500_000_000_123_456_789, ETHERNET_FRAME)
        + _block(">", 0x00000BAD, b"unknown block, skipped")
        + _spb(">", ETHERNET_FRAME[:30])
        + _shb("<")  # a new section: its interfaces are numbered from 0 again
        + _idb("<", 101)  # microseconds by default
        + _idb("<", 1, tsresol=0x80 | 10)  # 2**-10 s
        + _pb("<", 0, 1_500_000_000_000_001, RAW_IP)
        + _epb("<", 1, 1024 * 7 + 512, ETHERNET_FRAME, orig_len=1514)
    )
    with capture_open(path) as reader:
        packets = list(reader)
        assert (reader.format, reader.byte_order, reader.linktype) == ("pcapng", ">", 1)
        output = tmp_path / "copy.pcapng"
        with capture_writer(output, like=reader) as writer:
            for packet in packets:
                writer.write(packet)
    assert [(p.index, p.interface, p.linktype) for p in packets] == [
        (0, 0, 1),
        (1, 0, 1),
        (2, 1, 101),
        (3, 2, 1),
    ]
    assert packets[0].ts_ns == 1_500_000_000_123_456_789
    assert packets[1].data == ETHERNET_FRAME[:30] and packets[1].ts_ns == 0
    assert packets[2].data == RAW_IP and packets[2].ts_ns == 1_500_000_000_000_001_000
    assert packets[3].ts_ns == 7_500_000_000 and packets[3].orig_len == 1514
    with capture_open(output) as again:
        reread = list(again)
    assert [(p.data, p.ts_ns, p.orig_len, p.interface, p.linktype) for p in reread] == [
        (p.data, p.ts_ns, p.orig_len, p.interface, p.linktype) for p in packets
    ]


def test_zero_packet_captures_are_valid_and_empty(tmp_path):
    empty_pcap = tmp_path / "empty.pcap"
    empty_pcap.write_bytes((DATA / "tls.pcap").read_bytes()[:24])
    empty_pcapng = tmp_path / "empty.pcapng"
    empty_pcapng.write_bytes(_shb("<"))
    interface_only = tmp_path / "interface-only.pcapng"
    interface_only.write_bytes(_shb("<") + _idb("<", 113))
    for path in (empty_pcap, empty_pcapng, interface_only):
        with capture_open(path) as reader:
            assert list(reader) == []
    with capture_open(interface_only) as reader:
        assert reader.linktype == 113
    with capture_open(empty_pcapng) as reader:
        assert reader.linktype is None


def test_reading_a_large_capture_uses_bounded_memory(tmp_path):
    source = DATA / "http-packets.pcap"
    body = source.read_bytes()[24:]
    big = tmp_path / "big.pcap"
    with open(big, "wb") as file:
        file.write(source.read_bytes()[:24])
        for _ in range(12):  # about 32 MB
            file.write(body)
    tracemalloc.start()
    try:
        count = 0
        with capture_open(big) as reader:
            for _packet in reader:
                count += 1
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 12 * 1985
    assert peak < 8 * 1024 * 1024


# -- malformed input ------------------------------------------------------------------------


def _cut(tmp_path: Path, source: Path, length: int) -> Path:
    path = tmp_path / f"cut-{length}-{source.name}"
    path.write_bytes(source.read_bytes()[:length])
    return path


def _read_all(path: Path) -> list[Packet]:
    with capture_open(path) as reader:
        return list(reader)


def test_a_file_that_is_not_a_capture_is_rejected(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("certainly not a packet capture\n" * 3)
    with pytest.raises(CaptureError) as caught:
        _read_all(path)
    assert "not a pcap or pcapng capture" in str(caught.value)
    assert caught.value.offset == 0


def test_an_empty_file_is_not_a_capture(tmp_path):
    path = tmp_path / "empty.pcap"
    path.write_bytes(b"")
    with pytest.raises(CaptureError, match="empty file"):
        _read_all(path)


def test_a_missing_file_is_a_capture_error(tmp_path):
    with pytest.raises(CaptureError, match="cannot open"):
        capture_open(tmp_path / "absent.pcap")


def test_truncated_file_header(tmp_path):
    with pytest.raises(CaptureError, match="truncated pcap file header") as caught:
        _read_all(_cut(tmp_path, DATA / "tls.pcap", 20))
    assert caught.value.offset == 0


def test_truncated_record_header_names_record_and_offset(tmp_path):
    source = DATA / "tls.pcap"
    offset, _caplen = _record_offsets(source)[5]
    with pytest.raises(CaptureError) as caught:
        _read_all(_cut(tmp_path, source, offset + 10))
    assert "truncated record header" in caught.value.reason
    assert (caught.value.record, caught.value.offset) == (5, offset)
    assert f"record 5, byte offset {offset}" in str(caught.value)


def test_captured_length_beyond_the_end_of_the_file(tmp_path):
    source = DATA / "many-protocols.pcap"
    offsets = _record_offsets(source)
    offset, caplen = offsets[1000]
    with pytest.raises(CaptureError) as caught:
        _read_all(_cut(tmp_path, source, offset + 16 + caplen - 1))
    assert "beyond the end of the file" in caught.value.reason
    assert (caught.value.record, caught.value.offset) == (1000, offset)


def test_absurd_captured_length(tmp_path):
    source = DATA / "DnsPackets.pcap"
    offset, _caplen = _record_offsets(source)[3]
    raw = bytearray(source.read_bytes())
    raw[offset + 8 : offset + 12] = struct.pack("<I", 0x7FFFFFF0)
    path = tmp_path / "absurd.pcap"
    path.write_bytes(raw)
    with pytest.raises(CaptureError) as caught:
        _read_all(path)
    assert "absurd captured length" in caught.value.reason
    assert (caught.value.record, caught.value.offset) == (3, offset)


def _pcapng_blocks(path: Path) -> list[tuple[int, int, int]]:
    """(offset, type, length) of each block of a little-endian pcapng file."""
    raw = path.read_bytes()
    blocks, position = [], 0
    while position < len(raw):
        block_type, length = struct.unpack_from("<II", raw, position)
        blocks.append((position, block_type, length))
        position += length
    return blocks


def test_pcapng_bad_block_length(tmp_path):
    source = DATA / "pcapng-example.pcapng"
    blocks = _pcapng_blocks(source)
    packet_blocks = [block for block in blocks if block[1] == 6]
    offset, _type, length = packet_blocks[10]
    packets_before = sum(1 for block in blocks if block[1] in (2, 3, 6) and block[0] < offset)
    raw = bytearray(source.read_bytes())
    raw[offset + 4 : offset + 8] = struct.pack("<I", length + 2)  # not a multiple of 4
    path = tmp_path / "bad-length.pcapng"
    path.write_bytes(raw)
    with pytest.raises(CaptureError) as caught:
        _read_all(path)
    assert "bad block length" in caught.value.reason
    assert (caught.value.record, caught.value.offset) == (packets_before, offset)


def test_pcapng_block_trailer_that_disagrees(tmp_path):
    source = DATA / "pcapng-example.pcapng"
    offset, _type, length = next(block for block in _pcapng_blocks(source) if block[1] == 6)
    raw = bytearray(source.read_bytes())
    raw[offset + length - 4 : offset + length] = struct.pack("<I", length + 4)
    path = tmp_path / "bad-trailer.pcapng"
    path.write_bytes(raw)
    with pytest.raises(CaptureError, match="trailer") as caught:
        _read_all(path)
    assert (caught.value.record, caught.value.offset) == (0, offset)


def test_pcapng_truncated_in_a_block(tmp_path):
    source = DATA / "pcapng-example.pcapng"
    blocks = _pcapng_blocks(source)
    offset, _type, length = blocks[-3]
    packets_before = sum(1 for block in blocks if block[1] in (2, 3, 6) and block[0] < offset)
    with pytest.raises(CaptureError) as caught:
        _read_all(_cut(tmp_path, source, offset + length // 2))
    assert "truncated block" in caught.value.reason
    assert (caught.value.record, caught.value.offset) == (packets_before, offset)


def test_pcapng_packet_on_an_undescribed_interface(tmp_path):
    path = tmp_path / "no-interface.pcapng"
    path.write_bytes(_shb("<") + _idb("<", 1) + _epb("<", 3, 0, ETHERNET_FRAME))
    with pytest.raises(CaptureError, match="undescribed interface 3") as caught:
        _read_all(path)
    assert caught.value.record == 0


@pytest.mark.parametrize("length", [1, 3, 30, 100, 1000, 5000])
def test_any_cut_of_a_capture_reads_cleanly_or_raises_capture_error(tmp_path, length):
    for source in (DATA / "sll.pcap", DATA / "pcapng-example.pcapng"):
        path = _cut(tmp_path, source, length)
        try:
            _read_all(path)
        except CaptureError as error:
            assert error.offset is not None


def test_readers_sharing_a_small_file_pool_read_interleaved_files_correctly():
    from segmentation.capture import FilePool

    pool = FilePool(max_open=2)
    paths = [DATA / name for name in ("tls.pcap", "DnsPackets.pcap", "sll.pcap", "raw_ip.pcap")]
    readers = [capture_open(path, buffer_size=4096, pool=pool) for path in paths]
    iterators = [iter(reader) for reader in readers]
    got: dict[int, list[bytes]] = {number: [] for number in range(len(paths))}
    active = set(got)
    while active:  # one packet from each file in turn: descriptors are evicted all along
        for number in sorted(active):
            packet = next(iterators[number], None)
            if packet is None:
                active.discard(number)
            else:
                got[number].append(packet.data)
    for number, path in enumerate(paths):
        assert got[number] == [data for _ts, data in _dpkt_packets(path)]
    pool.close()
