"""Measured, not computed: the peak of the bytes torch's CPU allocator holds during a call, from torch's own
profiler (`profile_memory=True` records every allocation and free with its size), above what was held before."""

from __future__ import annotations

from typing import Any, Callable


def allocation_trace(fn: Callable[[], Any]) -> list[int]:
    """The signed sizes of every CPU allocation (+) and free (-) made while `fn` runs, in time order."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    return [e.nbytes() for e in sorted(events, key=lambda e: e.start_ns())]


def peak_allocated(fn: Callable[[], Any]) -> int:
    """The most bytes the call's allocations held at once (its outputs and temporaries, not its inputs)."""
    held = peak = 0
    for size in allocation_trace(fn):
        held += size
        peak = max(peak, held)
    return peak
