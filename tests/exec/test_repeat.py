import pytest

from nodegraph import CancelToken, NodeExecutionError, RunCancelledError, RunOptions
from nodegraph.exec.events import NodeStarted, RepeatIteration

EULER = """
inputs:
  steps: {type: int, default: 10, min: 0}
  h: {type: float, default: 0.1}
  x0: {type: float, default: 1.0}
nodes:
  ts: {type: Range, stop: $inputs.steps}
  euler:
    type: repeat
    over: $ts.values
    state: {x: $inputs.x0}
    nodes:
      hx: {type: Multiply, a: $state.x, b: $inputs.h}
      step: {type: Subtract, a: $state.x, b: $hx.value}
    next: {x: $step.value}
    collect: {xs: $step.value, index: $loop.index, item: $loop.item}
outputs: {x: $euler.x, xs: $euler.xs, index: $euler.index, item: $euler.item}
"""


@pytest.mark.parametrize("n, h", [(1, 0.1), (5, 0.1), (50, 0.02), (200, 0.5)])
def test_explicit_euler_matches_the_closed_form(graph, n, h):
    out = graph(EULER).run(steps=n, h=h, x0=3.0)
    assert out["x"] == pytest.approx((1 - h) ** n * 3.0, rel=1e-12)
    assert out["xs"] == pytest.approx([(1 - h) ** k * 3.0 for k in range(1, n + 1)], rel=1e-12)
    assert out["index"] == list(range(n)) and out["item"] == list(range(n))


def test_a_repeat_over_an_empty_sequence_returns_the_initial_state(graph, recorder):
    out = graph(EULER).run(RunOptions(hooks=[recorder]), steps=0, x0=3.0)
    assert out == {"x": 3.0, "xs": [], "index": [], "item": []}
    assert [e.node_id for e in recorder.of(NodeStarted)] == ["ts", "euler"]


def test_several_carried_values_update_together(graph):
    out = graph("""
        nodes:
          ts: {type: Range, stop: 10}
          fib:
            type: repeat
            over: $ts.values
            state: {a: 0.0, b: 1.0}
            nodes:
              s: {type: Add, a: $state.a, b: $state.b}
            next: {a: $state.b, b: $s.value}
        outputs: {a: $fib.a, b: $fib.b}
        """).run()
    assert out == {"a": 55.0, "b": 89.0}


NESTED = """
inputs:
  k: {type: float, default: 2.0}
nodes:
  outer_ts: {type: Range, stop: 3}
  outer:
    type: repeat
    over: $outer_ts.values
    state: {total: 0.0}
    nodes:
      inner_ts: {type: Range, stop: 4}
      inner:
        type: repeat
        over: $inner_ts.values
        state: {acc: $state.total}
        nodes:
          add: {type: Add, a: $state.acc, b: $inputs.k}
        next: {acc: $add.value}
        collect: {seen: $loop.item}
    next: {total: $inner.acc}
    collect: {inner_seen: $inner.seen, outer_index: $loop.index}
outputs: {total: $outer.total, seen: $outer.inner_seen, index: $outer.outer_index}
"""


def test_nested_repeats(graph):
    out = graph(NESTED).run(k=0.5)
    assert out == {"total": 6.0, "seen": [[0, 1, 2, 3]] * 3, "index": [0, 1, 2]}


def test_the_body_is_planned_once_not_per_iteration_or_run(graph, monkeypatch):
    import nodegraph.exec.plan as plan_module

    scopes = []
    original = plan_module._plan_scope
    monkeypatch.setattr(plan_module, "_plan_scope", lambda *a: scopes.append(1) or original(*a))
    g = graph(NESTED)
    for _ in range(3):
        assert g.run()["total"] == 24.0
    assert len(scopes) == 3  # the top level, the outer body and the inner body, once


def test_a_repeat_over_a_1d_tensor_yields_its_elements(graph):
    import torch

    g = graph("""
        inputs:
          ts: {type: Timesteps}
        nodes:
          r:
            type: repeat
            over: $inputs.ts
            collect: {items: $loop.item}
        outputs: {items: $r.items}
        """)
    items = g.run(ts=torch.tensor([5, 3, 1]))["items"]
    assert [int(t) for t in items] == [5, 3, 1] and items[0].dim() == 0
    with pytest.raises(NodeExecutionError, match="must be 1-D"):
        g.run(ts=torch.zeros(2, 2))


def test_an_error_in_a_body_names_the_node_and_the_iteration(graph):
    g = graph("""
        nodes:
          ts: {type: Range, stop: 5}
          rep:
            type: repeat
            over: $ts.values
            state: {x: 0.0}
            nodes:
              gap: {type: Subtract, a: 3, b: $loop.index}
              div: {type: Divide, a: 1, b: $gap.value}
            next: {x: $div.value}
        outputs: {x: $rep.x}
        """)
    with pytest.raises(NodeExecutionError) as caught:
        g.run()
    assert caught.value.node_id == "div" and caught.value.iterations == [("rep", 3)]
    assert "failed in iteration 3 of repeat `rep`: ZeroDivisionError" in str(caught.value)


def test_cancellation_stops_at_the_next_iteration_boundary(graph, recorder):
    token = CancelToken()

    def cancel_after_third(event):
        recorder(event)
        if isinstance(event, RepeatIteration) and event.index == 2:
            token.cancel()

    with pytest.raises(RunCancelledError) as caught:
        graph(EULER).run(RunOptions(hooks=[cancel_after_third], cancel=token), steps=100)
    assert caught.value.node_id == "euler"
    assert len(recorder.of(RepeatIteration)) == 3


def test_an_included_graph_inside_a_body(tmp_path):
    from nodegraph import load_graph

    (tmp_path / "step.yaml").write_text("inputs:\n  x: {type: float}\nnodes:\n  half: {type: Multiply, a: $inputs.x, "
                                        "b: 0.5}\noutputs: {x: $half.value}\n")
    (tmp_path / "main.yaml").write_text("nodes:\n  ts: {type: Range, stop: 3}\n  rep:\n    type: repeat\n"
                                        "    over: $ts.values\n    state: {x: 8.0}\n    nodes:\n"
                                        "      s: {type: ./step.yaml, x: $state.x}\n    next: {x: $s.x}\n"
                                        "outputs: {x: $rep.x}\n")
    assert load_graph(tmp_path / "main.yaml").run() == {"x": 1.0}
