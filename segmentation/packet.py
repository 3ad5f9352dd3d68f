"""The packet as every part of the segmentation engine sees it."""

from dataclasses import dataclass


@dataclass(slots=True)
class Packet:
    """One captured packet.

    `index` is its 0-based position in the source capture: segments and processing services
    keep it, so assemblage restores the original order. `header` keeps a pcap record's original
    16 bytes (timestamp, captured and original length, in the file's byte order) so an
    unchanged packet is written back byte for byte; a service that changes `data` sets it to
    None and the writer builds a new header.
    """

    index: int
    data: bytes
    ts_ns: int
    orig_len: int
    linktype: int
    interface: int = 0
    header: bytes | None = None


class CaptureError(Exception):
    """A capture that cannot be read: says which record and at which byte offset."""

    def __init__(self, message: str, *, record: int | None = None, offset: int | None = None):
        where = []
        if record is not None:
            where.append(f"record {record}")
        if offset is not None:
            where.append(f"byte offset {offset}")
        super().__init__(f"{message} ({', '.join(where)})" if where else message)
        self.reason = message
        self.record = record
        self.offset = offset
