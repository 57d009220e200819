import io
import threading

import pytest

import nodegraph.exec.steps as steps_module
from nodegraph import CancelToken, NodeExecutionError, ProgressHook, RunCancelledError, RunOptions
from nodegraph.core.context import ComponentCache, RunContext
from nodegraph.exec import events as ev

LOOP = """
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


def test_events_in_order(graph, recorder):
    assert graph(LOOP).run(RunOptions(hooks=[recorder])) == {"x": 9.0}
    kinds = [(type(e).__name__, getattr(e, "node_id", None)) for e in recorder]
    assert kinds == [
        ("RunStarted", None), ("NodeStarted", "ts"), ("NodeFinished", "ts"), ("NodeStarted", "rep"),
        ("RepeatStarted", "rep"), ("NodeStarted", "m"), ("NodeFinished", "m"), ("RepeatIteration", "rep"),
        ("NodeStarted", "m"), ("NodeFinished", "m"), ("RepeatIteration", "rep"), ("RepeatFinished", "rep"),
        ("NodeFinished", "rep"), ("RunFinished", None)]
    assert recorder.of(ev.RepeatStarted)[0].total == 2
    assert [e.index for e in recorder.of(ev.RepeatIteration)] == [0, 1]
    assert recorder.of(ev.NodeFinished)[0].node_type == "Range@1"
    assert recorder.of(ev.RunFinished)[0].outputs == {"x": 9.0}


def test_failure_and_cancellation_events(graph, recorder):
    with pytest.raises(NodeExecutionError):
        graph("nodes:\n  d: {type: Divide, a: 1, b: 0}\noutputs: {x: $d.value}\n").run(RunOptions(hooks=[recorder]))
    assert isinstance(recorder.of(ev.RunFailed)[0].error, NodeExecutionError)
    recorder.clear()
    token = CancelToken()
    token.cancel()
    with pytest.raises(RunCancelledError):
        graph(LOOP).run(RunOptions(hooks=[recorder], cancel=token))
    assert [type(e) for e in recorder] == [ev.RunStarted, ev.RunCancelled]


def test_events_are_not_built_when_nobody_listens(graph, monkeypatch):
    def forbidden(*args):
        raise AssertionError("an event was built with no hook listening")

    monkeypatch.setattr(steps_module, "NodeStarted", forbidden)
    monkeypatch.setattr(steps_module, "NodeFinished", forbidden)
    assert graph(LOOP).run() == {"x": 9.0}


def test_cancellation_is_scoped_to_one_run(graph):
    g = graph(LOOP)
    cancelled = CancelToken()
    cancelled.cancel()
    with pytest.raises(RunCancelledError):
        g.run(RunOptions(cancel=cancelled))
    assert g.run() == {"x": 9.0}
    assert g.run(RunOptions(cancel=CancelToken())) == {"x": 9.0}


def test_a_node_can_check_for_cancellation_itself(graph):
    token = CancelToken()
    timer = threading.Timer(0.2, token.cancel)
    timer.start()
    with pytest.raises(RunCancelledError) as caught:
        graph("nodes:\n  s: {type: Sleep, seconds: 30}\noutputs: {x: $s.value}\n").run(RunOptions(cancel=token))
    assert caught.value.node_id == "s"


def test_progress_hook_draws_a_bar_per_repeat(graph):
    out = io.StringIO()
    graph(LOOP).run(RunOptions(hooks=[ProgressHook(file=out, disable=False)]))
    assert "rep" in out.getvalue() and "2/2" in out.getvalue()


def test_nodes_may_emit_their_own_events():
    seen = []
    RunContext(hooks=(seen.append,)).emit("preview")
    assert seen == ["preview"]


def test_component_cache_loads_each_key_once_even_from_threads():
    cache, loads = ComponentCache(), []

    def load():
        loads.append(1)
        return object()

    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get_or_load(("unet", "cpu"), load)))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(loads) == 1 and len({id(r) for r in results}) == 1 and ("unet", "cpu") in cache
    cache.clear()
    assert len(cache) == 0


def test_nodes_inside_an_included_graph_report_qualified_ids(tmp_path, recorder):
    from nodegraph import load_graph
    from nodegraph.exec.events import NodeStarted

    (tmp_path / "half.yaml").write_text("inputs:\n  x: {type: float}\nnodes:\n  m: {type: Multiply, a: $inputs.x, "
                                        "b: 0.5}\noutputs: {x: $m.value}\n")
    (tmp_path / "main.yaml").write_text("nodes:\n  h: {type: ./half.yaml, x: 3}\noutputs: {x: $h.x}\n")
    assert load_graph(tmp_path / "main.yaml").run(RunOptions(hooks=[recorder])) == {"x": 1.5}
    assert [(e.node_id, e.node_type) for e in recorder.of(NodeStarted)] == [("h", "./half.yaml"),
                                                                           ("h/m", "Multiply@1")]
