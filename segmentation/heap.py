"""Keeping the memory the engine frees for its next chunk, instead of giving it back at once.

The split and the assemblage allocate and free buffers of about a megabyte per chunk read.
glibc's malloc serves blocks that large with mmap, or trims them off the top of the heap when
they are freed, so each chunk's buffers arrive as fresh pages: a page fault per 4 KiB, which
on a virtual machine that hands freed pages back to its host costs more than copying the
data. Measured on the 150 MB benchmark capture (bench/segment.py): 28,000 faults and 0.2 to
0.6 s of system time per run without this; 7,500 faults and under 0.15 s with it.

`keep_freed_memory()` raises malloc's mmap threshold and trim threshold once per process, so
freed buffers stay in the heap for reuse. The memory kept is bounded by the thresholds
(at most `_TRIM_THRESHOLD` of free heap is kept). Where the C library is not glibc, nothing
changes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 32 << 20  # glibc's own upper bound for its dynamic threshold
_TRIM_THRESHOLD = 128 << 20

_done = False
_lock = threading.Lock()


def keep_freed_memory() -> None:
    """Tune malloc once per process (see the module's docstring); safe to call often."""
    global _done
    if _done:
        return
    with _lock:
        if _done:
            return
        _done = True
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallopt = libc.mallopt
        except (OSError, AttributeError):  # pragma: no cover - not glibc
            return
        mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
        mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
        mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
