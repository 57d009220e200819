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


MARK = 3_000_017  # odd byte counts no tensor of 2- or 4-byte values has: where each node starts and ends


class NodeMarks:
    """A run hook that marks the allocation trace where each node (nested ones too) starts and finishes, with a
    one-off allocation of a size of its own; `peaks(trace)` then gives each node's allocation peak above its
    start, from the same trace."""

    def __init__(self):
        self.marks: list[tuple[str, str]] = []  # ("start" | "end", node id), in the order of their sizes

    def __call__(self, event) -> None:
        import torch

        from nodegraph.exec.events import NodeFinished, NodeStarted

        if isinstance(event, (NodeStarted, NodeFinished)):
            self.marks.append(("start" if isinstance(event, NodeStarted) else "end", event.node_id))
            torch.empty(MARK + 2 * len(self.marks), dtype=torch.uint8)  # allocated and freed at once

    def peaks(self, trace: list[int]) -> dict[str, int]:
        """{node id: the most bytes its run held at once above what was held when it started} (the largest over
        a node's runs, a repeat body's nodes run once an iteration)."""
        held, starts, out = 0, {}, {}
        for size in trace:
            index = (abs(size) - MARK) // 2 - 1
            if abs(size) >= MARK and (abs(size) - MARK) % 2 == 0 and 0 <= index < len(self.marks):
                if size > 0:  # the mark's allocation (its free follows)
                    kind, node = self.marks[index]
                    if kind == "start":
                        starts[node] = (held, held)
                    elif node in starts:
                        base, top = starts.pop(node)
                        out[node] = max(out.get(node, 0), top - base)
                continue
            held += size
            for node, (base, top) in starts.items():
                if held > top:
                    starts[node] = (base, held)
        return out
