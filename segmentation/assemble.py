"""Assemblage: merging segments back into one capture in the original packet order.

A segment file cannot carry its packets' original indices, so each part to merge comes with
them: an iterable of the original index of each of its packets, in the part's order. After
`split_capture(..., index_path=...)`, `SegmentIndex(index_path).indices(number)` gives a
segment's; a processed segment that dropped packets (or a group of packets gathered from
several segments) comes with the indices of the packets it holds, which its `Packet.index`
values give while they are processed. Each part is in increasing index order, so a k-way
merge on the indices restores the input's order.

Memory stays bounded whatever the number of parts: each is read through a small buffer, and
with many parts the file descriptors come from a bounded pool.
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

from segmentation.capture import CaptureReader, FilePool, capture_encoder, capture_open
from segmentation.packet import Packet
from segmentation.split import SegmentFile, SegmentIndex

__all__ = ["AssembleError", "AssembledCapture", "assemble", "assemble_segments"]

_READ_BUDGET = 32 << 20  # read-ahead shared by all parts
_OWN_DESCRIPTORS = 64  # up to this many parts each keep a descriptor; beyond, a pool
_POOL_SIZE = 256
_INDEX_BITS = 24
_WRITE_CHUNK = 1 << 20  # heap entries are (index << 24 | part): ints compare fastest


class AssembleError(ValueError):
    """Parts that cannot be merged: indices that disagree with a part or repeat."""


@dataclass(slots=True)
class AssembledCapture:
    """The merged output: its file, packets and bytes."""

    path: Path
    packets: int
    bytes: int


class _Part:
    """One part being merged: yields (original index, record bytes or Packet) in order.

    A pcap part written in the output's own header format gives its records as bytes, copied
    unchanged (the fast path); any other part gives Packets for the output's encoder.
    """

    def __init__(
        self,
        path: Path,
        indices: Iterable[int],
        like: CaptureReader,
        buffer_size: int,
        pool: FilePool | None,
    ):
        self.path = path
        self.reader = capture_open(path, buffer_size=buffer_size, pool=pool)
        self.raw = (
            like.format == "pcap"
            and self.reader.format == "pcap"
            and self.reader.byte_order == like.byte_order
            and self.reader.nanosecond == like.nanosecond
        )
        items = chain.from_iterable(self.reader.pcap_records()) if self.raw else iter(self.reader)
        self.items = zip(indices, items, strict=True)

    def advance(self) -> tuple[int, bytes | Packet] | None:
        try:
            return next(self.items, None)
        except ValueError as exc:
            if "zip()" not in str(exc):
                raise
            raise AssembleError(
                f"{self.path.name} and its indices disagree on its packet count"
            ) from None


def assemble(
    parts: Sequence[tuple[str | os.PathLike[str], Iterable[int]]],
    output_path: str | os.PathLike[str],
    *,
    like: CaptureReader,
) -> AssembledCapture:
    """Merge parts, each (capture file, original indices of its packets), in index order.

    `like` is a reader of the original input (it may be closed): the output gets its file
    header (pcap) or interfaces (pcapng), so unchanged pcap segments give the input back byte
    for byte. Raises AssembleError when a part's indices and packets differ in number, or an
    index repeats; CaptureError when a part cannot be read.
    """
    if len(parts) >= 1 << _INDEX_BITS:
        raise AssembleError(f"too many parts to merge ({len(parts)})")
    buffer_size = max(4096, min(1 << 20, _READ_BUDGET // max(1, len(parts))))
    pool = FilePool(_POOL_SIZE) if len(parts) > _OWN_DESCRIPTORS else None
    opened: list[_Part] = []
    try:
        for path, indices in parts:
            opened.append(_Part(Path(path), indices, like, buffer_size, pool))
        written = _merge(opened, output_path, like)
    finally:
        for part in opened:
            part.reader.close()
        if pool is not None:
            pool.close()
    return AssembledCapture(Path(output_path), written, os.stat(output_path).st_size)


def assemble_segments(
    segments: Iterable[SegmentFile],
    index_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    *,
    like: CaptureReader,
) -> AssembledCapture:
    """Merge unchanged segments of a split back, with the segment index the split wrote."""
    index = SegmentIndex(index_path)
    return assemble(
        [(segment.path, index.indices(segment.number)) for segment in segments],
        output_path,
        like=like,
    )


def _merge(parts: list[_Part], output_path: str | os.PathLike[str], like: CaptureReader) -> int:
    mask = (1 << _INDEX_BITS) - 1
    heap: list[int] = []
    pending: list[bytes | Packet | None] = [None] * len(parts)
    for number, part in enumerate(parts):
        head = part.advance()
        if head is not None:
            heap.append(head[0] << _INDEX_BITS | number)
            pending[number] = head[1]
    heapq.heapify(heap)
    pcapng = like.format == "pcapng"
    # `like` may not have read far enough to know every interface; the parts carrying packets
    # of later interfaces describe them (with the same numbers, as the split wrote them)
    interfaces = list(like.interfaces)
    encoder = capture_encoder(like, interfaces=interfaces)
    advances = [part.advance for part in parts]
    heappop, heappushpop = heapq.heappop, heapq.heappushpop
    written = 0
    out = bytearray(encoder.preamble())
    with open(output_path, "wb") as file:
        if heap:
            key = heappop(heap)
            number, index = key & mask, key >> _INDEX_BITS
        else:
            number = -1
        last = -1
        while number >= 0:
            # the part `number` holds the smallest index left; the heap holds the others
            if index <= last:
                raise AssembleError(f"packet {index} is in two parts or out of order")
            last = index
            item = pending[number]
            if type(item) is bytes:
                out += item
            else:
                if pcapng and item.interface >= len(interfaces):
                    known = parts[number].reader.interfaces
                    interfaces.extend(known[len(interfaces) : item.interface + 1])
                encoder.encode_into(out, item)
            written += 1
            if len(out) >= _WRITE_CHUNK:
                file.write(out)
                out.clear()
            head = advances[number]()
            if head is None:
                if not heap:
                    break
                key = heappop(heap)
            else:
                pending[number] = head[1]
                if head[0] == index + 1:
                    # the very next packet: no other part can hold a smaller index, so the
                    # heap is left alone (most packets, as connections come in bursts)
                    index += 1
                    continue
                key = heappushpop(heap, head[0] << _INDEX_BITS | number)
            number, index = key & mask, key >> _INDEX_BITS
        file.write(out)
    return written
