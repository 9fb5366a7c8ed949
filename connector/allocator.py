"""Memory settings of a process that moves megabyte buffers and short-lived objects all day:
glibc's mmap threshold, and the cyclic garbage collector's generations.

glibc serves blocks of at least the mmap threshold (128 KiB at start) with their own mappings,
returned to the system when freed; but after the first such block is freed it raises the
threshold to that block's size, so every later request body (~1 MB), joined fetch buffer or
answer comes from the heap instead, between small objects that live longer, and the heap can
only shrink from its top. The worker then holds ~12 MB more at its peak (bench/worker_bench.py:
149.7–151.9 MB against 137.3–140.2 MB with the threshold fixed), for about 0.45 ms of page
faults per 1 MB request body (~0.75 µs per record at ~600 records a request).
See docs/performance.md.
"""

from __future__ import annotations

import ctypes
import gc
import os
from collections.abc import Mapping
from typing import Final

#: mallopt's parameter number for the mmap threshold (glibc's malloc.h, M_MMAP_THRESHOLD).
_M_MMAP_THRESHOLD: Final = -3
#: glibc's own starting threshold, kept: blocks this size or larger get their own mapping.
MMAP_THRESHOLD_BYTES: Final = 128 * 1024
#: glibc's environment variable for the same setting; when set, the operator's value stands.
ENV_OVERRIDE: Final = "MALLOC_MMAP_THRESHOLD_"


def fix_mmap_threshold(environ: Mapping[str, str] = os.environ) -> bool:
    """Fix glibc's mmap threshold at MMAP_THRESHOLD_BYTES (no dynamic raise). Returns whether
    it was set: not when the environment sets it already, nor on a C library without mallopt
    (musl, macOS), where this is left to the allocator."""
    if ENV_OVERRIDE in environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1)


#: Net new objects the collector tracks between two passes over its youngest generation
#: (CPython's default: 700). The objects of the records in flight come and go by the thousand,
#: so at 700 a pass ran every few hundred records and found nothing to free (~0.7 µs a record,
#: bench/hotpath_bench.py); nothing the worker makes per record or per request is in a
#: reference cycle (connector.delivery.transport.release), so passes that come later free as
#: much.
YOUNG_GENERATION_THRESHOLD: Final = 10_000


def settle_collector() -> None:
    """Once everything the process keeps for good exists (modules, settings, compiled mappings,
    clients): keep it out of the collector's full passes, which would walk it all again and
    again while records stream through (2–3 µs a record), and let the youngest generation grow
    to YOUNG_GENERATION_THRESHOLD before a pass."""
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, older, oldest)
