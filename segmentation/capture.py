"""Reading and writing capture files: pcap (micro/nanosecond, either byte order) and pcapng.

The reader streams: it reads the file in large chunks and parses record headers with `struct`,
so memory stays bounded by the chunk size plus the largest packet, whatever the file's size.
Anything malformed raises `CaptureError` naming the packet record (0-based, the index the
packet would have had) and the byte offset where reading failed; nothing else escapes.

Writing happens in the input's format. For pcap, the writer reuses the input's file header and
each unchanged packet's original record header, so an unchanged packet stream is written back
byte for byte. For pcapng, it writes a section header (the input's first one, with an unknown
section length), the input's interface descriptions as packets need them, and Enhanced Packet
Blocks; packet-block options and non-packet blocks (statistics, name resolution) are not kept.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import islice
from struct import Struct
from struct import error as StructError
from types import TracebackType
from typing import BinaryIO

import numpy as np

from segmentation.packet import CaptureError, Packet

__all__ = [
    "CaptureEncoder",
    "CaptureError",
    "CaptureReader",
    "CaptureWriter",
    "FilePool",
    "Interface",
    "capture_encoder",
    "capture_open",
    "capture_writer",
]

_CHUNK = 1 << 20
_SIZES_PULL = 1 << 14  # record sizes taken at a time by pcap_spans(sizes=...)
# Larger than any link layer's maximum (libpcap's largest is 256 KiB, a few USB/D-Bus types
# allow more); a length beyond this is a corrupt header, not a packet.
_MAX_CAPLEN = 1 << 24
_MAX_BLOCK = _MAX_CAPLEN + 4096

_PCAP_MAGIC_US = 0xA1B2C3D4
_PCAP_MAGIC_NS = 0xA1B23C4D
_PCAPNG_SHB = 0x0A0D0D0A
_PCAPNG_BOM = 0x1A2B3C4D
_BLOCK_IDB = 0x00000001
_BLOCK_PB = 0x00000002  # obsolete Packet Block
_BLOCK_SPB = 0x00000003
_BLOCK_EPB = 0x00000006

_OPT_END = 0
_OPT_IF_TSRESOL = 9
_OPT_IF_TSOFFSET = 14
# Interface options holding numbers wider than a byte: swapped when the byte order changes
_OPT_WIDE = {8: "Q", 14: "q", 16: "Q", 17: "Q"}

_NS_PER_S = 1_000_000_000


@dataclass(slots=True)
class Interface:
    """One pcapng interface description (or the single implicit interface of a pcap file).

    `units` is timestamp ticks per second (10**6 by default), `offset_s` the if_tsoffset in
    seconds. `options` keeps the raw option bytes (in `byte_order`) so a writer can repeat them.
    """

    linktype: int
    snaplen: int
    units: int = 1_000_000
    binary_exponent: int | None = None
    offset_s: int = 0
    options: bytes = b""
    byte_order: str = "<"

    def ticks_to_ns(self, ticks: int) -> int:
        if self.units == 1_000_000:
            ns = ticks * 1000
        elif self.binary_exponent is not None:
            ns = (ticks * _NS_PER_S) >> self.binary_exponent
        elif self.units <= _NS_PER_S:
            ns = ticks * (_NS_PER_S // self.units)
        else:
            ns = ticks // (self.units // _NS_PER_S)
        return ns + self.offset_s * _NS_PER_S

    def ns_to_ticks(self, ts_ns: int) -> int:
        ns = ts_ns - self.offset_s * _NS_PER_S
        if self.units == 1_000_000:
            return ns // 1000
        if self.binary_exponent is not None:
            # the inverse of the floor in ticks_to_ns: exact for any resolution up to 2**-29 s
            return -((-ns << self.binary_exponent) // _NS_PER_S)
        if self.units <= _NS_PER_S:
            return ns // (_NS_PER_S // self.units)
        return ns * (self.units // _NS_PER_S)


class CaptureReader:
    """An open capture: iterate it for `Packet`s (index 0, 1, ...); use it as a context manager.

    `format` is "pcap" or "pcapng"; `linktype` and `snaplen` come from the pcap file header or
    the first pcapng interface (None/0 for a pcapng file that describes no interface);
    `interfaces` lists pcapng interfaces as they are met (across sections: `Packet.interface`
    indexes this list). A reader can be iterated once.
    """

    format: str
    linktype: int | None
    snaplen: int
    byte_order: str
    nanosecond: bool
    file_header: bytes

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        buffer_size: int = _CHUNK,
        pool: FilePool | None = None,
    ):
        self.path = os.fspath(path)
        self.interfaces: list[Interface] = []
        self.packets_read = 0
        self._iterated = False
        self._chunk = max(4096, buffer_size)
        try:
            if pool is None:
                self._file = open(self.path, "rb", buffering=0)  # noqa: SIM115 - see close()
            else:
                self._file = _PooledFile(self.path, pool)
        except OSError as exc:
            raise CaptureError(f"cannot open the capture: {exc.strerror or exc}") from None
        try:
            self._start()
        except CaptureError:
            self._file.close()
            raise
        except (OSError, StructError, ValueError, OverflowError) as exc:
            self._file.close()
            raise CaptureError(f"unreadable capture: {exc}", offset=0) from None

    # -- context manager -------------------------------------------------------------------

    def __enter__(self) -> CaptureReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    # -- opening -----------------------------------------------------------------------------

    def _read(self, size: int) -> bytes:
        parts = []
        while size > 0:
            chunk = self._file.read(size)
            if not chunk:
                break
            parts.append(chunk)
            size -= len(chunk)
        return b"".join(parts)

    def _start(self) -> None:
        head = self._read(24)
        if not head:
            raise CaptureError("empty file: not a capture", offset=0)
        if len(head) < 4:
            raise CaptureError("not a capture: too short for a file header", offset=0)
        magic_le = int.from_bytes(head[:4], "little")
        magic_be = int.from_bytes(head[:4], "big")
        if magic_le == _PCAPNG_SHB:
            self.format = "pcapng"
            self._start_pcapng(head)
            return
        if magic_le in (_PCAP_MAGIC_US, _PCAP_MAGIC_NS):
            order, magic = "<", magic_le
        elif magic_be in (_PCAP_MAGIC_US, _PCAP_MAGIC_NS):
            order, magic = ">", magic_be
        else:
            raise CaptureError(
                f"not a pcap or pcapng capture (bad magic 0x{head[:4].hex()})", offset=0
            )
        if len(head) < 24:
            raise CaptureError(f"truncated pcap file header ({len(head)} of 24 bytes)", offset=0)
        self.format = "pcap"
        self.byte_order = order
        self.nanosecond = magic == _PCAP_MAGIC_NS
        self.file_header = head
        _major, _minor, _zone, _sigfigs, snaplen, network = Struct(order + "HHiIII").unpack_from(
            head, 4
        )
        self.snaplen = snaplen
        # The upper bits of the link-type field may carry FCS information
        self.linktype = network & 0xFFFF
        self.interfaces.append(Interface(self.linktype, snaplen, byte_order=order))
        self._pending = b""
        self._pending_offset = 24

    def _start_pcapng(self, head: bytes) -> None:
        self.nanosecond = False
        self._pending = head
        self._pending_offset = 0
        self._section_interfaces: list[int] = []
        self._blocks = self._iter_blocks()
        # The section header and the interface descriptions that follow it are read now so
        # `linktype` and `snaplen` are known before the first packet.
        block = next(self._blocks, None)
        if block is None:  # pragma: no cover - _iter_blocks raises on an empty section header
            raise CaptureError("truncated section header", offset=0)
        self._lookahead: list[tuple[int, bytes, int]] = []
        for block in self._blocks:
            self._lookahead.append(block)
            if block[0] != _BLOCK_IDB:
                break
        first = self.interfaces[0] if self.interfaces else None
        self.linktype = first.linktype if first else None
        self.snaplen = first.snaplen if first else 0

    # -- pcap ------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Packet]:
        if self._iterated:
            raise CaptureError("a capture reader can be iterated only once")
        self._iterated = True
        try:
            if self.format == "pcap":
                yield from self._iter_pcap()
            else:
                yield from self._iter_pcapng()
        except CaptureError:
            raise
        except (OSError, StructError, ValueError, OverflowError, MemoryError) as exc:
            raise CaptureError(f"unreadable capture: {exc}", record=self.packets_read) from None

    def pcap_records(self) -> Iterator[list[bytes]]:
        """The records of a pcap file, in lists (one per chunk read), no Packet built.

        Each record is its bytes: the 16-byte header, then the data (`record[16:]`). For
        copying records unchanged; lists rather than single records because the per-item
        cost of a generator shows at hundreds of thousands of packets a second. Errors as
        when iterating. Only for pcap files.
        """
        return self._raw(self._pcap_batches)

    def pcap_spans(
        self, *, sizes: Iterable[int] | None = None
    ) -> Iterator[tuple[bytes, Sequence[int]]]:
        """The records of a pcap file as spans of the chunks read: (chunk, boundaries), where
        record k of the chunk is `chunk[boundaries[k]:boundaries[k + 1]]` (its 16-byte header,
        then the data). Nothing is copied per record: for callers that move runs of records
        at once. Errors as when iterating. Only for pcap files.

        With `sizes`, each record's size (header included) as a split recorded it, no header
        is read one by one: each chunk's captured lengths are checked against the sizes at
        once, and a file that holds more or fewer records than sizes is an error.
        """
        if sizes is None:
            return self._raw(self._pcap_chunks)
        return self._raw(partial(self._pcap_sized_chunks, sizes))

    def _raw(self, chunks: Callable[[], Iterator]) -> Iterator:
        if self.format != "pcap":
            raise CaptureError("raw records exist only in pcap files")
        if self._iterated:
            raise CaptureError("a capture reader can be iterated only once")
        self._iterated = True
        try:
            yield from chunks()
        except CaptureError:
            raise
        except (OSError, StructError, ValueError, OverflowError, MemoryError) as exc:
            raise CaptureError(f"unreadable capture: {exc}", record=self.packets_read) from None

    def _pcap_sized_chunks(self, sizes: Iterable[int]) -> Iterator[tuple[bytes, np.ndarray]]:
        source = iter(sizes)
        pending = np.empty(0, dtype=np.int64)
        caplen = np.dtype(np.uint32).newbyteorder(self.byte_order)
        base = self._pending_offset
        index = 0
        while True:
            if not len(pending):
                pending = np.fromiter(islice(source, _SIZES_PULL), dtype=np.int64)
                if not len(pending):
                    if self._read(1):
                        raise CaptureError(
                            "more records than the segment index lists", record=index, offset=base
                        )
                    return
            # whole records up to a chunk's worth (at least one)
            ends = np.cumsum(pending)
            take = max(1, int(np.searchsorted(ends, self._chunk, side="right")))
            bounds = np.concatenate(([0], ends[:take]))
            chunk = self._read(int(bounds[-1]))
            if len(chunk) < bounds[-1]:
                raise CaptureError(
                    "fewer records than the segment index lists", record=index, offset=base
                )
            headers = np.frombuffer(chunk, dtype=np.uint8)
            # each record's captured length (bytes 8..11 of its header) against its size
            at = bounds[:-1, None] + np.arange(8, 12)
            lengths = headers[at].copy().view(caplen).reshape(-1)
            wrong = np.flatnonzero(lengths.astype(np.int64) + 16 != pending[:take])
            if len(wrong):
                raise CaptureError(
                    "a record's captured length disagrees with the segment index",
                    record=index + int(wrong[0]),
                    offset=base + int(bounds[wrong[0]]),
                )
            pending = pending[take:]
            index += take
            base += len(chunk)
            self.packets_read = index
            yield chunk, bounds

    def _iter_pcap(self) -> Iterator[Packet]:
        unpack = Struct(self.byte_order + "II4xI").unpack_from
        frac_ns = 1 if self.nanosecond else 1000
        linktype = self.linktype
        index = 0
        for batch in self._pcap_batches():
            for record in batch:
                sec, frac, orig_len = unpack(record)
                yield Packet(
                    index,
                    record[16:],
                    sec * _NS_PER_S + frac * frac_ns,
                    orig_len,
                    linktype,
                    0,
                    record[:16],
                )
                index += 1

    def _pcap_batches(self) -> Iterator[list[bytes]]:
        """The records of a pcap file, a list of copies per chunk read."""
        return self._pcap_chunks(copies=True)

    def _pcap_chunks(self, *, copies: bool = False) -> Iterator:
        """The one reading loop of pcap files: per chunk read, its complete records, either as
        copies (a list of bytes) or as (chunk, boundaries) (see `pcap_spans`)."""
        read = self._file.read
        caplen_of = Struct(self.byte_order + "I").unpack_from
        buf = self._pending
        base = self._pending_offset  # file offset of buf[0]
        pos = 0
        index = 0  # records before buf[pos]
        size = len(buf)
        while True:
            # every complete record in the buffer, in loops kept as tight as possible
            last_header = size - 16
            if copies:
                batch: list[bytes] = []
                append = batch.append
                while pos <= last_header:
                    end = pos + 16 + caplen_of(buf, pos + 8)[0]
                    if end > size:
                        break
                    append(buf[pos:end])
                    pos = end
                found, item = len(batch), batch
            else:
                bounds = [pos]
                append = bounds.append
                while pos <= last_header:
                    end = pos + 16 + caplen_of(buf, pos + 8)[0]
                    if end > size:
                        break
                    append(end)
                    pos = end
                found, item = len(bounds) - 1, (buf, bounds)
            if found:
                index += found
                self.packets_read = index
                yield item
            # then the next chunk, for a record header or the rest of a record
            if size - pos < 16:
                need = 16 - (size - pos)
                chunk = read(self._chunk)
                if not chunk:
                    if pos == size:
                        return
                    raise CaptureError(
                        f"truncated record header ({size - pos} of 16 bytes)",
                        record=index,
                        offset=base + pos,
                    )
            else:
                caplen = caplen_of(buf, pos + 8)[0]
                if caplen > _MAX_CAPLEN:
                    raise CaptureError(
                        f"absurd captured length {caplen} in the record header",
                        record=index,
                        offset=base + pos,
                    )
                need = pos + 16 + caplen - size
                chunk = self._read(max(self._chunk, need))
                if len(chunk) < need:
                    raise CaptureError(
                        f"truncated record: captured length {caplen} runs "
                        f"{need - len(chunk)} bytes beyond the end of the file",
                        record=index,
                        offset=base + pos,
                    )
            buf = buf[pos:] + chunk
            base += pos
            pos = 0
            size = len(buf)

    # -- pcapng ----------------------------------------------------------------------------

    def _iter_blocks(self) -> Iterator[tuple[int, bytes, int]]:
        """Yields (block type, body, file offset) for every block; handles section headers."""
        read = self._file.read
        buf = self._pending
        base = self._pending_offset
        pos = 0
        size = len(buf)
        order = "<"
        head = Struct("<II")
        while True:
            if size - pos < 12:
                chunk = read(self._chunk)
                if not chunk:
                    if pos == size:
                        return
                    raise CaptureError(
                        f"truncated block header ({size - pos} bytes)",
                        record=self.packets_read,
                        offset=base + pos,
                    )
                buf = buf[pos:] + chunk
                base += pos
                pos = 0
                size = len(buf)
                continue
            block_type, length = head.unpack_from(buf, pos)
            if block_type == _PCAPNG_SHB:
                # The byte-order magic decides how this section (its header included) is read
                bom = buf[pos + 8 : pos + 12]
                if bom == b"\x4d\x3c\x2b\x1a":
                    order = "<"
                elif bom == b"\x1a\x2b\x3c\x4d":
                    order = ">"
                else:
                    raise CaptureError(
                        f"bad byte-order magic 0x{bom.hex()} in a section header",
                        record=self.packets_read,
                        offset=base + pos,
                    )
                head = Struct(order + "II")
                block_type, length = head.unpack_from(buf, pos)
            if length < 12 or length % 4 or length > _MAX_BLOCK:
                raise CaptureError(
                    f"bad block length {length}", record=self.packets_read, offset=base + pos
                )
            end = pos + length
            if end > size:
                need = end - size
                chunk = self._read(max(self._chunk, need))
                if len(chunk) < need:
                    raise CaptureError(
                        f"truncated block: length {length} runs {need - len(chunk)} bytes "
                        "beyond the end of the file",
                        record=self.packets_read,
                        offset=base + pos,
                    )
                buf = buf[pos:] + chunk
                base += pos
                pos = 0
                size = len(buf)
                continue
            (trailer,) = Struct(order + "I").unpack_from(buf, end - 4)
            if trailer != length:
                raise CaptureError(
                    f"bad block length: header says {length}, trailer says {trailer}",
                    record=self.packets_read,
                    offset=base + pos,
                )
            body = buf[pos + 8 : end - 4]
            offset = base + pos
            pos = end
            if block_type == _PCAPNG_SHB:
                self._section_header(body, order, offset, buf[offset - base : end])
            elif block_type == _BLOCK_IDB:
                self._interface_description(body, order, offset)
            yield block_type, body, offset

    def _section_header(self, body: bytes, order: str, offset: int, raw: bytes) -> None:
        if len(body) < 16:
            raise CaptureError("section header too short", record=self.packets_read, offset=offset)
        major, _minor = Struct(order + "HH").unpack_from(body, 4)
        if major != 1:
            raise CaptureError(
                f"unsupported pcapng major version {major}",
                record=self.packets_read,
                offset=offset,
            )
        if not hasattr(self, "byte_order"):
            self.byte_order = order
            self.file_header = raw
        self._order = order
        self._section_interfaces = []
        self._epb = Struct(order + "IIIII")
        self._pb = Struct(order + "HHIIII")
        self._u32 = Struct(order + "I")

    def _interface_description(self, body: bytes, order: str, offset: int) -> None:
        if len(body) < 8:
            raise CaptureError(
                "interface description too short", record=self.packets_read, offset=offset
            )
        linktype, _reserved, snaplen = Struct(order + "HHI").unpack_from(body, 0)
        interface = Interface(linktype, snaplen, options=body[8:], byte_order=order)
        for code, value in _options(body[8:], order):
            if code == _OPT_IF_TSRESOL and value:
                exponent = value[0] & 0x7F
                if value[0] & 0x80:
                    interface.units, interface.binary_exponent = 1 << exponent, exponent
                else:
                    interface.units = 10**exponent
            elif code == _OPT_IF_TSOFFSET and len(value) == 8:
                (interface.offset_s,) = Struct(order + "q").unpack(value)
        self._section_interfaces.append(len(self.interfaces))
        self.interfaces.append(interface)

    def _iter_pcapng(self) -> Iterator[Packet]:
        index = 0
        blocks = self._lookahead
        self._lookahead = []
        pending = iter(blocks)
        for source in (pending, self._blocks):
            for block_type, body, offset in source:
                if block_type == _BLOCK_EPB:
                    if len(body) < 20:
                        raise CaptureError(
                            "enhanced packet block too short", record=index, offset=offset
                        )
                    interface_id, ts_high, ts_low, caplen, orig_len = self._epb.unpack_from(body)
                    start = 20
                elif block_type == _BLOCK_SPB:
                    if len(body) < 4:
                        raise CaptureError(
                            "simple packet block too short", record=index, offset=offset
                        )
                    (orig_len,) = self._u32.unpack_from(body)
                    interface_id, ts_high, ts_low = 0, 0, 0
                    caplen = min(orig_len, len(body) - 4)
                    if self._section_interfaces:
                        snaplen = self.interfaces[self._section_interfaces[0]].snaplen
                        if snaplen:
                            caplen = min(caplen, snaplen)
                    start = 4
                elif block_type == _BLOCK_PB:
                    if len(body) < 20:
                        raise CaptureError("packet block too short", record=index, offset=offset)
                    interface_id, _drops, ts_high, ts_low, caplen, orig_len = self._pb.unpack_from(
                        body
                    )
                    start = 20
                else:
                    continue  # section headers, interfaces (already read), other blocks
                if interface_id >= len(self._section_interfaces):
                    raise CaptureError(
                        f"packet on undescribed interface {interface_id}",
                        record=index,
                        offset=offset,
                    )
                if start + caplen > len(body):
                    raise CaptureError(
                        f"captured length {caplen} runs beyond its block",
                        record=index,
                        offset=offset,
                    )
                number = self._section_interfaces[interface_id]
                interface = self.interfaces[number]
                yield Packet(
                    index,
                    body[start : start + caplen],
                    interface.ticks_to_ns((ts_high << 32) | ts_low),
                    orig_len,
                    interface.linktype,
                    number,
                    None,
                )
                index += 1
                self.packets_read = index


class FilePool:
    """Read descriptors shared by many readers: at most `max_open` stay open (least recently
    used closed first), so thousands of files can be read at once within the process limit."""

    def __init__(self, max_open: int = 128):
        self.max_open = max(1, max_open)
        self._files: OrderedDict[str, BinaryIO] = OrderedDict()

    def read(self, path: str, position: int, size: int) -> bytes:
        file = self._files.get(path)
        if file is None:
            file = self._files[path] = open(path, "rb", buffering=0)  # noqa: SIM115
            while len(self._files) > self.max_open:
                self._files.popitem(last=False)[1].close()
        else:
            self._files.move_to_end(path)
        file.seek(position)
        return file.read(size)

    def forget(self, path: str) -> None:
        file = self._files.pop(path, None)
        if file is not None:
            file.close()

    def close(self) -> None:
        while self._files:
            self._files.popitem()[1].close()


class _PooledFile:
    """A read-only file whose descriptor lives in a FilePool (reopened when it was evicted)."""

    def __init__(self, path: str, pool: FilePool):
        with open(path, "rb"):
            pass  # fail now, like open() would, if the file cannot be read
        self.path = path
        self.pool = pool
        self.position = 0
        self.closed = False

    def read(self, size: int) -> bytes:
        if self.closed:
            raise ValueError("read of closed file")
        data = self.pool.read(self.path, self.position, size)
        self.position += len(data)
        return data

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.pool.forget(self.path)


def _options(raw: bytes, order: str) -> Iterator[tuple[int, bytes]]:
    """(code, value) of each option in a block's option area, until opt_endofopt."""
    head = Struct(order + "HH")
    pos = 0
    while pos + 4 <= len(raw):
        code, length = head.unpack_from(raw, pos)
        if code == _OPT_END:
            return
        yield code, raw[pos + 4 : pos + 4 + length]
        pos += 4 + ((length + 3) & ~3)


def _options_reordered(raw: bytes, source: str, target: str) -> bytes:
    """Interface options re-encoded from one byte order to another."""
    if source == target:
        return raw
    out = bytearray()
    for code, value in _options(raw, source):
        if code in _OPT_WIDE and len(value) == 8:
            kind = _OPT_WIDE[code]
            value = Struct(target + kind).pack(*Struct(source + kind).unpack(value))
        out += Struct(target + "HH").pack(code, len(value)) + value + _padding(len(value))
    if out:
        out += Struct(target + "HH").pack(_OPT_END, 0)
    return bytes(out)


def _padding(length: int) -> bytes:
    return b"\0" * (-length % 4)


def capture_open(
    path: str | os.PathLike[str], *, buffer_size: int = _CHUNK, pool: FilePool | None = None
) -> CaptureReader:
    """Open a pcap or pcapng capture for streaming; raises CaptureError if it is not one.

    `buffer_size` is how much is read at a time; with a `pool`, the reader holds no descriptor
    of its own but borrows one from the pool for each read (for merging thousands of files).
    """
    return CaptureReader(path, buffer_size=buffer_size, pool=pool)


class CaptureEncoder:
    """Turns packets into the bytes of one output stream in the format of a given input.

    Stateful for pcapng (an interface description is written before the first packet that
    needs it), so use one encoder per output file. `preamble()` is the file header.
    """

    def __init__(self, like: CaptureReader, *, interfaces: list[Interface] | None = None):
        self.like = like
        # the reader's own list grows as it meets interface descriptions, so keep a reference
        self.interfaces = like.interfaces if interfaces is None else interfaces
        self.format = like.format
        self.byte_order = like.byte_order
        if self.format == "pcap":
            self._header = Struct(self.byte_order + "IIII")
            self._caplen = Struct(self.byte_order + "I")
            self._frac_per_s = _NS_PER_S if like.nanosecond else 1_000_000
        else:
            self._epb = Struct(self.byte_order + "IIIIIII")
            self._block_end = Struct(self.byte_order + "I")
            self._interfaces_written = 0

    def preamble(self) -> bytes:
        """The file header: pcap's 24 bytes, or the section header of a pcapng file."""
        if self.format == "pcap":
            return self.like.file_header
        # the section length is unknown once blocks are dropped or moved: -1 says so
        shb = bytearray(self.like.file_header)
        shb[16:24] = Struct(self.byte_order + "q").pack(-1)
        return bytes(shb)

    def encode_into(self, out: bytearray, packet: Packet) -> None:
        """Append one packet's record (and any interface description it needs) to `out`."""
        if self.format == "pcap":
            header = packet.header
            if header is None or self._caplen.unpack_from(header, 8)[0] != len(packet.data):
                sec, ns = divmod(packet.ts_ns, _NS_PER_S)
                frac = ns if self._frac_per_s == _NS_PER_S else ns // 1000
                header = self._header.pack(sec, frac, len(packet.data), packet.orig_len)
            out += header
            out += packet.data
            return
        interface_id = packet.interface
        while self._interfaces_written <= interface_id:
            out += self._interface_block(self._interfaces_written)
            self._interfaces_written += 1
        interface = self.interfaces[interface_id]
        ticks = interface.ns_to_ticks(packet.ts_ns)
        caplen = len(packet.data)
        padding = -caplen % 4
        length = 32 + caplen + padding
        out += self._epb.pack(
            _BLOCK_EPB,
            length,
            interface_id,
            (ticks >> 32) & 0xFFFFFFFF,
            ticks & 0xFFFFFFFF,
            caplen,
            packet.orig_len,
        )
        out += packet.data
        if padding:
            out += b"\0" * padding
        out += self._block_end.pack(length)

    def encode(self, packet: Packet) -> bytes:
        out = bytearray()
        self.encode_into(out, packet)
        return bytes(out)

    def _interface_block(self, number: int) -> bytes:
        if number < len(self.interfaces):
            interface = self.interfaces[number]
        else:  # a packet on an interface the input never described: Ethernet, no snaplen
            interface = Interface(1, 0, byte_order=self.byte_order)
        options = _options_reordered(interface.options, interface.byte_order, self.byte_order)
        length = 20 + len(options)
        order = self.byte_order
        return (
            Struct(order + "IIHHI").pack(
                _BLOCK_IDB, length, interface.linktype, 0, interface.snaplen
            )
            + options
            + Struct(order + "I").pack(length)
        )


def capture_encoder(
    like: CaptureReader, *, interfaces: list[Interface] | None = None
) -> CaptureEncoder:
    """An encoder for one output stream in `like`'s format.

    `interfaces` replaces `like.interfaces` as the pcapng interface descriptions to write.
    """
    return CaptureEncoder(like, interfaces=interfaces)


class CaptureWriter:
    """Writes packets to a file in the format of the reader it was made `like`."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        like: CaptureReader,
        interfaces: list[Interface] | None = None,
    ):
        self.path = os.fspath(path)
        self.packets = 0
        self._encoder = CaptureEncoder(like, interfaces=interfaces)
        self._file = open(self.path, "wb")  # noqa: SIM115 - closed by close()
        self._buffer = bytearray(self._encoder.preamble())

    def write(self, packet: Packet) -> None:
        self._encoder.encode_into(self._buffer, packet)
        self.packets += 1
        if len(self._buffer) >= _CHUNK:
            self._file.write(self._buffer)
            self._buffer.clear()

    def close(self) -> None:
        if self._file.closed:
            return
        try:
            if self._buffer:
                self._file.write(self._buffer)
                self._buffer.clear()
        finally:
            self._file.close()

    @property
    def bytes(self) -> int:
        """Bytes written so far (the file's size once closed)."""
        return self._file.tell() + len(self._buffer) if not self._file.closed else _size(self.path)

    def __enter__(self) -> CaptureWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _size(path: str) -> int:
    return os.stat(path).st_size


def capture_writer(
    path: str | os.PathLike[str],
    *,
    like: CaptureReader,
    interfaces: list[Interface] | None = None,
) -> CaptureWriter:
    """A writer producing a capture in `like`'s format (pcap header or pcapng interfaces).

    For pcapng, packets name their interface by number in `like.interfaces` (or in
    `interfaces` when given), and each description is written before its first packet.
    """
    return CaptureWriter(path, like=like, interfaces=interfaces)
