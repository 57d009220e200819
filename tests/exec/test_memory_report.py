"""The memory report hook (exec/memory_report.py): each node's peak, nested nodes, the run's peak."""

from __future__ import annotations

import mmap

import pytest

from nodegraph import RunOptions
from nodegraph.exec import events as ev
from nodegraph.exec import memory_report
from nodegraph.exec.memory_report import MemoryHook

BIG = 256 << 20


def _drive(hook, hold_until_finished: bool):
    """small, then big (maps and touches 256 MB) inside outer, then the run ends; the report."""
    hook(ev.RunStarted("g", ("x",)))
    hook(ev.NodeStarted("small", "T@1"))
    hook(ev.NodeFinished("small", "T@1", 0.0))
    hook(ev.NodeStarted("outer", "repeat"))
    hook(ev.NodeStarted("big", "T@1"))
    # fresh pages from the OS (a tensor could reuse memory the heap already holds), every page written
    block = mmap.mmap(-1, BIG)
    for offset in range(0, BIG, mmap.PAGESIZE):
        block[offset] = 1
    if not hold_until_finished:
        block.close()
    hook(ev.NodeFinished("big", "T@1", 0.0))
    block.close()
    hook(ev.NodeFinished("outer", "repeat", 0.0))
    hook(ev.RunFinished("g", 0.0, {}))
    return hook.report


@pytest.mark.parametrize("os_reset", [True, False], ids=["vmhwm", "sampled"])
def test_the_node_that_allocates_gets_the_peak_and_its_repeat_covers_it(monkeypatch, os_reset):
    if not os_reset:
        monkeypatch.setattr(memory_report._Meter, "_try_reset", staticmethod(lambda: False))
    elif not memory_report._Meter._try_reset():
        pytest.skip("this kernel does not let a process reset its VmHWM (/proc/self/clear_refs)")
    report = _drive(MemoryHook("cpu"), hold_until_finished=not os_reset)
    big, small, outer = report.nodes["big"], report.nodes["small"], report.nodes["outer"]
    assert big.peak - big.start >= 0.9 * BIG
    assert small.peak < big.peak - 0.5 * BIG
    assert outer.peak >= big.peak and report.peak >= big.peak
    assert list(report.nodes) == ["small", "big", "outer"]
    text = "\n".join(report.lines())
    assert "peak RSS" in text and "big" in text and "run" in text


def test_a_graph_run_reports_every_node(graph):
    hook = MemoryHook()
    text = """
    nodes:
      ts: {type: Range, stop: 2}
      rep:
        type: repeat
        over: $ts.values
        state: {x: 1.0}
        nodes:
          m: {type: Multiply, a: $state.x, b: 3}
        next: {x: $m.value}
    outputs: {x: $rep.x}
    """
    assert graph(text).run(RunOptions(hooks=[hook])) == {"x": 9.0}
    assert set(hook.report.nodes) == {"ts", "rep", "m"}
    assert all(n.peak > 0 for n in hook.report.nodes.values()) and hook.report.peak > 0
