"""A hook that records each node's peak memory and the run's peak (`nodegraph run -v` prints it).

CPU: the process's resident set size. Its high-water mark (VmHWM) is reset when a node starts, by writing "5"
to /proc/self/clear_refs (Linux), and read when it finishes, so each figure is the OS's own peak over that
node; where the reset is not allowed, a thread samples the RSS every few milliseconds instead (a peak between
two samples can be missed). CUDA: torch's peak allocated bytes, reset the same way.
A node inside a repeat runs once per iteration: its figure is the largest. Nested nodes (a repeat and its body,
an included graph and its nodes) each get their own peak; the outer one covers the inner ones.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from nodegraph.exec.events import (NodeFinished, NodeStarted, RepeatFinished, RepeatStarted, RunCancelled, RunFailed,
                                   RunFinished, RunStarted)
from nodegraph.memory.sizes import format_size
from nodegraph.memory.usage import peak_rss_bytes, rss_bytes


@dataclass
class NodeMemory:
    node_id: str
    node_type: str
    peak: int = 0  # bytes: RSS (CPU) or allocated (CUDA), the largest over the node's runs
    start: int = 0  # what the process held when the node (last) started


@dataclass
class MemoryReport:
    """The figures a `MemoryHook` gathered: `nodes` in the order they first finished, `peak` the run's."""

    device: str
    nodes: dict[str, NodeMemory] = field(default_factory=dict)
    peak: int = 0
    estimate: int | None = None  # the plan's estimate, when the caller had one (nodegraph/memory/estimate.py)

    def as_json(self) -> dict[str, Any]:
        """The figures in bytes, for a run record (the server's `memory`): the run's peak, each node's peak and
        what it added over its start, and the plan's estimate when there was one."""
        nodes = {n.node_id: {"type": n.node_type, "peak": n.peak, "added": max(n.peak - n.start, 0)}
                 for n in self.nodes.values()}
        return {"device": self.device, "peak": self.peak, "nodes": nodes,
                **({"estimate": self.estimate} if self.estimate else {})}

    def lines(self) -> list[str]:
        what = "peak allocated" if self.device == "cuda" else "peak RSS"
        width = max([len(n) for n in self.nodes] + [4])
        out = [f"memory ({what}):"]
        for n in self.nodes.values():
            out.append(f"  {n.node_id:<{width}}  {format_size(n.peak):>10}  (+{format_size(max(n.peak - n.start, 0))}"
                       f" over its start)")
        out.append(f"  {'run':<{width}}  {format_size(self.peak):>10}"
                   + (f"  (estimate {format_size(self.estimate)})" if self.estimate else ""))
        return out


class _Meter:
    """Reset and read a high-water mark: the OS's VmHWM, torch's CUDA peak, or a sampling thread."""

    def __init__(self, device: Any):
        self.cuda = getattr(device, "type", str(device or "cpu")) == "cuda"
        self.device = device
        self._sampled = 0
        self._stop: threading.Event | None = None
        self.os_reset = not self.cuda and self._try_reset()
        if not self.cuda and not self.os_reset:
            self._stop = threading.Event()
            threading.Thread(target=self._sample, daemon=True).start()

    @staticmethod
    def _try_reset() -> bool:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            return True
        except OSError:
            return False

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self._sampled = max(self._sampled, rss_bytes())

    def now(self) -> int:
        if self.cuda:
            import torch

            return torch.cuda.memory_allocated(self.device)
        return rss_bytes()

    def reset(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats(self.device)
        elif self.os_reset:
            self._try_reset()
        else:
            self._sampled = rss_bytes()

    def peak(self) -> int:
        if self.cuda:
            import torch

            return torch.cuda.max_memory_allocated(self.device)
        return peak_rss_bytes() if self.os_reset else max(self._sampled, rss_bytes())

    def close(self) -> None:
        if self._stop is not None:
            self._stop.set()


class MemoryHook:
    """Executor hook: `hook.report` is the `MemoryReport` of the last run (filled as nodes finish)."""

    def __init__(self, device: Any = None, estimate: int | None = None, *, top_level_only: bool = False):
        self._device = device
        self.estimate = estimate  # the plan's estimate, shown beside the measured peak
        # only the graph's own nodes (a repeat's body and an included graph count in the node holding them): two
        # /proc reads per node event cost a 25-step digits run ~23 ms, 14 % of it, when every body node counts
        self.top_level_only = top_level_only
        self._depth = 0
        self._meter: _Meter | None = None
        self._open: list[NodeMemory] = []
        self.report = MemoryReport("cpu")

    def __call__(self, event: Any) -> None:
        if isinstance(event, RunStarted):
            self._meter = _Meter(self._device)
            self.report = MemoryReport("cuda" if self._meter.cuda else "cpu", peak=self._meter.now(),
                                       estimate=self.estimate)
            self._open, self._depth = [], 0
        elif self._meter is None:
            return
        elif self.top_level_only and self._inside(event):
            return
        elif isinstance(event, NodeStarted):
            self._fold()
            entry = self.report.nodes.get(event.node_id) or NodeMemory(event.node_id, event.node_type)
            entry.start = self._meter.now()
            self._open.append(entry)
            self._meter.reset()
        elif isinstance(event, NodeFinished):
            self._fold()
            for i in range(len(self._open) - 1, -1, -1):
                if self._open[i].node_id == event.node_id:
                    entry = self._open.pop(i)
                    self.report.nodes.setdefault(entry.node_id, entry)
                    break
        elif isinstance(event, (RunFinished, RunFailed, RunCancelled)):
            self._fold()
            self._meter.close()
            self._meter = None

    def _inside(self, event: Any) -> bool:
        """Whether a node event comes from inside a repeat body or an included graph (counting the repeats)."""
        if isinstance(event, (RepeatStarted, RepeatFinished)):
            self._depth += 1 if isinstance(event, RepeatStarted) else -1
            return True
        return isinstance(event, (NodeStarted, NodeFinished)) and (self._depth > 0 or "/" in event.node_id)

    def _fold(self) -> None:
        """Give the peak since the last reset to every open node and to the run, then reset."""
        peak = self._meter.peak()
        for entry in self._open:
            entry.peak = max(entry.peak, peak)
        self.report.peak = max(self.report.peak, peak)
        self._meter.reset()
