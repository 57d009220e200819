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
