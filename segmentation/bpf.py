"""BPF filters compiled by libpcap (through pcapy): the only module that imports the binding."""

import pcapy

__all__ = ["BpfFilter", "BpfSyntaxError", "bpf_compile"]

# libpcap's gencode wants the running platform's DLT_ value, not the file's LINKTYPE_ value. They
# are equal except for a few old types; raw IP is the one that occurs in captures (LINKTYPE_RAW
# is 101, and some writers store the BSD DLT values 12 or 14 instead).
_LINKTYPE_TO_DLT = {101: pcapy.DLT_RAW, 12: pcapy.DLT_RAW, 14: pcapy.DLT_RAW}
_SNAPLEN = 262144


class BpfSyntaxError(ValueError):
    """libpcap could not compile the expression for this link type; the message is libpcap's."""


class BpfFilter:
    """A compiled BPF program for one link type."""

    def __init__(self, expression: str, linktype: int, program: object):
        self.expression = expression
        self.linktype = linktype
        self._run = program.filter

    def matches(self, data: bytes) -> bool:
        """Whether libpcap's filter accepts a packet captured on this filter's link type."""
        return self._run(data) != 0

    def __repr__(self) -> str:
        return f"BpfFilter({self.expression!r}, linktype={self.linktype})"


def bpf_compile(expression: str, linktype: int) -> BpfFilter:
    """Compile a tcpdump-style filter expression for packets of the given link type."""
    dlt = _LINKTYPE_TO_DLT.get(linktype, linktype)
    try:
        program = pcapy.compile(dlt, _SNAPLEN, expression, 1, 0)
    except (pcapy.PcapError, ValueError) as exc:
        raise BpfSyntaxError(str(exc)) from None
    return BpfFilter(expression, linktype, program)
