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
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8
MMAP_THRESHOLD_BYTES = 1 << 30  # allocations above this still get their own mapping (and are returned at once)
TRIM_THRESHOLD_BYTES = (1 << 31) - 1  # mallopt takes an int: the largest it can express

_applied = False


def _mallopt():
    """glibc's `mallopt` (None on other platforms and C libraries)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return None
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return mallopt


def one_heap_arena() -> bool:
    """Make every thread allocate from one glibc arena; True if applied.

    Why: under a memory budget the kept heap must be shared. glibc gives threads their own arenas, and memory that
    torch's worker threads freed in theirs is not reused by the others: the same digits 512² run under
    `--max-memory` peaked anywhere between 441 and 694 MB (10 runs), against 441-512 MB with one arena (11 runs:
    5 with MALLOC_ARENA_MAX=1, 6 through this function). Only the `nodegraph` command applies it.
    Call it before the worker threads first allocate (before anything is loaded)."""
    mallopt = _mallopt()
    return bool(mallopt and mallopt(M_ARENA_MAX, 1))


def reuse_freed_heap() -> bool:
    """Tune glibc's malloc so freed tensors' memory is reused; True if applied (Linux with glibc only)."""
    global _applied
    if _applied:
        return True
    mallopt = _mallopt()
    if mallopt is None:
        return False
    _applied = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
    return _applied
