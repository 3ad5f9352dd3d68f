"""Processing services (SPEC §5.3): deterministic functions from packets to packets.

Every service takes an iterable of `Packet`s and returns an iterator, reading one packet at a
time, so a pipeline streams a capture of any size in bounded memory. A service never changes a
packet's `index` (assemblage restores the original order from it); one that changes `data`
returns a new Packet with `header=None` so the writer builds a fresh record header.

- `anonymize-ip`: Crypto-PAn over the source and destination addresses of IPv4/IPv6 headers
  (and the addresses that repeat them: tunnelled headers, the header quoted by an ICMP error,
  ARP, neighbour discovery, MLD/IGMP groups), keyed per recipient;
- `strip-payload`: keep the headers through the transport header, cut the rest;
- `dedupe`: drop a packet equal to one in a small window before it, like `editcap -d/-D/-w`;
- `filter`: keep or drop what a BPF expression matches;
- `compress`: zstd for transport, applied to whole segment files; a no-op on packets.
"""

import hashlib
import os
import struct
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import zstandard
from django.utils.crypto import salted_hmac

from segmentation import bpf, decode
from segmentation.cryptopan import CryptoPAn
from segmentation.packet import Packet


class ProcessingError(ValueError):
    """A pipeline that cannot be built or data a service cannot process; the message says why."""


# --- keys ------------------------------------------------------------------------------------

_RECIPIENT_KEY_SALT = "segmentation.processing.recipient_key.crypto-pan"


def recipient_key(organization_id: int) -> bytes:
    """The 32-byte Crypto-PAn key of one recipient organization.

    HMAC-SHA256 of the organization id under Django's SECRET_KEY with a purpose-specific salt:
    stable across runs and workers, different for every recipient, and useless to anyone
    without the secret key (so a provider cannot map anonymized addresses back).
    """
    if isinstance(organization_id, bool) or not isinstance(organization_id, int):
        raise TypeError("organization_id is an integer")
    return salted_hmac(_RECIPIENT_KEY_SALT, str(organization_id), algorithm="sha256").digest()


# --- Internet checksums ----------------------------------------------------------------------

_U16 = struct.Struct("!H")


def _sum16(data: bytes) -> int:
    """One's-complement sum of `data` as 16-bit big-endian words (odd length padded), folded."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def _checksum_adjusted(checksum: int, old: bytes, new: bytes) -> int:
    """The checksum after covered bytes `old` became `new` (RFC 1624, eqn. 3).

    `old` and `new` start at an even offset of the checksummed data. Updating instead of
    recomputing works when the capture holds only the start of the packet, and keeps a checksum
    that was wrong in the capture (checksum offload) exactly as wrong as it was.
    """
    total = (~checksum & 0xFFFF) + (~_sum16(old) & 0xFFFF) + _sum16(new)
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _adjust_field(buf: bytearray, at: int, old: bytes, new: bytes, *, udp: bool = False) -> None:
    checksum = _U16.unpack_from(buf, at)[0]
    if udp and checksum == 0:
        return  # sent without a checksum (IPv4, or an IPv6 tunnel under RFC 6935)
    checksum = _checksum_adjusted(checksum, old, new)
    if udp and checksum == 0:
        checksum = 0xFFFF  # UDP sends a computed zero as all ones
    _U16.pack_into(buf, at, checksum)


# --- header layout ---------------------------------------------------------------------------

_ETHERTYPE_ARP = 0x0806
_ETHERTYPE_VLAN_TAGS = frozenset({0x8100, 0x88A8, 0x9100})

_ICMP = 1
_IGMP = 2
_IPIP = 4
_TCP = 6
_UDP = 17
_IPV6_IN_IP = 41
_ICMPV6 = 58
_SCTP = 132
_UDPLITE = 136

_IPV6_HOP_BY_HOP = 0
_IPV6_ROUTING = 43
_IPV6_FRAGMENT = 44
_IPV6_AH = 51
_IPV6_DEST_OPTIONS = 60

# Fixed transport header lengths kept by strip-payload (TCP's comes from its data offset).
_TRANSPORT_HEADER_LENGTH = {_UDP: 8, _UDPLITE: 8, _ICMP: 8, _ICMPV6: 8, _IGMP: 8, _SCTP: 12}

# ICMP errors quote the offending packet's IP header right after their 8-byte header.
_ICMP_ERRORS = frozenset({3, 4, 5, 11, 12})
_ICMP_REDIRECT = 5
_ICMPV6_ERRORS = frozenset({1, 2, 3, 4})
# ICMPv6 messages that carry IPv6 addresses after their 8-byte header: MLD (130-132) the group,
# neighbour solicitation/advertisement (135, 136) the target, redirect (137) target and
# destination.
_ICMPV6_ADDRESSES = {130: 1, 131: 1, 132: 1, 135: 1, 136: 1, 137: 2}
# IGMP v1/v2 messages (and the v3 query) carry the group address at offset 4.
_IGMP_GROUP_TYPES = frozenset({0x11, 0x12, 0x16, 0x17})

# Nested headers (tunnels, quoted headers) are followed this deep and no deeper.
_MAX_DEPTH = 4


def _link_layer(data: bytes, linktype: int) -> tuple[int, int | None]:
    """Length of the link header and the EtherType it announces (None if it names none).

    For link types this module does not know, the length is 0: nothing is known to be a header.
    """
    size = len(data)
    if linktype == decode.LINKTYPE_ETHERNET:
        if size < 14:
            return size, None
        offset = 12
        ethertype = _U16.unpack_from(data, offset)[0]
        while ethertype in _ETHERTYPE_VLAN_TAGS and size >= offset + 6:
            offset += 4
            ethertype = _U16.unpack_from(data, offset)[0]
        return offset + 2, ethertype
    if linktype == decode.LINKTYPE_LINUX_SLL:
        return (16, _U16.unpack_from(data, 14)[0]) if size >= 16 else (size, None)
    if linktype == decode.LINKTYPE_LINUX_SLL2:
        return (20, _U16.unpack_from(data, 0)[0]) if size >= 20 else (size, None)
    if linktype in (decode.LINKTYPE_NULL, decode.LINKTYPE_LOOP):
        return min(4, size), None
    return 0, None


def _ipv6_transport(data: bytes | bytearray, offset: int, end: int) -> tuple[int | None, int, bool]:
    """Walk the IPv6 extension headers: (transport protocol, its offset, routed).

    The protocol is None when no transport header follows (a non-first fragment, ESP, an
    extension header cut by the capture). `routed` is True when a routing header still has
    segments left: the transport checksum then covers the final destination, not the
    header's destination address.
    """
    proto = data[offset + 6]
    at = offset + 40
    routed = False
    for _ in range(16):
        if proto in (_IPV6_HOP_BY_HOP, _IPV6_ROUTING, _IPV6_DEST_OPTIONS):
            if end < at + 8:
                return None, at, routed
            if proto == _IPV6_ROUTING and data[at + 3]:
                routed = True
            proto, at = data[at], at + (data[at + 1] + 1) * 8
        elif proto == _IPV6_FRAGMENT:
            if end < at + 8:
                return None, at, routed
            if _U16.unpack_from(data, at + 2)[0] & 0xFFF8:
                return None, at + 8, routed
            proto, at = data[at], at + 8
        elif proto == _IPV6_AH:
            if end < at + 8:
                return None, at, routed
            proto, at = data[at], at + (data[at + 1] + 2) * 4
        else:
            return proto, at, routed
    return None, at, routed


# --- anonymize-ip ----------------------------------------------------------------------------


class _Anonymizer:
    """Rewrites the IP addresses of one packet in place with one Crypto-PAn key."""

    def __init__(self, key: bytes):
        self.address = CryptoPAn(key).anonymize_bytes

    def packet(self, data: bytes, linktype: int) -> bytes | None:
        """The packet with its addresses anonymized, or None when it carries no address."""
        located = decode.network_layer(data, linktype)
        buf = bytearray(data)
        if located is not None:
            offset, version = located
            changed = self.ip(buf, offset, version, len(buf), 0)
        else:
            header_length, ethertype = _link_layer(data, linktype)
            changed = ethertype == _ETHERTYPE_ARP and self.arp(buf, header_length)
        return bytes(buf) if changed and buf != data else None

    def arp(self, buf: bytearray, at: int) -> bool:
        if len(buf) < at + 8 or _U16.unpack_from(buf, at + 2)[0] != 0x0800 or buf[at + 5] != 4:
            return False
        hardware = buf[at + 4]
        sender = at + 8 + hardware
        target = sender + 4 + hardware
        for where in (sender, target):
            if where < len(buf):
                self._replace(buf, where, 1, 4, len(buf))
        return True

    def _replace(
        self, buf: bytearray, start: int, count: int, size: int, end: int
    ) -> tuple[bytes, bytes]:
        """Anonymize `count` consecutive addresses of `size` bytes within buf[:end].

        Returns the old and new bytes. An address the capture cut is anonymized as far as it
        goes: Crypto-PAn's first n output bits depend only on the first n input bits.
        """
        stop = min(start + count * size, end)
        old = bytes(buf[start:stop])
        parts = []
        for at in range(0, len(old), size):
            address = old[at : at + size]
            if len(address) == size:
                parts.append(self.address(address))
            else:
                padded = address + bytes(size - len(address))
                parts.append(self.address(padded)[: len(address)])
        new = b"".join(parts)
        buf[start:stop] = new
        return old, new

    def ip(self, buf: bytearray, offset: int, version: int, end: int, depth: int) -> bool:
        """Anonymize the IP header at `offset` (and what nests in it) within buf[:end]."""
        if depth > _MAX_DEPTH or end <= offset or buf[offset] >> 4 != version:
            return False
        if version == 4:
            header_length = (buf[offset] & 0x0F) * 4
            if header_length < 20 or end <= offset + 12:
                return False
            old, new = self._replace(buf, offset + 12, 2, 4, end)
            _adjust_field(buf, offset + 10, old, new)
            if end < offset + 20 or _U16.unpack_from(buf, offset + 6)[0] & 0x1FFF:
                return True  # cut in the header, or a non-first fragment: no transport header
            total_length = _U16.unpack_from(buf, offset + 2)[0]
            proto, transport = buf[offset + 9], offset + header_length
            pseudo_old, pseudo_new = old, new
            if total_length >= header_length:
                end = min(end, offset + total_length)
        else:
            if end <= offset + 8:
                return False
            old, new = self._replace(buf, offset + 8, 2, 16, end)
            if end < offset + 40:
                return True
            payload_length = _U16.unpack_from(buf, offset + 4)[0]
            if payload_length:  # zero is a jumbogram: the length sits in an option
                end = min(end, offset + 40 + payload_length)
            proto, transport, routed = _ipv6_transport(buf, offset, end)
            # With segments left, the checksum covers the final destination, which we keep.
            pseudo_old, pseudo_new = (old[:16], new[:16]) if routed else (old, new)
        if proto is not None and transport <= end:
            self.transport(buf, proto, transport, end, pseudo_old, pseudo_new, version, depth)
        return True

    def transport(
        self,
        buf: bytearray,
        proto: int,
        at: int,
        end: int,
        pseudo_old: bytes,
        pseudo_new: bytes,
        version: int,
        depth: int,
    ) -> None:
        """Fix the transport checksum for the new addresses and anonymize what it carries."""
        if proto == _TCP:
            if end >= at + 18:
                _adjust_field(buf, at + 16, pseudo_old, pseudo_new)
        elif proto in (_UDP, _UDPLITE):
            if end >= at + 8:
                _adjust_field(buf, at + 6, pseudo_old, pseudo_new, udp=proto == _UDP)
        elif proto in (_IPIP, _IPV6_IN_IP):
            self.ip(buf, at, 4 if proto == _IPIP else 6, end, depth + 1)
        elif proto == _ICMP and version == 4:
            self.icmp(buf, at, end, depth)
        elif proto == _ICMPV6 and version == 6:
            self.icmpv6(buf, at, end, pseudo_old, pseudo_new, depth)
        elif proto == _IGMP and version == 4 and end >= at + 8 and buf[at] in _IGMP_GROUP_TYPES:
            old, new = self._replace(buf, at + 4, 1, 4, end)
            _adjust_field(buf, at + 2, old, new)

    def icmp(self, buf: bytearray, at: int, end: int, depth: int) -> None:
        if end < at + 8 or buf[at] not in _ICMP_ERRORS:
            return
        before = bytes(buf[at + 4 : end])
        if buf[at] == _ICMP_REDIRECT:
            self._replace(buf, at + 4, 1, 4, end)  # the gateway to use instead
        self.ip(buf, at + 8, 4, end, depth + 1)
        _adjust_field(buf, at + 2, before, bytes(buf[at + 4 : end]))

    def icmpv6(
        self,
        buf: bytearray,
        at: int,
        end: int,
        pseudo_old: bytes,
        pseudo_new: bytes,
        depth: int,
    ) -> None:
        if end < at + 4:
            return
        kind = buf[at]
        before = bytes(buf[at + 4 : end])
        if kind in _ICMPV6_ERRORS:
            self.ip(buf, at + 8, 6, end, depth + 1)
        elif kind in _ICMPV6_ADDRESSES and end > at + 8:
            self._replace(buf, at + 8, _ICMPV6_ADDRESSES[kind], 16, end)
        # The pseudo-header (32 bytes, even) goes first so the body keeps its word alignment.
        _adjust_field(buf, at + 2, pseudo_old + before, pseudo_new + bytes(buf[at + 4 : end]))


def anonymize_ip(packets: Iterable[Packet], *, key: bytes) -> Iterator[Packet]:
    """Crypto-PAn anonymization of every IP address in the packets' IP headers.

    Addresses map prefix-preservingly under `key` (see `recipient_key`); IPv4 header, TCP, UDP,
    ICMP and ICMPv6 checksums are updated to match. Packets without IP (or cut before their
    addresses) pass unchanged; application payloads (DNS answers, ...) are not rewritten.
    """
    return _streamed(_anonymize_step(key=key), packets)


def _anonymize_step(*, key: bytes) -> Callable[[Packet], Packet | None]:
    anonymizer = _Anonymizer(key)

    def step(packet: Packet) -> Packet:
        data = anonymizer.packet(packet.data, packet.linktype)
        return packet if data is None else replace(packet, data=data, header=None)

    return step


def _streamed(step: Callable[[Packet], Packet | None], packets: Iterable[Packet]):
    """A service's stream: its per-packet step over each packet, dropped ones left out."""
    for packet in packets:
        result = step(packet)
        if result is not None:
            yield result


# --- strip-payload ---------------------------------------------------------------------------


def _ip_headers_end(data: bytes, offset: int, version: int, depth: int = 0) -> int:
    """Offset just past the IP header, its extensions and the transport header at `offset`.

    May lie beyond the captured data when the capture cut the headers; the caller clips.
    """
    size = len(data)
    if version == 4:
        if size < offset + 20:
            return offset + 20
        header_length = (data[offset] & 0x0F) * 4
        if header_length < 20:
            return offset  # not a header we can read: all of it counts as payload
        transport = offset + header_length
        if _U16.unpack_from(data, offset + 6)[0] & 0x1FFF:
            return transport
        proto = data[offset + 9]
    else:
        if size < offset + 40:
            return offset + 40
        proto, transport, _ = _ipv6_transport(data, offset, size)
        if proto is None:
            return transport
    if proto == _TCP:
        if size < transport + 13:
            return transport + 20
        return transport + max(20, (data[transport + 12] >> 4) * 4)
    if proto in (_IPIP, _IPV6_IN_IP) and depth < _MAX_DEPTH:
        return _ip_headers_end(data, transport, 4 if proto == _IPIP else 6, depth + 1)
    return transport + _TRANSPORT_HEADER_LENGTH.get(proto, 0)


def headers_length(data: bytes, linktype: int) -> int:
    """How many leading bytes of a packet are headers (link, IP, transport) — at most len(data).

    Non-IP packets keep their link header; link types this module does not know have none.
    """
    located = decode.network_layer(data, linktype)
    end = _link_layer(data, linktype)[0] if located is None else _ip_headers_end(data, *located)
    return min(end, len(data))


def strip_payload(packets: Iterable[Packet], *, keep_bytes: int = 0) -> Iterator[Packet]:
    """Keep each packet's headers and at most `keep_bytes` of what follows, like a snap length.

    Only `data` is cut: the original length stays, as in a capture taken with a short snaplen.
    """
    return _streamed(_strip_step(keep_bytes=keep_bytes), packets)


def _strip_step(*, keep_bytes: int = 0) -> Callable[[Packet], Packet]:
    if keep_bytes < 0:
        raise ProcessingError("strip-payload: keep_bytes must not be negative")

    def step(packet: Packet) -> Packet:
        cut = headers_length(packet.data, packet.linktype) + keep_bytes
        if cut < len(packet.data):
            return replace(packet, data=packet.data[:cut], header=None)
        return packet

    return step


# --- dedupe ----------------------------------------------------------------------------------

DEFAULT_DEDUPE_WINDOW = 5
# editcap allows 1,000,000; each remembered packet costs ~150 bytes of Python objects here.
MAX_DEDUPE_DEPTH = 100_000


def _packet_fingerprint(packet: Packet) -> bytes:
    # 128 bits of BLAKE2b: collisions are out of reach, and the window holds 16 bytes per
    # packet instead of the packet.
    digest = hashlib.blake2b(packet.data, digest_size=16).digest()
    return digest + packet.linktype.to_bytes(4, "big")


def dedupe(
    packets: Iterable[Packet],
    *,
    window: int | None = None,
    time_window_ns: int | None = None,
) -> Iterator[Packet]:
    """Drop every packet whose bytes equal those of a recent packet; keep everything else.

    By count (`window`, default 5), as `editcap -d` / `-D window`: the window counts the
    current packet, so it is compared with the `window - 1` packets before it. By time
    (`time_window_ns`), as `editcap -w`: compared with the packets at most that many
    nanoseconds older (at most MAX_DEDUPE_DEPTH of them). Dropped packets stay in the window,
    as in editcap, so a burst of copies shrinks to its first packet.
    """
    return _streamed(_dedupe_step(window=window, time_window_ns=time_window_ns), packets)


def _dedupe_step(
    *, window: int | None = None, time_window_ns: int | None = None
) -> Callable[[Packet], Packet | None]:
    if window is not None and time_window_ns is not None:
        raise ProcessingError("dedupe takes either a packet window or a time window, not both")
    if time_window_ns is not None:
        if time_window_ns < 0:
            raise ProcessingError("dedupe: time_window_ns must not be negative")
        return _dedupe_by_time_step(time_window_ns)
    window = DEFAULT_DEDUPE_WINDOW if window is None else window
    if not 1 <= window <= MAX_DEDUPE_DEPTH:
        raise ProcessingError(f"dedupe: window must be between 1 and {MAX_DEDUPE_DEPTH}")
    depth = window - 1
    recent: deque[bytes] = deque()
    counts: dict[bytes, int] = {}

    def step(packet: Packet) -> Packet | None:
        fingerprint = _packet_fingerprint(packet)
        kept = packet if fingerprint not in counts else None
        if depth:
            recent.append(fingerprint)
            counts[fingerprint] = counts.get(fingerprint, 0) + 1
            if len(recent) > depth:
                oldest = recent.popleft()
                if counts[oldest] == 1:
                    del counts[oldest]
                else:
                    counts[oldest] -= 1
        return kept

    return step


def _dedupe_by_time_step(time_window_ns: int) -> Callable[[Packet], Packet | None]:
    recent: deque[tuple[int, bytes]] = deque()
    # fingerprint -> [packets of it in the window, timestamp of the latest one]
    seen: dict[bytes, list[int]] = {}

    def step(packet: Packet) -> Packet | None:
        now = packet.ts_ns
        while recent and (now - recent[0][0] > time_window_ns or len(recent) >= MAX_DEDUPE_DEPTH):
            _, oldest = recent.popleft()
            entry = seen[oldest]
            entry[0] -= 1
            if not entry[0]:
                del seen[oldest]
        fingerprint = _packet_fingerprint(packet)
        entry = seen.get(fingerprint)
        kept = packet if entry is None or abs(now - entry[1]) > time_window_ns else None
        if entry is None:
            seen[fingerprint] = [1, now]
        else:
            entry[0] += 1
            entry[1] = now
        recent.append((now, fingerprint))
        return kept

    return step


# --- filter ----------------------------------------------------------------------------------

FILTER_MODES = ("keep", "drop")
# An expression is refused as a syntax error only when libpcap compiles it for none of these
# (Ethernet, raw IP, Linux cooked, 802.11 radiotap): "wlan ..." is fine without Ethernet.
_SYNTAX_CHECK_LINKTYPES = (
    decode.LINKTYPE_ETHERNET,
    decode.LINKTYPE_RAW,
    decode.LINKTYPE_LINUX_SLL,
    127,
)


def bpf_check(expression: str) -> None:
    """Raise ProcessingError unless libpcap can compile `expression` for some link type."""
    try:
        _bpf_checked(expression)
    except ProcessingError as exc:
        raise ProcessingError(str(exc).removeprefix("filter: ")) from None


def _bpf_checked(expression: str) -> None:
    """Raise ProcessingError unless libpcap can compile `expression` for some link type."""
    errors = []
    for linktype in _SYNTAX_CHECK_LINKTYPES:
        try:
            bpf.bpf_compile(expression, linktype)
        except bpf.BpfSyntaxError as error:
            errors.append(str(error))
        else:
            return
    raise ProcessingError(f"filter: bad BPF expression {expression!r}: {errors[0]}")


def _bpf_matcher(expression: str, linktype: int) -> Callable[[bytes], bool]:
    try:
        return bpf.bpf_compile(expression, linktype).matches
    except bpf.BpfSyntaxError:
        # The expression is valid (checked first) but says nothing about this link type, as
        # "tcp" on a link type libpcap cannot look into: none of those packets match.
        return lambda data: False


def filter_packets(
    packets: Iterable[Packet], *, expression: str, mode: str = "keep"
) -> Iterator[Packet]:
    """Keep (mode "keep") or drop (mode "drop") the packets a BPF expression matches.

    libpcap compiles the expression once per link type met in the stream; packets of a link
    type the expression cannot apply to do not match.
    """
    return _streamed(_filter_step(expression=expression, mode=mode), packets)


class _Matcher:
    """A BPF expression (already checked) compiled once per link type met."""

    def __init__(self, expression: str):
        self.expression = expression
        self.matchers: dict[int, Callable[[bytes], bool]] = {}

    def __call__(self, data: bytes, linktype: int) -> bool:
        matches = self.matchers.get(linktype)
        if matches is None:
            matches = self.matchers[linktype] = _bpf_matcher(self.expression, linktype)
        return matches(data)


def _filter_step(*, expression: str, mode: str = "keep") -> Callable[[Packet], Packet | None]:
    if mode not in FILTER_MODES:
        raise ProcessingError(f"filter: mode must be one of {', '.join(FILTER_MODES)}")
    _bpf_checked(expression)
    keep = mode == "keep"
    matches = _Matcher(expression)

    def step(packet: Packet) -> Packet | None:
        return packet if matches(packet.data, packet.linktype) == keep else None

    return step


# --- compress --------------------------------------------------------------------------------

DEFAULT_COMPRESSION_LEVEL = 3
_CHUNK = 1 << 20


def compress_passthrough(
    packets: Iterable[Packet], *, level: int | None = None
) -> Iterator[Packet]:
    """`compress` in a packet pipeline: packets pass unchanged.

    Compression applies to the segment file for transport (`compress_file`), and the assembled
    output is decompressed, so the packets themselves are not altered.
    """
    yield from packets


def compress_bytes(data: bytes, level: int = DEFAULT_COMPRESSION_LEVEL) -> bytes:
    """One zstd frame holding `data`."""
    return zstandard.ZstdCompressor(level=level).compress(data)


# Compressed input is fed this much at a time, so one call's output stays bounded (a zstd
# block of up to 128 KiB can take a handful of bytes): a "zip bomb" is stopped at `max_bytes`
# before it fills memory.
_DECOMPRESS_FEED = 1024


def _fed(chunks: Iterable[bytes]) -> Iterator[bytes]:
    for chunk in chunks:
        for start in range(0, len(chunk), _DECOMPRESS_FEED):
            yield chunk[start : start + _DECOMPRESS_FEED]


def _decompressed_chunks(chunks: Iterable[bytes], max_bytes: int | None = None) -> Iterator[bytes]:
    """Decompress a stream of one or more zstd frames; ProcessingError if invalid or cut, or
    once the output passes `max_bytes`."""
    decompressor = zstandard.ZstdDecompressor()
    frame = decompressor.decompressobj()
    frames, inside_frame = 0, False
    total = 0
    try:
        for chunk in _fed(chunks):
            while chunk:
                output = frame.decompress(chunk)
                if output:
                    total += len(output)
                    if max_bytes is not None and total > max_bytes:
                        raise ProcessingError(
                            f"zstd data decompresses to more than {max_bytes:,} bytes"
                        )
                    yield output
                if frame.eof:
                    frames, inside_frame = frames + 1, False
                    chunk = frame.unused_data
                    frame = decompressor.decompressobj()
                else:
                    inside_frame, chunk = True, b""
    except zstandard.ZstdError as error:
        raise ProcessingError(f"not valid zstd data: {error}") from error
    if inside_frame:
        raise ProcessingError("zstd data is truncated: the last frame is incomplete")
    if not frames:
        raise ProcessingError("not valid zstd data: empty input")


def decompress_bytes(data: bytes) -> bytes:
    """The bytes held by zstd data (one or more frames); ProcessingError if invalid or cut."""
    return b"".join(_decompressed_chunks([data]))


def _file_chunks(handle) -> Iterator[bytes]:
    while chunk := handle.read(_CHUNK):
        yield chunk


def compress_file(
    src: str | os.PathLike, dst: str | os.PathLike, level: int = DEFAULT_COMPRESSION_LEVEL
) -> None:
    """Compress the file `src` into `dst` as one zstd frame, streaming in bounded memory."""
    compressor = zstandard.ZstdCompressor(level=level)
    with open(src, "rb") as source, open(dst, "wb") as target:
        compressor.copy_stream(source, target, size=os.fstat(source.fileno()).st_size)


def decompress_file(
    src: str | os.PathLike, dst: str | os.PathLike, *, max_bytes: int | None = None
) -> None:
    """Decompress the zstd file `src` into `dst`; on bad or cut input, or output over
    `max_bytes`, raise and leave no `dst`."""
    try:
        with open(src, "rb") as source, open(dst, "wb") as target:
            for output in _decompressed_chunks(_file_chunks(source), max_bytes):
                target.write(output)
    except ProcessingError:
        Path(dst).unlink(missing_ok=True)
        raise


# --- registry and pipeline -------------------------------------------------------------------

SERVICES: dict[str, Callable[..., Iterator[Packet]]] = {
    "anonymize-ip": anonymize_ip,
    "strip-payload": strip_payload,
    "dedupe": dedupe,
    "filter": filter_packets,
    "compress": compress_passthrough,
}

# The same services one packet at a time: a step returns the packet (changed or not), or None
# to drop it. A pipeline runs these, so a step with a `where` sees only the packets it selects.
_STEPS: dict[str, Callable[..., Callable[[Packet], Packet | None]]] = {
    "anonymize-ip": _anonymize_step,
    "strip-payload": _strip_step,
    "dedupe": _dedupe_step,
    "filter": _filter_step,
    "compress": lambda *, level=None: lambda packet: packet,
}


def _integer(service: str, name: str, value: Any, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProcessingError(f"{service}: {name} must be an integer, not {value!r}")
    if value < low or (high is not None and value > high):
        bounds = f"at least {low}" if high is None else f"between {low} and {high}"
        raise ProcessingError(f"{service}: {name} must be {bounds}, not {value}")
    return value


def _expression(service: str, name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ProcessingError(f"{service}: {name} must be a non-empty BPF expression")
    _bpf_checked(value)  # a syntax error fails the pipeline now, not halfway through a capture
    return value


def _mode(service: str, name: str, value: Any) -> str:
    if value not in FILTER_MODES:
        raise ProcessingError(f"{service}: {name} must be one of {', '.join(FILTER_MODES)}")
    return value


# service -> parameter -> (validator, required)
_PARAMETERS: dict[str, dict[str, tuple[Callable[[str, str, Any], Any], bool]]] = {
    "anonymize-ip": {},
    "strip-payload": {
        "keep_bytes": (lambda s, n, v: _integer(s, n, v, 0, 65535), False),
    },
    "dedupe": {
        "window": (lambda s, n, v: _integer(s, n, v, 1, MAX_DEDUPE_DEPTH), False),
        "time_window_ns": (lambda s, n, v: _integer(s, n, v, 0), False),
    },
    "filter": {"expression": (_expression, True), "mode": (_mode, False)},
    "compress": {
        "level": (lambda s, n, v: _integer(s, n, v, 1, zstandard.MAX_COMPRESSION_LEVEL), False),
    },
}


def _step_parsed(position: int, step: Any) -> tuple[str, dict[str, Any]]:
    """Validate one pipeline step; return its service and keyword arguments."""
    if not isinstance(step, dict):
        raise ProcessingError(f"step {position}: expected an object with a 'service', not {step!r}")
    service = step.get("service")
    if not isinstance(service, str) or service not in SERVICES:
        known = ", ".join(SERVICES)
        raise ProcessingError(
            f"step {position}: unknown processing service {service!r} (known: {known})"
        )
    accepted = _PARAMETERS[service]
    unknown = sorted(set(step) - {"service", "where"} - set(accepted))
    if unknown:
        allowed = ", ".join(accepted) or "none"
        raise ProcessingError(
            f"step {position} ({service}): unknown parameter {', '.join(unknown)}"
            f" (accepted: {allowed})"
        )
    arguments = {}
    for name, (validator, required) in accepted.items():
        if name in step:
            arguments[name] = validator(service, name, step[name])
        elif required:
            raise ProcessingError(f"step {position} ({service}): {name} is required")
    if service == "dedupe" and len(arguments) > 1:
        raise ProcessingError(
            f"step {position} (dedupe): give either window or time_window_ns, not both"
        )
    if "where" in step:
        if service == "compress":
            raise ProcessingError(
                f"step {position} (compress): applies to whole segments, it takes no where"
            )
        _expression(f"step {position} ({service})", "where", step["where"])
    return service, arguments


def _steps_parsed(steps: Any) -> list[tuple[str, dict[str, Any]]]:
    if not isinstance(steps, list | tuple):
        raise ProcessingError("a processing pipeline is a list of steps")
    return [_step_parsed(position, step) for position, step in enumerate(steps, start=1)]


def pipeline_validate(steps: Any) -> list[dict]:
    """The pipeline as given if every step is valid; ProcessingError saying what is not."""
    _steps_parsed(steps)
    return list(steps)


def services_required(steps: list[dict]) -> set[str]:
    """The processing services a pipeline uses (validated: an unknown one raises)."""
    return {service for service, _ in _steps_parsed(steps)}


def compression_level(steps: list[dict]) -> int | None:
    """The zstd level the pipeline asks segment files to travel with, None if not compressed."""
    levels = [
        args.get("level", DEFAULT_COMPRESSION_LEVEL)
        for service, args in _steps_parsed(steps)
        if service == "compress"
    ]
    return levels[-1] if levels else None


def pipeline_needs(steps: list[dict], services: set[str]) -> Callable[[bytes, int], bool]:
    """Whether a packet (as captured) needs one of `services`: a step of one of them applies
    to it (the step has no `where`, or its `where` matches the packet)."""
    _steps_parsed(steps)
    wheres = [step.get("where") for step in steps if step["service"] in services]
    if not wheres:
        return lambda data, linktype: False
    if any(where is None for where in wheres):
        return lambda data, linktype: True
    matchers = [_Matcher(where) for where in wheres]
    return lambda data, linktype: any(matches(data, linktype) for matches in matchers)


def pipeline_build(
    steps: list[dict], *, recipient_key: bytes
) -> Callable[[Iterable[Packet]], Iterator[Packet]]:
    """A function running the services of `steps` in order over a stream of packets.

    `steps` look like `{"service": "strip-payload", "keep_bytes": 64}`; all are validated
    here, so a bad pipeline fails before any packet is read. `recipient_key` keys
    anonymize-ip (see `recipient_key()`). A step with `"where": "<BPF>"` applies only to the
    packets the expression matches as they were captured (before any step changed them);
    the others pass it unchanged.
    """
    parsed = _steps_parsed(steps)
    for service, arguments in parsed:
        if service == "anonymize-ip":
            if not isinstance(recipient_key, bytes) or len(recipient_key) != 32:
                raise ProcessingError("anonymize-ip: the recipient key must be 32 bytes")
            arguments["key"] = recipient_key

    def run(packets: Iterable[Packet]) -> Iterator[Packet]:
        chain = [
            (_STEPS[service](**arguments), _Matcher(step["where"]) if "where" in step else None)
            for (service, arguments), step in zip(parsed, steps, strict=True)
        ]
        for packet in packets:
            data, linktype = packet.data, packet.linktype
            for step, where in chain:
                if where is None or where(data, linktype):
                    packet = step(packet)
                    if packet is None:
                        break
            else:
                yield packet

    return run
