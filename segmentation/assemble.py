"""Assemblage: merging segments back into one capture in the original packet order.

A segment file cannot carry its packets' original indices, so each part to merge comes with
them: an iterable of the original index of each of its packets, in the part's order. After
`split_capture(..., index_path=...)`, `SegmentIndex(index_path).indices(number)` gives a
segment's; a processed segment that dropped packets (or a group of packets gathered from
several segments) comes with the indices of the packets it holds, which its `Packet.index`
values give while they are processed. Each part is in increasing index order, so a k-way
merge on the indices restores the input's order.

Memory stays bounded whatever the number of parts: each is read through a small buffer, and
with many parts the file descriptors come from a bounded pool. Raw pcap parts, up to a few
dozen (a capped split's), merge a window of indices at a time with numpy: the order is
computed at once and each run of one part's records is one slice copied (`_merge_spans`);
when the split recorded the records' sizes, not even the part's record headers are read one
by one. Other parts (pcapng, re-encoded, or thousands of them) merge run by run through a heap
(`_runs`, `_write_runs`).
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain, islice
from pathlib import Path

import numpy as np

from segmentation.capture import CaptureReader, FilePool, capture_encoder, capture_open
from segmentation.heap import keep_freed_memory
from segmentation.split import SegmentFile, SegmentIndex

__all__ = ["AssembleError", "AssembledCapture", "assemble", "assemble_segments"]

_READ_BUDGET = 32 << 20  # read-ahead shared by all parts
_OWN_DESCRIPTORS = 64  # up to this many parts each keep a descriptor; beyond, a pool
_POOL_SIZE = 256
_INDEX_BITS = 24  # heap entries are (index << 24 | part): ints compare fastest
_INDICES_PULL = 1 << 16  # indices taken from a part at a time in the windowed merge
_WRITE_CHUNK = 1 << 20


class AssembleError(ValueError):
    """Parts that cannot be merged: indices that disagree with a part or repeat."""


@dataclass(slots=True)
class AssembledCapture:
    """The merged output: its file, packets and bytes."""

    path: Path
    packets: int
    bytes: int


class _PartMismatch(Exception):
    """A part ran out of packets before its indices ran out, or the reverse."""


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
        sizes: Iterable[int] | None = None,
    ):
        self.path = path
        self.sizes = sizes
        self.reader = capture_open(path, buffer_size=buffer_size, pool=pool)
        self.raw = (
            like.format == "pcap"
            and self.reader.format == "pcap"
            and self.reader.byte_order == like.byte_order
            and self.reader.nanosecond == like.nanosecond
        )
        self.indices = indices

    def records(self) -> Iterator:
        """The part's records one by one: bytes when raw, else Packets."""
        return chain.from_iterable(self.reader.pcap_records()) if self.raw else iter(self.reader)


def assemble(
    parts: Sequence[
        tuple[str | os.PathLike[str], Iterable[int]]
        | tuple[str | os.PathLike[str], Iterable[int], Iterable[int] | None]
    ],
    output_path: str | os.PathLike[str],
    *,
    like: CaptureReader,
) -> AssembledCapture:
    """Merge parts, each (capture file, original indices of its packets), in index order.

    A part may carry a third item, its records' sizes as the split recorded them (see
    `SegmentIndex.sizes`; None: unknown), so a raw pcap part is copied without reading its
    record headers one by one. `like` is a reader of the original input (it may be closed):
    the output gets its file header (pcap) or interfaces (pcapng), so unchanged pcap segments
    give the input back byte for byte. Raises AssembleError when a part's indices and packets
    differ in number, or an index repeats; CaptureError when a part cannot be read.
    """
    keep_freed_memory()
    if len(parts) >= 1 << _INDEX_BITS:
        raise AssembleError(f"too many parts to merge ({len(parts)})")
    buffer_size = max(4096, min(1 << 20, _READ_BUDGET // max(1, len(parts))))
    pool = FilePool(_POOL_SIZE) if len(parts) > _OWN_DESCRIPTORS else None
    opened: list[_Part] = []
    try:
        for path, indices, *sizes in parts:
            opened.append(_Part(Path(path), indices, like, buffer_size, pool, *sizes))
        written = _merge(opened, output_path, like)
    except _PartMismatch as mismatch:
        raise AssembleError(
            f"{mismatch.args[0].path.name} and its indices disagree on its packet count"
        ) from None
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
        [
            (segment.path, index.indices(segment.number), index.sizes(segment.number))
            for segment in segments
        ],
        output_path,
        like=like,
    )


def _runs(index_sources: list[Iterable[int]]) -> Iterator[tuple[int, int]]:
    """The merge order as runs: (part number, how many packets in a row). The part holding
    the smallest index left gives all its packets whose indices follow on, as no other part
    can hold an index in between. AssembleError when an index repeats or goes backwards."""
    mask = (1 << _INDEX_BITS) - 1
    sources = [iter(indices) for indices in index_sources]
    heap = []
    for number, source in enumerate(sources):
        first = next(source, None)
        if first is not None:
            heap.append(first << _INDEX_BITS | number)
    heapq.heapify(heap)
    heappop, heappush = heapq.heappop, heapq.heappush
    last = -1
    while heap:
        key = heappop(heap)
        number, index = key & mask, key >> _INDEX_BITS
        if index <= last:
            raise AssembleError(f"packet {index} is in two parts or out of order")
        source = sources[number]
        count = 1
        following = next(source, None)
        while following == index + count:
            count += 1
            following = next(source, None)
        last = index + count - 1
        yield number, count
        if following is not None:
            heappush(heap, following << _INDEX_BITS | number)


def _merge(parts: list[_Part], output_path: str | os.PathLike[str], like: CaptureReader) -> int:
    """The k-way merge. A part whose indices and packets differ in number raises
    _PartMismatch. Raw pcap parts, up to a few dozen (a profile's capped split), merge
    window by window with numpy (`_merge_spans`); otherwise run by run (see `_runs`)."""
    if like.format == "pcap" and len(parts) <= _OWN_DESCRIPTORS and all(p.raw for p in parts):
        return _merge_spans(parts, output_path, like)
    return _write_runs(parts, _runs([part.indices for part in parts]), output_path, like)


def _write_runs(
    parts: list[_Part], runs: Iterable[tuple[int, int]], output_path, like: CaptureReader
) -> int:
    """Write the output following `runs` of (part number, packets in a row): raw pcap
    records are copied as they are, a run at once; other packets go through the encoder."""
    pcapng = like.format == "pcapng"
    # `like` may not have read far enough to know every interface; the parts carrying packets
    # of later interfaces describe them (with the same numbers, as the split wrote them)
    interfaces = list(like.interfaces)
    encoder = capture_encoder(like, interfaces=interfaces)
    records = [part.records() for part in parts]
    raw = [part.raw for part in parts]
    written = 0
    number = 0
    out = bytearray(encoder.preamble())
    with open(output_path, "wb") as file:
        try:
            for number, count in runs:
                part_records = records[number]
                if raw[number]:
                    if count == 1:
                        out += next(part_records)
                    else:
                        run = list(islice(part_records, count))
                        if len(run) < count:
                            raise StopIteration
                        out += b"".join(run)
                else:
                    for _ in range(count):
                        packet = next(part_records)
                        if pcapng and packet.interface >= len(interfaces):
                            known = parts[number].reader.interfaces
                            interfaces.extend(known[len(interfaces) : packet.interface + 1])
                        encoder.encode_into(out, packet)
                written += count
                if len(out) >= _WRITE_CHUNK:
                    file.write(out)
                    out.clear()
        except StopIteration:
            raise _PartMismatch(parts[number]) from None
        file.write(out)
    # a part with more packets than indices has some left
    for part in parts:
        if next(records[parts.index(part)], None) is not None:
            raise _PartMismatch(part)
    return written


class _Spans:
    """A raw pcap part in the windowed merge: the chunk of its records read last (with the
    records' boundaries, and how many of them are written) and its indices not yet merged."""

    def __init__(self, part: _Part):
        self.part = part
        self.chunks = part.reader.pcap_spans(sizes=part.sizes)
        self.chunk = memoryview(b"")
        self.bounds = np.zeros(1, dtype=np.int64)
        self.cursor = 0  # records of the chunk already written
        self.available = 0  # records of the chunk not yet written
        self.indices = iter(part.indices)
        self.pending = np.empty(0, dtype=np.int64)
        self.last = -1  # the last index taken from `indices`

    def ready(self) -> bool:
        """Make records and indices available; False once the part is done. A part whose
        records and indices run out at different times raises _PartMismatch."""
        if not self.available:
            chunk = next(self.chunks, None)
            if chunk is not None:
                buffer, bounds = chunk
                self.chunk = memoryview(buffer)
                self.bounds = np.asarray(bounds, dtype=np.int64)
                self.cursor = 0
                self.available = len(bounds) - 1
        if not len(self.pending):
            pulled = np.fromiter(islice(self.indices, _INDICES_PULL), dtype=np.int64)
            if len(pulled):
                steps = np.flatnonzero(np.diff(pulled) <= 0)
                if pulled[0] <= self.last or len(steps):
                    wrong = pulled[0] if pulled[0] <= self.last else pulled[steps[0] + 1]
                    raise AssembleError(f"packet {wrong} is in two parts or out of order")
                self.last = int(pulled[-1])
            self.pending = pulled
        if bool(self.available) != bool(len(self.pending)):
            raise _PartMismatch(self.part)
        return bool(self.available)

    def limit(self) -> int:
        """The highest index this part can write now."""
        return int(self.pending[min(self.available, len(self.pending)) - 1])


def _merge_spans(parts: list[_Part], output_path, like: CaptureReader) -> int:
    """Merge raw pcap parts a window at a time: every index up to the lowest of the parts'
    limits is ordered at once (numpy), and each run of one part's records that follow on in
    the output is copied as one slice of its chunk, so no Python code runs per packet."""
    spans = [_Spans(part) for part in parts]
    written = 0
    with open(output_path, "wb") as file:
        file.write(capture_encoder(like).preamble())
        active = [span for span in spans if span.ready()]
        while active:
            high = min(span.limit() for span in active)
            takes = [int(np.searchsorted(span.pending, high, side="right")) for span in active]
            merged = np.concatenate(
                [span.pending[:take] for span, take in zip(active, takes, strict=True)]
            )
            owners = np.repeat(np.arange(len(active)), takes)
            order = np.argsort(merged, kind="stable")
            merged = merged[order]
            repeated = np.flatnonzero(merged[1:] == merged[:-1])
            if len(repeated):
                raise AssembleError(f"packet {merged[repeated[0]]} is in two parts or out of order")
            owners = owners[order]
            firsts = np.flatnonzero(np.diff(owners, prepend=-1))
            run_owners = owners[firsts]
            counts = np.diff(firsts, append=len(owners))
            starts = np.empty(len(firsts), dtype=np.int64)
            ends = np.empty(len(firsts), dtype=np.int64)
            for number, (span, take) in enumerate(zip(active, takes, strict=True)):
                if not take:
                    continue
                mine = run_owners == number
                ends_in_part = span.cursor + np.cumsum(counts[mine])
                starts[mine] = span.bounds[ends_in_part - counts[mine]]
                ends[mine] = span.bounds[ends_in_part]
                span.cursor += take
                span.available -= take
                span.pending = span.pending[take:]
            chunks = [span.chunk for span in active]
            # one join per window: appending run by run to a buffer costs more than the copy
            file.write(
                b"".join(
                    [
                        chunks[number][start:end]
                        for number, start, end in zip(
                            run_owners.tolist(), starts.tolist(), ends.tolist(), strict=True
                        )
                    ]
                )
            )
            written += len(merged)
            active = [span for span in active if span.ready()]
    return written
