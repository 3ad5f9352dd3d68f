"""Fast header decoding: where the IP header starts, and a packet's TCP/UDP flow.

Called for every packet of captures of any size, so it reads fixed offsets with `struct`
instead of building a packet-library object per packet.
"""

from dataclasses import dataclass
from struct import Struct
from typing import NamedTuple

TCP = 6
UDP = 17

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW_OPENBSD = 12  # DLT_RAW on most BSDs; raw IP as written on Linux
LINKTYPE_RAW_BSDOS = 14
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

_RAW_LINKTYPES = frozenset({LINKTYPE_RAW_OPENBSD, LINKTYPE_RAW_BSDOS, LINKTYPE_RAW})
_ETHERTYPE_IPV4 = 0x0800
_ETHERTYPE_IPV6 = 0x86DD
# 802.1Q, 802.1ad (QinQ) and the older pre-standard QinQ tag
_ETHERTYPE_VLAN_TAGS = frozenset({0x8100, 0x88A8, 0x9100})
# Address families of the null/loopback header: AF_INET is 2 everywhere, AF_INET6 differs by OS
_AF_INET = 2
_AF_INET6 = frozenset({10, 24, 28, 30})

_U16 = Struct("!H")
_U32_BE = Struct(">I")
_U32_LE = Struct("<I")
_PORTS = Struct("!HH")
# The common case in one read: Ethernet, IPv4 without options, then TCP/UDP ports and TCP flags
# (ethertype, version/IHL, flags+fragment offset, protocol, addresses, ports, TCP flags)
_ETHERNET_IPV4_L4 = Struct("!HB5xHxB2x4s4sHH9xB")
# The same case for connection_of: ethertype, version/IHL, flags+offset, protocol; TCP flags
_ETHERNET_IPV4_HEAD = Struct("!HB5xHxB")
_U8 = Struct("!B")

# IPv6 extension headers that may sit between the fixed header and TCP/UDP
_IPV6_HOP_BY_HOP = 0
_IPV6_ROUTING = 43
_IPV6_FRAGMENT = 44
_IPV6_AH = 51
_IPV6_DEST_OPTIONS = 60
_IPV6_SKIPPABLE = frozenset({_IPV6_HOP_BY_HOP, _IPV6_ROUTING, _IPV6_DEST_OPTIONS, 135, 139, 140})


@dataclass(frozen=True, slots=True)
class Flow:
    """A packet's TCP or UDP flow as it travels (source first); `proto` is 6 or 17."""

    src_ip: bytes
    dst_ip: bytes
    src_port: int
    dst_port: int
    proto: int


class IpSummary(NamedTuple):
    """What the splitters read from one IP packet (a tuple: built for every packet).

    `proto` is the transport protocol after any IPv6 extension headers. `src_port`/`dst_port`
    are None unless a complete TCP (20 bytes) or UDP (8 bytes) header is present; a non-first
    fragment never has one. `fragmented` is true for every fragment, the first one included.
    `tcp_flags` is the TCP flags byte (0 when not TCP).
    """

    src_ip: bytes
    dst_ip: bytes
    proto: int
    src_port: int | None
    dst_port: int | None
    tcp_flags: int
    fragmented: bool


_new_tuple = tuple.__new__


def _ether_type_to_version(ethertype: int) -> int | None:
    if ethertype == _ETHERTYPE_IPV4:
        return 4
    if ethertype == _ETHERTYPE_IPV6:
        return 6
    return None


def network_layer(data: bytes, linktype: int) -> tuple[int, int] | None:
    """Offset of the IP header inside `data` and the IP version (4 or 6), or None for non-IP.

    Understands Ethernet (with any number of 802.1Q/802.1ad tags), Linux cooked capture v1
    and v2, raw IP and BSD null/loopback headers in either byte order.
    """
    size = len(data)
    if linktype == LINKTYPE_ETHERNET:
        offset = 12
        if size < 14:
            return None
        ethertype = _U16.unpack_from(data, offset)[0]
        while ethertype in _ETHERTYPE_VLAN_TAGS:
            offset += 4
            if size < offset + 2:
                return None
            ethertype = _U16.unpack_from(data, offset)[0]
        version = _ether_type_to_version(ethertype)
        offset += 2
    elif linktype == LINKTYPE_LINUX_SLL:
        if size < 16:
            return None
        version = _ether_type_to_version(_U16.unpack_from(data, 14)[0])
        offset = 16
    elif linktype == LINKTYPE_LINUX_SLL2:
        if size < 20:
            return None
        version = _ether_type_to_version(_U16.unpack_from(data, 0)[0])
        offset = 20
    elif linktype in _RAW_LINKTYPES:
        if size < 1:
            return None
        version = data[0] >> 4
        offset = 0
    elif linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        if size < 4:
            return None
        # The family is in the writer's host order (null) or network order (loop), and
        # captures move between machines, so accept whichever reading is a known family.
        family = _U32_LE.unpack_from(data, 0)[0]
        if family > 0xFFFF:
            family = _U32_BE.unpack_from(data, 0)[0]
        if family == _AF_INET:
            version = 4
        elif family in _AF_INET6:
            version = 6
        else:
            return None
        offset = 4
    elif linktype == LINKTYPE_IPV4:
        version, offset = 4, 0
    elif linktype == LINKTYPE_IPV6:
        version, offset = 6, 0
    else:
        return None
    if version not in (4, 6) or size <= offset or data[offset] >> 4 != version:
        return None
    return offset, version


def ip_summary(data: bytes, linktype: int) -> IpSummary | None:
    """Addresses, transport protocol, ports and TCP flags of a packet; None when it is not IP."""
    if linktype == LINKTYPE_ETHERNET and len(data) >= 54:
        ethertype, version_ihl, fragment, proto, src_ip, dst_ip, src_port, dst_port, flags = (
            _ETHERNET_IPV4_L4.unpack_from(data, 12)
        )
        if ethertype == _ETHERTYPE_IPV4 and version_ihl == 0x45 and not fragment & 0x3FFF:
            # tuple.__new__ skips the Python-level __new__ of a NamedTuple (a third of the cost)
            if proto == TCP:
                fields = (src_ip, dst_ip, TCP, src_port, dst_port, flags, False)
                return _new_tuple(IpSummary, fields)
            if proto == UDP:
                fields = (src_ip, dst_ip, UDP, src_port, dst_port, 0, False)
                return _new_tuple(IpSummary, fields)
    located = network_layer(data, linktype)
    if located is None:
        return None
    offset, version = located
    size = len(data)
    fragmented = False
    if version == 4:
        if size < offset + 20:
            return None
        header_len = (data[offset] & 0x0F) * 4
        src_ip = data[offset + 12 : offset + 16]
        dst_ip = data[offset + 16 : offset + 20]
        proto = data[offset + 9]
        flags_offset = _U16.unpack_from(data, offset + 6)[0]
        if flags_offset & 0x3FFF:  # more-fragments flag or a fragment offset
            fragmented = True
            if flags_offset & 0x1FFF:
                return IpSummary(src_ip, dst_ip, proto, None, None, 0, True)
        if header_len < 20:
            return IpSummary(src_ip, dst_ip, proto, None, None, 0, fragmented)
        l4 = offset + header_len
    else:
        if size < offset + 40:
            return None
        src_ip = data[offset + 8 : offset + 24]
        dst_ip = data[offset + 24 : offset + 40]
        proto = data[offset + 6]
        l4 = offset + 40
        while proto != TCP and proto != UDP:
            if proto in _IPV6_SKIPPABLE:
                if size < l4 + 2:
                    return IpSummary(src_ip, dst_ip, proto, None, None, 0, fragmented)
                proto, length = data[l4], (data[l4 + 1] + 1) * 8
            elif proto == _IPV6_FRAGMENT:
                if size < l4 + 8:
                    return IpSummary(src_ip, dst_ip, proto, None, None, 0, True)
                fragmented = True
                next_proto = data[l4]
                if _U16.unpack_from(data, l4 + 2)[0] & 0xFFF8:
                    return IpSummary(src_ip, dst_ip, next_proto, None, None, 0, True)
                proto, length = next_proto, 8
            elif proto == _IPV6_AH:
                if size < l4 + 2:
                    return IpSummary(src_ip, dst_ip, proto, None, None, 0, fragmented)
                proto, length = data[l4], (data[l4 + 1] + 2) * 4
            else:
                return IpSummary(src_ip, dst_ip, proto, None, None, 0, fragmented)
            l4 += length
    if proto == TCP:
        if size < l4 + 20:
            return IpSummary(src_ip, dst_ip, proto, None, None, 0, fragmented)
        src_port, dst_port = _PORTS.unpack_from(data, l4)
        return IpSummary(src_ip, dst_ip, TCP, src_port, dst_port, data[l4 + 13], fragmented)
    if proto == UDP:
        if size < l4 + 8:
            return IpSummary(src_ip, dst_ip, proto, None, None, 0, fragmented)
        src_port, dst_port = _PORTS.unpack_from(data, l4)
        return IpSummary(src_ip, dst_ip, UDP, src_port, dst_port, 0, fragmented)
    return IpSummary(src_ip, dst_ip, proto, None, None, 0, fragmented)


def connection_of(data: bytes, linktype: int) -> tuple[int, bytes, int] | None:
    """A packet's TCP/UDP connection as PcapSplitter sees it: (protocol, endpoints, TCP flags).

    `endpoints` is source address, destination address, source port, destination port as
    the bytes appear on the wire (12 bytes for IPv4, 36 for IPv6): a cheap dictionary key, in
    the packet's direction (`reverse_endpoints` gives the other one). None for packets outside
    any connection: not TCP/UDP, an incomplete transport header, or any IP fragment, the first
    included (PcapPlusPlus parses no transport layer in fragments). The splitters' hot path.
    """
    if linktype == LINKTYPE_ETHERNET and len(data) >= 54:
        ethertype, version_ihl, fragment, proto = _ETHERNET_IPV4_HEAD.unpack_from(data, 12)
        if ethertype == _ETHERTYPE_IPV4 and version_ihl == 0x45 and not fragment & 0x3FFF:
            # IPv4 without options: addresses then ports sit together at bytes 26..37
            if proto == TCP:
                return TCP, data[26:38], data[47]
            if proto == UDP:
                return UDP, data[26:38], 0
    summary = ip_summary(data, linktype)
    if summary is None or summary[3] is None or summary[6]:
        return None
    src_ip, dst_ip, proto, src_port, dst_port, flags, _fragmented = summary
    return proto, src_ip + dst_ip + _PORTS.pack(src_port, dst_port), flags


def reverse_endpoints(endpoints: bytes) -> bytes:
    """The endpoints of connection_of seen from the other direction."""
    half = (len(endpoints) - 4) // 2
    ports = len(endpoints) - 4
    return (
        endpoints[half:ports]
        + endpoints[:half]
        + endpoints[ports + 2 :]
        + endpoints[ports : ports + 2]
    )


def flow_of(data: bytes, linktype: int) -> Flow | None:
    """The packet's TCP/UDP flow, or None when it has no TCP/UDP header.

    Non-first IP fragments have none (their transport header travels in the first fragment,
    which has one); a TCP header must be complete (20 bytes) and a UDP header 8 bytes.
    """
    summary = ip_summary(data, linktype)
    if summary is None or summary.src_port is None:
        return None
    return Flow(summary.src_ip, summary.dst_ip, summary.src_port, summary.dst_port, summary.proto)
