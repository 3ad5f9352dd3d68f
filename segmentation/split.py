"""Splitting a capture into segments, with the methods and parameters of PcapSplitter.

Methods (the parameter in brackets):
- `file-size` [max bytes per file, required]: a packet goes to file floor(S / (P - 24)), S being
  the sum of (captured length + 16) over the packets so far, this one included;
- `packet-count` [packets per file, required]: packet i goes to file i // P;
- `round-robin` [number of files, required]: packet i goes to file i % P;
- `bpf-filter` [a BPF expression, required]: matching packets go to file 0, the rest to file 1;
- `client-ip`, `server-ip`, `server-port`, `client-port` [max files, optional]: each TCP/UDP
  connection goes to the file of its client IP (server IP, ...), decided on the connection's
  first packet: a SYN names the client as its source, a SYN/ACK as its destination; otherwise
  the higher port is the client's (for UDP ports, a multicast source or destination decides
  first). Packets outside any TCP/UDP connection (other protocols, IP fragments, non-IP) go to
  file 0; values get files 1, 2, ... in order of appearance;
- `ip-src-dst` [max files, optional]: one file per unordered pair of IP addresses, non-IP
  packets together in one file; files numbered from 1 in order of appearance;
- `connection` [max files, optional]: one file per TCP/UDP connection (the 5-tuple, both
  directions); a SYN after other packets of the same 5-tuple starts a new connection (a
  repeated SYN does not); packets outside any connection share one file; files numbered from 1.

With a maximum of N files, the n-th new value (1-based) goes to file n mod N, so values are
dealt out in turn over files 0..N-1 (file 0 then also holds the non-TCP/UDP packets, as in
PcapSplitter). A BPF pre-filter drops the packets it does not match before anything is
counted. Output files are named `<input name without extension>-<4-digit number>` plus
`.pcap` or `.pcapng`, in the input's format.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import sys
import threading
from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from struct import Struct
from typing import BinaryIO

from segmentation.bpf import BpfFilter, BpfSyntaxError, bpf_compile
from segmentation.capture import CaptureEncoder, CaptureReader, capture_open
from segmentation.decode import (
    LINKTYPE_ETHERNET,
    TCP,
    UDP,
    connection_of,
    ip_summary,
    reverse_endpoints,
)
from segmentation.packet import Packet

__all__ = [
    "METHODS",
    "SegmentFile",
    "SegmentIndex",
    "SegmentList",
    "SplitError",
    "bpf_prefilter",
    "segment_assign",
    "split_capture",
    "split_param_parse",
]

METHODS = (
    "file-size",
    "packet-count",
    "client-ip",
    "server-ip",
    "server-port",
    "client-port",
    "ip-src-dst",
    "connection",
    "bpf-filter",
    "round-robin",
)
_MAX_FILES_METHODS = frozenset(
    {"client-ip", "server-ip", "server-port", "client-port", "ip-src-dst", "connection"}
)
_PCAP_FILE_HEADER = 24
_PCAP_RECORD_HEADER = 16
_MIN_FILE_SIZE = _PCAP_FILE_HEADER + _PCAP_RECORD_HEADER + 1

_SYN = 0x02
_ACK = 0x10

# Buffered segment bytes before they are appended to their files: bounds memory and open files
_FLUSH_BYTES = 8 << 20


class SplitError(ValueError):
    """A split that cannot start: unknown method, bad parameter, bad BPF, no output folder."""


@dataclass(slots=True)
class SegmentFile:
    """One written segment: its number (PcapSplitter's file number), file, packets and bytes."""

    number: int
    path: Path
    packets: int
    bytes: int


class SegmentList(list):
    """The segments of a split (a list of SegmentFile), plus how many packets were read."""

    packets_read: int = 0


def split_param_parse(method: str, param: int | str | None) -> int | str | None:
    """Check a method and its parameter; return the parameter as the method uses it.

    Numbers may come as int or decimal text; the max-files methods accept no parameter
    (unlimited files).
    """
    if method not in METHODS:
        raise SplitError(f"unknown split method '{method}'; known methods: {', '.join(METHODS)}")
    if method == "bpf-filter":
        if param is None or not isinstance(param, str) or not param.strip():
            raise SplitError("bpf-filter needs a parameter: the BPF expression to match")
        return param
    if param is None or (isinstance(param, str) and not param.strip()):
        if method in _MAX_FILES_METHODS:
            return None
        raise SplitError(f"{method} needs a parameter: {_PARAM_MEANING[method]}")
    number = _positive_int(param)
    if number is None:
        raise SplitError(
            f"the parameter of {method} ({_PARAM_MEANING[method]}) must be a positive "
            f"integer, not {param!r}"
        )
    if method == "file-size" and number < _MIN_FILE_SIZE:
        raise SplitError(
            f"file-size must be at least {_MIN_FILE_SIZE} bytes (a 24-byte file header, a "
            f"16-byte record header and one byte), not {number}"
        )
    return number


_PARAM_MEANING = {
    "file-size": "the maximum size of each file in bytes",
    "packet-count": "the number of packets per file",
    "round-robin": "the number of files",
    "client-ip": "the maximum number of files",
    "server-ip": "the maximum number of files",
    "server-port": "the maximum number of files",
    "client-port": "the maximum number of files",
    "ip-src-dst": "the maximum number of files",
    "connection": "the maximum number of files",
}


def _positive_int(value: int | str) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if isinstance(value, str):
        text = value.strip()
        if text.isascii() and text.isdigit() and int(text) > 0:
            return int(text)
    return None


# -- assignment -----------------------------------------------------------------------------
#
# Each method is a small stateful object: `number(data, linktype)` gives the segment of the
# next packet. Both `segment_assign` (over Packets) and `split_capture` (over raw pcap records,
# without building Packets) drive the same objects.


class _FileNumbers:
    """PcapSplitter's numbering of new values: 1, 2, 3, ... or, with a cap, cycling mod N."""

    __slots__ = ("cap", "next")

    def __init__(self, cap: int | None):
        self.cap = cap
        self.next = 1

    def take(self) -> int:
        number = self.next
        self.next += 1
        return number % self.cap if self.cap else number


class _BpfMatcher:
    """A filter compiled once per link type (pcapng interfaces may differ in link type)."""

    def __init__(self, expression: str):
        self.expression = expression
        self.filters: dict[int, BpfFilter] = {}

    def matches(self, data: bytes, linktype: int) -> bool:
        compiled = self.filters.get(linktype)
        if compiled is None:
            try:
                compiled = self.filters[linktype] = bpf_compile(self.expression, linktype)
            except BpfSyntaxError as exc:
                raise SplitError(
                    f"bad BPF filter '{self.expression}' for link type {linktype}: {exc}"
                ) from None
        return compiled.matches(data)


def bpf_prefilter(packets: Iterable[Packet], expression: str) -> Iterator[Packet]:
    """Only the packets that match `expression` (PcapSplitter's -i); the rest are dropped."""
    matches = _BpfMatcher(expression).matches
    for packet in packets:
        if matches(packet.data, packet.linktype):
            yield packet


def segment_assign(
    packets: Iterable[Packet], *, method: str, param: int | str | None = None
) -> Iterator[tuple[Packet, int]]:
    """Yield (packet, segment number) for each packet, in order, as PcapSplitter would.

    Stateful methods keep their tables for the life of the iterator. Raises SplitError for
    an unknown method or a bad parameter (before any packet is read).
    """
    number = _assigner(method, split_param_parse(method, param)).number
    return ((packet, number(packet.data, packet.linktype)) for packet in packets)


class _FileSize:
    def __init__(self, max_bytes: int):
        self.budget = max_bytes - _PCAP_FILE_HEADER
        self.total = 0

    def number(self, data: bytes, linktype: int) -> int:
        # PcapSplitter counts each packet as a pcap record, whatever the input's format
        self.total += len(data) + _PCAP_RECORD_HEADER
        return self.total // self.budget


class _PacketCount:
    def __init__(self, count: int):
        self.count = count
        self.seen = 0

    def number(self, data: bytes, linktype: int) -> int:
        self.seen += 1
        return (self.seen - 1) // self.count


class _RoundRobin:
    def __init__(self, files: int):
        self.files = files
        self.seen = 0

    def number(self, data: bytes, linktype: int) -> int:
        self.seen += 1
        return (self.seen - 1) % self.files


class _BpfCriteria:
    def __init__(self, expression: str):
        self.matches = _BpfMatcher(expression).matches

    def number(self, data: bytes, linktype: int) -> int:
        return 0 if self.matches(data, linktype) else 1


class _TwoTuple:
    """ip-src-dst: one file per unordered pair of IP addresses; non-IP packets share one."""

    def __init__(self, cap: int | None):
        self.numbers = _FileNumbers(cap)
        self.pairs: dict[tuple[bytes, bytes] | None, int] = {}

    def number(self, data: bytes, linktype: int) -> int:
        summary = ip_summary(data, linktype)
        if summary is None:
            key = None
        else:
            src, dst = summary[0], summary[1]
            key = (src, dst) if src <= dst else (dst, src)
        number = self.pairs.get(key)
        if number is None:
            number = self.pairs[key] = self.numbers.take()
        return number


class _Connection:
    """connection: one file per 5-tuple; a fresh SYN on a used 5-tuple starts a new file."""

    def __init__(self, cap: int | None):
        self.numbers = _FileNumbers(cap)
        # per protocol, both directions of a connection -> [file number, whether its last
        # packet was a SYN without ACK]; the same list under both keys
        self.tables: dict[int, dict[bytes, list]] = {TCP: {}, UDP: {}}
        self.outside: int | None = None  # the file of packets outside any connection

    def number(self, data: bytes, linktype: int) -> int:
        connection = connection_of(data, linktype)
        if connection is None:
            if self.outside is None:
                self.outside = self.numbers.take()
            return self.outside
        return self._numbered(*connection)

    def number_record(self, record: bytes, linktype: int) -> int:
        """`number` of a whole pcap record (its 16-byte header, then the packet). IPv4 TCP/UDP
        over Ethernet without options (most packets) is read in place, as `connection_of`
        reads it, without first copying the packet out of the record."""
        if linktype == LINKTYPE_ETHERNET and len(record) >= 70:
            ethertype, version_ihl, fragment, proto = _RECORD_IPV4_HEAD(record, 28)
            if ethertype == 0x0800 and version_ihl == 0x45 and not fragment & 0x3FFF:
                if proto == TCP:
                    return self._numbered(TCP, record[42:54], record[63])
                if proto == UDP:
                    return self._numbered(UDP, record[42:54], 0)
        return self.number(record[16:], linktype)

    def _numbered(self, proto: int, endpoints: bytes, flags: int) -> int:
        table = self.tables[proto]
        state = table.get(endpoints)
        syn = proto == TCP and flags & (_SYN | _ACK) == _SYN
        if state is None:
            state = table[endpoints] = table[reverse_endpoints(endpoints)] = [
                self.numbers.take(),
                syn,
            ]
        elif proto == TCP:
            if syn and not state[1]:
                # a new connection reusing the 5-tuple of an earlier one
                state[0] = self.numbers.take()
            state[1] = syn
        return state[0]


def _is_multicast(address: bytes) -> bool:
    return (address[0] & 0xF0) == 0xE0 if len(address) == 4 else address[0] == 0xFF


def _client_ip(src, dst, proto, sport, dport, flags) -> bytes:
    if proto == TCP and flags & _SYN:
        return dst if flags & _ACK else src
    return src if sport >= dport else dst


def _server_ip(src, dst, proto, sport, dport, flags) -> bytes:
    if proto == TCP and flags & _SYN:
        return src if flags & _ACK else dst
    return dst if sport >= dport else src


def _server_port(src, dst, proto, sport, dport, flags) -> int:
    if proto == TCP:
        if flags & _SYN:
            return sport if flags & _ACK else dport
    elif _is_multicast(src):
        return dport
    elif _is_multicast(dst):
        return sport
    return min(sport, dport)


def _client_port(src, dst, proto, sport, dport, flags) -> int:
    # The client's port is whichever of the two ports the server's is not.
    return sport + dport - _server_port(src, dst, proto, sport, dport, flags)


class _IpPort:
    """client-ip, server-ip, server-port, client-port: a connection's first packet decides
    its value (and so its file); packets outside TCP/UDP connections go to file 0."""

    def __init__(self, value_of: Callable[..., bytes | int], cap: int | None):
        self.value_of = value_of
        self.numbers = _FileNumbers(cap)
        # per protocol, both directions of a connection -> its file number
        self.tables: dict[int, dict[bytes, int]] = {TCP: {}, UDP: {}}
        self.values: dict[bytes | int, int] = {}

    def number(self, data: bytes, linktype: int) -> int:
        connection = connection_of(data, linktype)
        if connection is None:
            return 0
        proto, endpoints, _flags = connection
        table = self.tables[proto]
        number = table.get(endpoints)
        if number is None:
            value = self.value_of(*ip_summary(data, linktype)[:6])
            number = self.values.get(value)
            if number is None:
                number = self.values[value] = self.numbers.take()
            table[endpoints] = table[reverse_endpoints(endpoints)] = number
        return number


_VALUE_OF = {
    "client-ip": _client_ip,
    "server-ip": _server_ip,
    "server-port": _server_port,
    "client-port": _client_port,
}


def _assigner(method: str, value):
    """The stateful object that numbers packets for `method` (with a checked parameter)."""
    if method in _VALUE_OF:
        return _IpPort(_VALUE_OF[method], value)
    return {
        "file-size": _FileSize,
        "packet-count": _PacketCount,
        "round-robin": _RoundRobin,
        "bpf-filter": _BpfCriteria,
        "ip-src-dst": _TwoTuple,
        "connection": _Connection,
    }[method](value)


# -- writing --------------------------------------------------------------------------------

# The segment index: for each segment, the original indices of its packets, which segment files
# cannot carry. It is a series of chunks, each a little-endian (segment number: uint32, count:
# uint32) header followed by `count` uint64 packet indices; a segment's chunks are in order.
_CHUNK_HEADER = Struct("<II")


class SegmentIndex:
    """A segment index file opened for reading: `indices(number)` streams one segment's."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._chunks: dict[int, list[tuple[int, int]]] = {}
        size = self.path.stat().st_size
        with open(self.path, "rb") as file:
            position = 0
            while position < size:
                header = file.read(_CHUNK_HEADER.size)
                if len(header) < _CHUNK_HEADER.size:
                    raise SplitError(f"segment index {self.path} is truncated")
                number, count = _CHUNK_HEADER.unpack(header)
                start = position + _CHUNK_HEADER.size
                position = start + 8 * count
                if position > size:
                    raise SplitError(f"segment index {self.path} is truncated")
                self._chunks.setdefault(number, []).append((start, count))
                file.seek(position)

    @property
    def numbers(self) -> list[int]:
        return sorted(self._chunks)

    def count(self, number: int) -> int:
        return sum(count for _start, count in self._chunks.get(number, ()))

    def indices(self, number: int) -> Iterator[int]:
        """The original indices of segment `number`'s packets, in order, read chunk by chunk
        (iterated in C: no Python frame resumes per index)."""
        return chain.from_iterable(self._arrays(number))

    def _arrays(self, number: int) -> Iterator[array]:
        for start, count in self._chunks.get(number, ()):
            with open(self.path, "rb") as file:
                file.seek(start)
                values = array("Q", file.read(8 * count))
            if sys.byteorder == "big":  # pragma: no cover - the index is little-endian
                values.byteswap()
            yield values


def _max_open_files() -> int:
    """How many segment files may stay open at once: a share of the process's limit."""
    try:
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):  # pragma: no cover - no limit to ask about
        soft = 1024
    if soft == resource.RLIM_INFINITY:  # pragma: no cover
        soft = 4096
    return max(8, min(1024, soft // 4))


class _SegmentFiles:
    """Buffers the segments' bytes in memory and appends them to their files now and then.

    Segments can number in the thousands (one per connection): bytes are written when the
    buffers together pass a budget, through a bounded set of open files (least recently used
    closed first), so memory and descriptors stay bounded and each file is created once.
    `buffers[n]` and `indices[n]` are public to the split loop, which appends to them directly.
    """

    def __init__(self, like: CaptureReader, prefix: Path, extension: str, index_path: Path | None):
        self.like = like
        self.prefix = prefix
        self.extension = extension
        self.buffers: dict[int, bytearray] = {}
        self.indices: dict[int, array] = {}
        self.encoders: dict[int, CaptureEncoder] = {}
        self.packets: dict[int, int] = {}
        self.sizes: dict[int, int] = {}
        self.paths: dict[int, Path] = {}
        self.open_files: OrderedDict[int, BinaryIO] = OrderedDict()
        self.max_open = _max_open_files()
        self.index_path = index_path
        self.index_file = open(index_path, "wb") if index_path else None  # noqa: SIM115

    def start(self, number: int) -> bytearray:
        """A new segment: its buffer, starting with the file header."""
        encoder = self.encoders[number] = CaptureEncoder(self.like)
        buffer = self.buffers[number] = bytearray(encoder.preamble())
        self.indices[number] = array("Q")
        self.packets[number] = 0
        self.sizes[number] = 0
        self.paths[number] = Path(f"{self.prefix}{number:04d}{self.extension}")
        return buffer

    def _file(self, number: int) -> BinaryIO:
        file = self.open_files.get(number)
        if file is not None:
            self.open_files.move_to_end(number)
            return file
        # created (or truncated, if an earlier run left it) on its first write
        mode = "ab" if self.sizes[number] else "wb"
        file = self.open_files[number] = open(self.paths[number], mode, buffering=0)  # noqa: SIM115
        while len(self.open_files) > self.max_open:
            self.open_files.popitem(last=False)[1].close()
        return file

    def flush(self) -> None:
        for number, buffer in self.buffers.items():
            if buffer:
                self._file(number).write(buffer)
                self.sizes[number] += len(buffer)
                buffer.clear()
            indices = self.indices[number]
            if indices:
                self.packets[number] += len(indices)
                if self.index_file is not None:
                    if sys.byteorder == "big":  # pragma: no cover - the index is little-endian
                        indices.byteswap()
                    self.index_file.write(_CHUNK_HEADER.pack(number, len(indices)))
                    self.index_file.write(indices.tobytes())
                del indices[:]

    def close(self) -> None:
        while self.open_files:
            self.open_files.popitem()[1].close()
        if self.index_file is not None:
            self.index_file.close()

    def segments(self) -> list[SegmentFile]:
        return [
            SegmentFile(number, self.paths[number], self.packets[number], self.sizes[number])
            for number in sorted(self.paths)
        ]

    def remove_all(self) -> None:
        self.close()
        for path in self.paths.values():
            path.unlink(missing_ok=True)
        if self.index_path is not None:
            self.index_path.unlink(missing_ok=True)


def split_capture(
    input_path: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    method: str,
    param: int | str | None = None,
    bpf: str | None = None,
    index_path: str | os.PathLike[str] | None = None,
    parallel: bool | None = None,
    route: Callable[[bytes, int], int | None] | None = None,
) -> SegmentList:
    """Split a capture into one file per segment in `output_dir`, in the input's format.

    `bpf` (PcapSplitter's -i) keeps only matching packets. With `index_path`, a segment index
    (see SegmentIndex) is written there: the original index of every packet of every segment,
    which `assemble` needs to restore the original order. `parallel` decodes packets in a
    forked helper process while this one writes (default: for pcap inputs of 32 MB or more,
    on a machine with two cores or more); the result is the same either way. Raises
    SplitError (bad method, parameter, BPF or output folder) or CaptureError (a malformed
    input; the files written so far are removed).

    `route(data, linktype)` takes packets out of the method's segments: a packet it gives a
    number (ROUTED_BASE or more) goes to that segment instead, gathered across all the
    method's segments (jobs route the packets to subcontract this way). The method still sees
    every packet, so its numbering is the same with or without a route.
    """
    value = split_param_parse(method, param)
    output = Path(output_dir)
    if not output.is_dir():
        raise SplitError(f"output folder '{output}' does not exist")
    with capture_open(input_path) as reader:
        linktype = reader.linktype if reader.linktype is not None else 1
        for expression in (bpf, value if method == "bpf-filter" else None):
            if expression is not None:
                try:
                    bpf_compile(expression, linktype)
                except BpfSyntaxError as exc:
                    raise SplitError(f"bad BPF filter '{expression}': {exc}") from None
        base = Path(reader.path).name
        if "." in base:
            base = base[: base.rindex(".")]
        extension = ".pcapng" if reader.format == "pcapng" else ".pcap"
        files = _SegmentFiles(
            reader,
            output / f"{base}-",
            extension,
            Path(index_path) if index_path is not None else None,
        )
        assigner = _assigner(method, value)
        number_of = assigner.number if route is None else _routed(assigner.number, route)
        prefilter = _BpfMatcher(bpf).matches if bpf is not None else None
        if parallel is None:
            parallel = _parallel_worthwhile(reader)
        try:
            if reader.format == "pcap" and parallel and _CAN_FORK:
                number_record = _record_numberer(assigner, number_of)
                _split_pcap_records_in_parallel(reader, number_record, prefilter, files)
            elif reader.format == "pcap":
                number_record = _record_numberer(assigner, number_of)
                _split_pcap_records(reader, number_record, prefilter, files)
            else:
                _split_packets(reader, number_of, prefilter, files)
            files.flush()
        except BaseException:
            files.remove_all()
            raise
        files.close()
    result = SegmentList(files.segments())
    result.packets_read = reader.packets_read
    return result


ROUTED_BASE = 1 << 30  # numbers from here up are segments a route gathers
# ethertype, version and header length, fragment field, protocol of an IPv4 packet over
# Ethernet, read from a pcap record (16-byte record header first)
_RECORD_IPV4_HEAD = Struct("!HB5xHxB").unpack_from


def _record_numberer(assigner, number_of):
    """A function numbering a whole pcap record: the assigner's own when it has one and
    nothing wraps its numbering, else `number_of` on the packet copied out of the record."""
    if number_of == assigner.number and hasattr(assigner, "number_record"):
        return assigner.number_record

    def number_record(record: bytes, linktype: int) -> int:
        return number_of(record[16:], linktype)

    return number_record


def _routed(number_of, route):
    def number(data: bytes, linktype: int) -> int:
        method_number = number_of(data, linktype)
        routed = route(data, linktype)
        if routed is None:
            return method_number
        if not ROUTED_BASE <= routed < _DROPPED:
            raise SplitError(f"a route gave segment number {routed}, not one from ROUTED_BASE")
        return routed

    return number


def _split_pcap_records(reader, number_of, prefilter, files: _SegmentFiles) -> None:
    """The split loop for pcap input: records are copied whole, header included, so a
    segment holds the input's bytes; no Packet is built (this loop is the engine's hot path)."""
    linktype = reader.linktype
    buffers = files.buffers
    indices = files.indices
    start = files.start
    pending = 0
    index = -1
    for batch in reader.pcap_records():
        for record in batch:
            index += 1
            if prefilter is not None and not prefilter(record[16:], linktype):
                continue
            number = number_of(record, linktype)
            buffer = buffers.get(number)
            if buffer is None:
                buffer = start(number)
            buffer += record
            indices[number].append(index)
        pending += sum(map(len, batch))
        if pending >= _FLUSH_BYTES:
            files.flush()
            pending = 0


_CAN_FORK = "fork" in multiprocessing.get_all_start_methods()
_PARALLEL_MIN_BYTES = 32 << 20
_DROPPED = 0xFFFFFFFF  # the number a helper gives a packet the pre-filter drops


def _parallel_worthwhile(reader: CaptureReader) -> bool:
    """Two processes pay off on large pcap inputs when a second core is there."""
    if reader.format != "pcap" or (os.cpu_count() or 1) < 2:
        return False
    if threading.active_count() > 1:
        # Forking a process that runs other threads (a server, a worker with its heartbeat)
        # can deadlock the child on a lock one of them held; only single-threaded callers
        # such as `manage.py segment` get the helper process by default.
        return False
    try:
        return os.stat(reader.path).st_size >= _PARALLEL_MIN_BYTES
    except OSError:  # pragma: no cover - it was just opened
        return False


def _number_batches(path: str, number_of, prefilter, sender) -> None:
    """In the helper process: each record's segment number, a message per batch of records.

    The helper reads the file on its own (through its own descriptor) in the same batches as
    the writing process, so the two stay in step without sending packet bytes.
    """
    try:
        with capture_open(path) as reader:
            linktype = reader.linktype
            for batch in reader.pcap_records():
                numbers = array("I")
                append = numbers.append
                for record in batch:
                    if prefilter is not None and not prefilter(record[16:], linktype):
                        append(_DROPPED)
                    else:
                        append(number_of(record, linktype))
                sender.send_bytes(b"N" + numbers.tobytes())
        sender.send_bytes(b"D")
    except BaseException as exc:  # reported to the writing process, which raises
        sender.send_bytes(b"E" + f"{type(exc).__name__}: {exc}".encode())
    finally:
        sender.close()


def _split_pcap_records_in_parallel(reader, number_of, prefilter, files: _SegmentFiles) -> None:
    """The pcap split loop with the decoding done in a forked helper: this process copies
    records while the helper numbers the next batch (both cores busy)."""
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    helper = context.Process(
        target=_number_batches,
        args=(reader.path, number_of, prefilter, sender),
        name="segment-numbering",
        daemon=True,
    )
    helper.start()
    sender.close()
    try:
        _write_numbered_records(reader, receiver, files)
    finally:
        receiver.close()
        if helper.is_alive():
            helper.terminate()
        helper.join()


def _write_numbered_records(reader, receiver, files: _SegmentFiles) -> None:
    buffers = files.buffers
    indices = files.indices
    start = files.start
    pending = 0
    index = -1
    for batch in reader.pcap_records():
        message = _receive(receiver)
        if message[:1] != b"N":
            raise SplitError(f"the numbering helper failed: {message[1:].decode()}")
        numbers = array("I")
        numbers.frombytes(message[1:])
        if len(numbers) != len(batch):  # pragma: no cover - both read the same file alike
            raise SplitError("the numbering helper lost step with the input")
        for record, number in zip(batch, numbers, strict=True):
            index += 1
            if number == _DROPPED:
                continue
            buffer = buffers.get(number)
            if buffer is None:
                buffer = start(number)
            buffer += record
            indices[number].append(index)
        pending += sum(map(len, batch))
        if pending >= _FLUSH_BYTES:
            files.flush()
            pending = 0
    message = _receive(receiver)
    if message[:1] != b"D":
        raise SplitError(f"the numbering helper failed: {message[1:].decode()}")


def _receive(receiver) -> bytes:
    try:
        return receiver.recv_bytes()
    except EOFError:
        return b"Eit ended without a word (killed?)"


def _split_packets(reader, number_of, prefilter, files: _SegmentFiles) -> None:
    """The split loop for pcapng input: packets are re-encoded per segment."""
    buffers = files.buffers
    indices = files.indices
    encoders = files.encoders
    pending = 0
    for packet in reader:
        if prefilter is not None and not prefilter(packet.data, packet.linktype):
            continue
        number = number_of(packet.data, packet.linktype)
        buffer = buffers.get(number)
        if buffer is None:
            buffer = files.start(number)
        encoders[number].encode_into(buffer, packet)
        indices[number].append(packet.index)
        pending += len(packet.data) + 32
        if pending >= _FLUSH_BYTES:
            files.flush()
            pending = 0
