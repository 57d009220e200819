"""Let a CPU run reuse freed heap memory instead of asking the kernel for fresh pages on every step.

Why: glibc serves each allocation above its mmap threshold (128 KiB, raised on the fly to at most 32 MiB)
with a fresh `mmap` and gives it back with `munmap` on free, and trims freed memory at the top of the heap.
On CPU, oneDNN reorders every convolution weight into a new buffer on every call, and VAE activations at
256 px pass 32 MiB, so each SD1.5-size UNet step touched about 465,000 brand-new zeroed pages (1.8 GB)
and spent a fifth of its time in page faults. With a 1 GiB mmap threshold and no trimming below 2 GiB,
those buffers come back from the heap: 0 new pages per step after the first (benchmarks/bench_time_to_image.py).
The numbers computed do not change; only where the bytes live.

The setting is process-wide and cannot be undone for memory already kept, so the library never applies it
on import: the `nodegraph` command does (unless `--no-heap-reuse`), and embedders may call `reuse_freed_heap()`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# mallopt parameters from glibc's <malloc.h>
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_BYTES = 1 << 30  # allocations above this still get their own mapping (and are returned at once)
TRIM_THRESHOLD_BYTES = (1 << 31) - 1  # mallopt takes an int: the largest it can express

_applied = False


def reuse_freed_heap() -> bool:
    """Tune glibc's malloc so freed tensors' memory is reused; True if applied (Linux with glibc only)."""
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    _applied = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
    return _applied
