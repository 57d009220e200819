"""The server's memory hook counts the graph's own nodes only (MemoryHook(top_level_only=True)): a repeat's body
is inside its repeat's figure, and the hook reads /proc per top-level node, not per body node and iteration."""

from nodegraph import RunOptions, loads_graph
from nodegraph.exec.memory_report import MemoryHook

GRAPH = """
nodes:
  ts: {type: Range, stop: 40}
  rep:
    type: repeat
    over: $ts.values
    state: {x: 1.0}
    nodes:
      m: {type: Multiply, a: $state.x, b: 1}
      n: {type: Add, a: $m.value, b: 0}
    next: {x: $n.value}
outputs: {x: $rep.x}
"""


def test_top_level_only_reports_the_graphs_nodes_and_reads_the_meter_per_node_not_per_iteration(monkeypatch):
    folds = []
    real = MemoryHook._fold
    monkeypatch.setattr(MemoryHook, "_fold", lambda self: (folds.append(1), real(self))[1])
    graph = loads_graph(GRAPH)

    every = MemoryHook()
    assert graph.run(RunOptions(hooks=[every])) == {"x": 1.0}
    assert set(every.report.nodes) == {"ts", "rep", "m", "n"}
    per_body_node = len(folds)

    folds.clear()
    top = MemoryHook(top_level_only=True)
    assert graph.run(RunOptions(hooks=[top])) == {"x": 1.0}
    assert set(top.report.nodes) == {"ts", "rep"} and all(n.peak > 0 for n in top.report.nodes.values())
    assert top.report.peak >= top.report.nodes["rep"].peak > 0
    assert len(folds) <= 5 < per_body_node  # two per top-level node and one at the end, whatever the iterations
