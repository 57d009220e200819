"""What the process uses now and what is free: resident memory on the CPU (from /proc, else psutil), allocated
memory on a CUDA device. Peak figures come from the OS (`VmHWM`) or torch's CUDA allocator."""

from __future__ import annotations

from typing import Any


def _proc_status(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024  # kB
    except OSError:
        return None
    return None


def rss_bytes() -> int:
    """Resident set size of this process now."""
    value = _proc_status("VmRSS")
    if value is None:
        import psutil

        value = psutil.Process().memory_info().rss
    return value


def peak_rss_bytes() -> int:
    """The process's peak resident set size so far (the OS's high-water mark)."""
    value = _proc_status("VmHWM")
    if value is None:
        import resource
        import sys

        value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    return value


def available_bytes() -> int:
    """Memory the OS can still give (MemAvailable)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import psutil

    return psutil.virtual_memory().available


def in_use(device: Any) -> int:
    """Bytes this run holds on `device` now: allocated CUDA memory, else the process's RSS."""
    if getattr(device, "type", "cpu") == "cuda":
        import torch

        return torch.cuda.memory_allocated(device)
    return rss_bytes()


def headroom(device: Any, budget: int | None) -> int:
    """Bytes a step may still add: the budget minus what is in use, or (no budget) what the device has free."""
    if budget is not None:
        return budget - in_use(device)
    if getattr(device, "type", "cpu") == "cuda":
        import torch

        return torch.cuda.mem_get_info(device)[0]
    return available_bytes()


_LIBC: list = []  # [malloc_trim] once looked up ([None] where there is none)


def release_free_heap() -> None:
    """Give the C heap's free memory back to the OS (glibc's `malloc_trim`; elsewhere nothing). The `nodegraph`
    command keeps freed memory for reuse (exec/heap.py), which saves page faults within a phase but would carry
    one phase's freed activations (a text encoder's: ~120 MB for Z-Image's) into the next phase's peak; the
    loaders call this before a model loads. Values do not change; it takes milliseconds."""
    if not _LIBC:
        import ctypes
        import ctypes.util
        import sys

        trim = None
        if sys.platform.startswith("linux"):
            try:
                trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
                trim.argtypes, trim.restype = (ctypes.c_size_t,), ctypes.c_int
            except (OSError, AttributeError):  # not glibc
                trim = None
        _LIBC.append(trim)
    if _LIBC[0] is not None:
        _LIBC[0](0)
