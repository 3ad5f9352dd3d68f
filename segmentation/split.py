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

import os
import resource
import sys
import weakref
from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import chain, islice
from pathlib import Path
from struct import Struct
from typing import BinaryIO

import numpy as np

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
from segmentation.heap import keep_freed_memory
from segmentation.packet import Packet

__all__ = [
    "MAX_FILES_METHODS",
    "METHODS",
    "MIN_FILE_SIZE",
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
MAX_FILES_METHODS = frozenset(
    {"client-ip", "server-ip", "server-port", "client-port", "ip-src-dst", "connection"}
)
_PCAP_FILE_HEADER = 24
_PCAP_RECORD_HEADER = 16
MIN_FILE_SIZE = _PCAP_FILE_HEADER + _PCAP_RECORD_HEADER + 1

_SYN = 0x02
_ACK = 0x10

# Buffered segment bytes before they are appended to their files: bounds memory and open files
_FLUSH_BYTES = 8 << 20
_READ_BYTES = 1 << 20  # pcap input read (then numbered and copied) at a time


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
        if method in MAX_FILES_METHODS:
            return None
        raise SplitError(f"{method} needs a parameter: {_PARAM_MEANING[method]}")
    number = _positive_int(param)
    if number is None:
        raise SplitError(
            f"the parameter of {method} ({_PARAM_MEANING[method]}) must be a positive "
            f"integer, not {param!r}"
        )
    if method == "file-size" and number < MIN_FILE_SIZE:
        raise SplitError(
            f"file-size must be at least {MIN_FILE_SIZE} bytes (a 24-byte file header, a "
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

    def number(self, data: bytes, linktype: int) -> int:
        return self._number_of_connection(connection_of(data, linktype))

    def _number_of_connection(self, connection: tuple[int, bytes, int] | None) -> int:
        if connection is None:
            if self.outside is None:
                self.outside = self.numbers.take()
            return self.outside
        return self._numbered(*connection)

    def number_spans(self, chunk: bytes, bounds: np.ndarray, linktype: int) -> np.ndarray:
        """`number_record` of every record of a chunk (record k spans bounds[k]:bounds[k+1]):
        the same numbers, taken in the same order, with Python code only for "events".

        The fast records (IPv4 TCP/UDP over Ethernet without options, as in `number_record`)
        are grouped by connection with numpy. A record's number can change only at an event:
        the first record of its connection in the chunk (the table is consulted), a SYN or the
        record after one (the SYN state changes), and every other record (decoded one by one).
        Events go through the tables in order; each other record of a connection takes the
        number of the connection's event before it. A connection that also has records
        decoded one by one (seen through a VLAN tag, say) has all its records as events.
        """
        starts = bounds[:-1]
        count = len(starts)
        fast = np.zeros(count, dtype=bool)
        data = np.frombuffer(chunk, dtype=np.uint8)
        if linktype == LINKTYPE_ETHERNET:
            candidates = np.flatnonzero(bounds[1:] - starts >= 70)
            at = starts[candidates]
            proto = data[at + 39]
            fast[candidates] = (
                (data[at + 28] == 0x08)
                & (data[at + 29] == 0x00)
                & (data[at + 30] == 0x45)
                & (data[at + 36] & 0x3F == 0)
                & (data[at + 37] == 0)
                & ((proto == TCP) | (proto == UDP))
            )
        positions = np.flatnonzero(fast)  # the fast records, in order
        slow = np.flatnonzero(~fast).tolist()
        bound_list = bounds.tolist()
        decoded = [
            connection_of(chunk[bound_list[k] + 16 : bound_list[k + 1]], linktype) for k in slow
        ]
        numbers = np.empty(count, dtype=np.int64)
        events = np.zeros(count, dtype=bool)
        events[slow] = True
        if len(positions):
            at = starts[positions]
            source = np.zeros(len(at), dtype=np.uint64)
            target = np.zeros(len(at), dtype=np.uint64)
            for offset in (42, 43, 44, 45, 50, 51):  # address then port, big-endian
                source = source << np.uint64(8) | data[at + offset]
            for offset in (46, 47, 48, 49, 52, 53):
                target = target << np.uint64(8) | data[at + offset]
            proto = data[at + 39]
            high = np.maximum(source, target) | (proto == UDP).astype(np.uint64) << np.uint64(48)
            low = np.minimum(source, target)
            # the connections one after another, each's records in chunk order (stable sort)
            grouped = np.lexsort((low, high))
            high, low = high[grouped], low[grouped]
            first = np.ones(len(grouped), dtype=bool)
            first[1:] = (high[1:] != high[:-1]) | (low[1:] != low[:-1])
            syn = (proto[grouped] == TCP) & ((data[at[grouped] + 63] & (_SYN | _ACK)) == _SYN)
            event = first | syn
            event[1:] |= syn[:-1] & ~first[1:]
            shared = _connections_decoded_apart(decoded, high[first], low[first])
            if shared:
                event |= np.isin(np.cumsum(first) - 1, shared)
            events[positions[grouped[event]]] = True
        # the events, in order, through the same tables as one record at a time
        numbered = self._numbered
        decoded_at = dict(zip(slow, decoded, strict=True))
        values = []
        append = values.append
        for k in np.flatnonzero(events).tolist():
            start = bound_list[k]
            if k in decoded_at:
                append(self._number_of_connection(decoded_at[k]))
            elif chunk[start + 39] == TCP:
                append(numbered(TCP, chunk[start + 42 : start + 54], chunk[start + 63]))
            else:
                append(numbered(UDP, chunk[start + 42 : start + 54], 0))
        numbers[events] = values
        if len(positions):
            # every other fast record takes the number of the last event of its connection
            # (each connection's first record is an event, so the last one is its own)
            ordered = positions[grouped]
            last_event = np.maximum.accumulate(np.where(event, np.arange(len(event)), 0))
            numbers[ordered] = numbers[ordered[last_event]]
        return numbers

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


def _connections_decoded_apart(
    decoded: list[tuple[int, bytes, int] | None], high: np.ndarray, low: np.ndarray
) -> list[int]:
    """Which connections (keys `high`, `low` as `_Connection.number_spans` builds them, one
    per connection) the records decoded one by one also belong to: IPv4 TCP/UDP connections
    seen through a VLAN tag or with IP options, for instance."""
    wanted = set()
    for connection in decoded:
        if connection is None or len(connection[1]) != 12:
            continue
        proto, endpoints, _flags = connection
        source = int.from_bytes(endpoints[0:4] + endpoints[8:10], "big")
        target = int.from_bytes(endpoints[4:8] + endpoints[10:12], "big")
        wanted.add((max(source, target) | (proto == UDP) << 48, min(source, target)))
    if not wanted:
        return []
    return [
        k for k, key in enumerate(zip(high.tolist(), low.tolist(), strict=True)) if key in wanted
    ]


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
_SIZES = 1 << 31  # a chunk header's number with this bit: the segment's record sizes (uint32)


class SegmentIndex:
    """A segment index file opened for reading: `indices(number)` streams one segment's."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._chunks: dict[int, list[tuple[int, int]]] = {}
        self._size_chunks: dict[int, list[tuple[int, int]]] = {}
        size = self.path.stat().st_size
        # one descriptor for every segment's reads (positioned reads: several segments are
        # read at once while merging), closed with the object
        self._descriptor = os.open(self.path, os.O_RDONLY)
        weakref.finalize(self, os.close, self._descriptor)
        with open(self.path, "rb") as file:
            position = 0
            while position < size:
                header = file.read(_CHUNK_HEADER.size)
                if len(header) < _CHUNK_HEADER.size:
                    raise SplitError(f"segment index {self.path} is truncated")
                number, count = _CHUNK_HEADER.unpack(header)
                start = position + _CHUNK_HEADER.size
                chunks = self._chunks
                if number & _SIZES:
                    number &= ~_SIZES
                    chunks = self._size_chunks
                position = start + (4 if chunks is self._size_chunks else 8) * count
                if position > size:
                    raise SplitError(f"segment index {self.path} is truncated")
                chunks.setdefault(number, []).append((start, count))
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

    def sizes(self, number: int) -> Iterator[int] | None:
        """The sizes (16-byte header included) of segment `number`'s records, in order, when
        the split recorded them (pcap input); None otherwise."""
        if number not in self._size_chunks and self.count(number):
            return None
        return chain.from_iterable(self._arrays(number, sizes=True))

    def _arrays(self, number: int, *, sizes: bool = False) -> Iterator[array]:
        chunks, code = (self._size_chunks, "I") if sizes else (self._chunks, "Q")
        for start, count in chunks.get(number, ()):
            values = array(code)
            values.frombytes(os.pread(self._descriptor, values.itemsize * count, start))
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
        self.record_sizes: dict[int, array] = {}  # pcap: each record's size, for assemblage
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
        self.record_sizes[number] = array("I")
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
            sizes = self.record_sizes[number]
            if sizes:
                if self.index_file is not None:
                    if sys.byteorder == "big":  # pragma: no cover - the index is little-endian
                        sizes.byteswap()
                    self.index_file.write(_CHUNK_HEADER.pack(number | _SIZES, len(sizes)))
                    self.index_file.write(sizes.tobytes())
                del sizes[:]

    def add_spans(self, chunk: bytes, bounds: np.ndarray, numbers: np.ndarray, first: int):
        """Append a chunk's records (record k spans bounds[k]:bounds[k + 1], original index
        first + k) to the segments `numbers` gives them (_DROPPED: none): per segment, its
        records that lie together in the chunk are copied as one slice."""
        positions = np.flatnonzero(numbers != _DROPPED)
        order = positions[np.argsort(numbers[positions], kind="stable")]
        if not len(order):
            return
        ordered_numbers = numbers[order]
        segment_starts = np.flatnonzero(np.diff(ordered_numbers, prepend=-1))
        segment_ends = np.append(segment_starts[1:], len(order))
        run_starts = np.flatnonzero(
            (np.diff(order, prepend=-2) != 1) | (np.diff(ordered_numbers, prepend=-1) != 0)
        )
        run_ends = np.append(run_starts[1:], len(order))
        # the chunk's records in segment order, one slice per run, then a slice per segment
        view = memoryview(chunk)
        regrouped = memoryview(
            b"".join(
                [
                    view[start:end]
                    for start, end in zip(
                        bounds[order[run_starts]].tolist(),
                        bounds[order[run_ends - 1] + 1].tolist(),
                        strict=True,
                    )
                ]
            )
        )
        sizes = bounds[order + 1] - bounds[order]
        offsets = np.concatenate(([0], np.cumsum(sizes)))
        indices = (order + first).astype(np.uint64)
        sizes = sizes.astype(np.uint32)
        for number, start, end, byte_start, byte_end in zip(
            ordered_numbers[segment_starts].tolist(),
            segment_starts.tolist(),
            segment_ends.tolist(),
            offsets[segment_starts].tolist(),
            offsets[segment_ends].tolist(),
            strict=True,
        ):
            buffer = self.buffers.get(number)
            if buffer is None:
                buffer = self.start(number)
            buffer += regrouped[byte_start:byte_end]
            self.indices[number].frombytes(indices[start:end].tobytes())
            self.record_sizes[number].frombytes(sizes[start:end].tobytes())

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
    route: Callable[[bytes, int], int | None] | None = None,
) -> SegmentList:
    """Split a capture into one file per segment in `output_dir`, in the input's format.

    `bpf` (PcapSplitter's -i) keeps only matching packets. With `index_path`, a segment index
    (see SegmentIndex) is written there: the original index of every packet of every segment,
    which `assemble` needs to restore the original order (for pcap input, with each record's
    size, so assemblage copies runs of records without reading their headers). Raises
    SplitError (bad method, parameter, BPF or output folder) or CaptureError (a malformed
    input; the files written so far are removed).

    `route(data, linktype, number)` takes packets out of the method's segments: a packet it
    gives a number (ROUTED_BASE or more) goes to that segment instead, gathered across all the
    method's segments (jobs route the packets to subcontract this way); `number` is the
    method's segment for the packet. The method still sees every packet, so its numbering is
    the same with or without a route.
    """
    value = split_param_parse(method, param)
    keep_freed_memory()
    output = Path(output_dir)
    if not output.is_dir():
        raise SplitError(f"output folder '{output}' does not exist")
    with capture_open(input_path, buffer_size=_READ_BYTES) as reader:
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
        try:
            if reader.format == "pcap":
                _split_pcap(reader, assigner, number_of, prefilter, files)
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
_DROPPED = 0xFFFFFFFF  # the number of a record the pre-filter drops
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
        routed = route(data, linktype, method_number)
        if routed is None:
            return method_number
        if not ROUTED_BASE <= routed < _DROPPED:
            raise SplitError(f"a route gave segment number {routed}, not one from ROUTED_BASE")
        return routed

    return number


def _split_pcap(reader, assigner, number_of, prefilter, files: _SegmentFiles) -> None:
    """The split loop for pcap input, a chunk read at a time: each record's segment number,
    then the records copied into their segments whole (header included, so a segment holds
    the input's bytes), runs of them at once. The connection method numbers a chunk with
    numpy (`number_spans`); the others, a route or a pre-filter number record by record."""
    linktype = reader.linktype
    spans = getattr(assigner, "number_spans", None)
    if number_of != assigner.number or prefilter is not None:
        spans = None
    number_record = _record_numberer(assigner, number_of)
    first = 0
    pending = 0
    for chunk, bounds in reader.pcap_spans():
        edges = np.array(bounds, dtype=np.int64)
        if spans is not None:
            numbers = spans(chunk, edges, linktype)
        else:
            numbers = np.array(
                _numbers_one_by_one(chunk, bounds, linktype, number_record, prefilter),
                dtype=np.int64,
            )
        files.add_spans(chunk, edges, numbers, first)
        first += len(bounds) - 1
        pending += bounds[-1] - bounds[0]
        if pending >= _FLUSH_BYTES:
            files.flush()
            pending = 0


def _numbers_one_by_one(chunk, bounds, linktype, number_record, prefilter) -> list[int]:
    numbers = []
    append = numbers.append
    for start, end in zip(bounds, islice(bounds, 1, None), strict=False):
        record = chunk[start:end]
        if prefilter is not None and not prefilter(record[16:], linktype):
            append(_DROPPED)
        else:
            append(number_record(record, linktype))
    return numbers


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
