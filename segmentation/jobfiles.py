"""The files of a job: where they live, and the file-level steps the job services run.

A job's folder (JOB_STORAGE_DIR/<job id>/) holds `input.<ext>`, the split in `split/` (its
segments and segment index), each work item's result in `results/` (a capture plus the
original indices of the packets it kept, `<number>.idx`), then `output.<ext>` and
`manifest.json`. Every file is written under a temporary name and renamed into place, so a
worker killed at any moment leaves either the whole file or none of it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import uuid
from array import array
from collections.abc import Iterable, Iterator
from itertools import chain
from pathlib import Path

from django.conf import settings

from segmentation.capture import capture_open, capture_writer
from segmentation.processing import pipeline_build

_CHUNK = 1 << 20
_INDICES_PER_WRITE = 1 << 16
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
CAPTURE_CONTENT_TYPES = {"pcap": "application/vnd.tcpdump.pcap", "pcapng": "application/x-pcapng"}


def job_dir(job_id: int) -> Path:
    return Path(settings.JOB_STORAGE_DIR) / str(job_id)


def job_dir_remove(job_id: int) -> None:
    shutil.rmtree(job_dir(job_id), ignore_errors=True)


def temporary_beside(path: Path) -> Path:
    """A unique name in `path`'s folder to write before renaming to `path`."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")


def file_sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def chunks_store(chunks: Iterable[bytes], path: Path, *, limit: int) -> tuple[int, str]:
    """Write `chunks` to `path` (through a temporary file); return (size, SHA-256).

    Raises ValueError, leaving nothing behind, once more than `limit` bytes arrive.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_beside(path)
    digest = hashlib.sha256()
    size = 0
    try:
        with open(temporary, "wb") as file:
            for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise ValueError(f"the file is larger than the limit of {limit} bytes")
                digest.update(chunk)
                file.write(chunk)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return size, digest.hexdigest()


def indices_write(path: Path, indices: Iterable[int]) -> int:
    """Store original packet indices (little-endian uint64) at `path`; return how many."""
    temporary = temporary_beside(path)
    count = 0
    buffer = array("Q")
    try:
        with open(temporary, "wb") as file:
            for index in indices:
                buffer.append(index)
                if len(buffer) >= _INDICES_PER_WRITE:
                    count += _indices_flush(file, buffer)
            count += _indices_flush(file, buffer)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return count


def _indices_flush(file, buffer: array) -> int:
    if sys.byteorder == "big":  # pragma: no cover - the files are little-endian
        buffer.byteswap()
    file.write(buffer.tobytes())
    count = len(buffer)
    del buffer[:]
    return count


def indices_read(path: Path) -> Iterator[int]:
    """The indices stored at `path`, read chunk by chunk (iterated in C)."""
    return chain.from_iterable(_index_arrays(path))


def _index_arrays(path: Path) -> Iterator[array]:
    with open(path, "rb") as file:
        while chunk := file.read(8 * _INDICES_PER_WRITE):
            values = array("Q", chunk)
            if sys.byteorder == "big":  # pragma: no cover
                values.byteswap()
            yield values


def record_sizes_write(segment: Path, sizes: Iterable[int] | None) -> None:
    """Keep the sizes of a segment's records, as the split recorded them (pcap input), beside
    it: while the segment is its own result (no processing), assemblage copies it without
    reading its record headers one by one. Same format as the indices."""
    if sizes is not None:
        indices_write(segment.with_suffix(".sizes"), sizes)


def record_sizes_read(result: Path) -> Iterator[int] | None:
    """The sizes of a result's records when they are known (it is an unchanged segment)."""
    path = result.with_suffix(".sizes")
    return indices_read(path) if path.exists() else None


def indices_kept(original: Iterable[int], kept_positions: Iterable[int]) -> Iterator[int]:
    """The original indices of the kept packets: `kept_positions` are increasing positions in
    a segment whose packets have the `original` indices, in order."""
    originals = iter(original)
    position = -1
    current = None
    for wanted in kept_positions:
        while position < wanted:
            current = next(originals)
            position += 1
        yield current


def segment_process(
    segment_path: Path, result_path: Path, steps: list[dict], *, key: bytes
) -> tuple[int, array]:
    """Run a pipeline over one segment file into `result_path` (same format).

    Returns (packets written, positions in the segment of the packets kept).
    """
    run = pipeline_build(steps, recipient_key=key)
    temporary = temporary_beside(result_path)
    kept = array("Q")
    try:
        with (
            capture_open(segment_path) as reader,
            capture_writer(temporary, like=reader) as writer,
        ):
            for packet in run(reader):
                writer.write(packet)
                kept.append(packet.index)
        os.replace(temporary, result_path)
    finally:
        temporary.unlink(missing_ok=True)
    return len(kept), kept


def is_zstd(path: Path) -> bool:
    """Whether the file starts with a zstd frame."""
    with open(path, "rb") as file:
        return file.read(4) == ZSTD_MAGIC
