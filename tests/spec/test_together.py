"""Inputs wrong only together (spec/together.py): a node's `check_inputs` sees the values known before running,
in a repeat body too, and a failing check is an error, never a traceback."""

import pytest

from nodegraph import ValidationFailed
from nodegraph.core import Field, Node, Ports, Registry, node
from nodegraph.spec.values import bind_input_values


@node("Window", register=False)
class Window(Node):
    """A [low, high) window (test node)."""

    class Inputs(Ports):
        low: float = 0.0
        high: float = Field(1.0)

    class Outputs(Ports):
        width: float

    @classmethod
    def check_inputs(cls, known):
        if known.get("low", 0) >= known.get("high", 1):
            return ("low", "high"), f"`low` {known['low']} must be below `high` {known['high']}", "swap them"
        return None

    def run(self, i, ctx):
        return {"width": i.high - i.low}


@node("BrokenCheck", register=False)
class BrokenCheck(Node):
    """A plugin whose check raises (test node)."""

    class Outputs(Ports):
        value: int

    @classmethod
    def check_inputs(cls, known):
        raise KeyError("oops")

    def run(self, i, ctx):
        return {"value": 1}


def registry():
    reg = Registry(plugins=False)
    reg.add(Window)
    reg.add(BrokenCheck)
    return reg


def test_literals_wrong_together_are_reported_at_the_first_port(issues, one):
    error = one(issues("nodes:\n  w: {type: Window, low: 0.7, high: 0.2}\noutputs: {x: $w.width}\n",
                       registry=registry()), "out_of_range")
    assert (error.path, error.line) == ("nodes.w.low", 2)
    assert "`low` 0.7 must be below `high` 0.2" in error.message


def test_a_default_port_value_takes_part(issues, one):
    error = one(issues("nodes:\n  w: {type: Window, low: 1.5}\noutputs: {x: $w.width}\n", registry=registry()),
                "out_of_range")
    assert "`high` 1.0" in error.message


def test_graph_input_values_are_checked_when_a_run_binds_them_and_named(write):
    from nodegraph import load_graph

    graph = load_graph(write("g.yaml", """
        inputs:
          a: {type: float, default: 0.0}
          n: {type: int, default: 2}
        nodes:
          r:
            type: repeat
            over: [1, 2]
            state: {v: 0.0}
            nodes:
              w: {type: Window, low: $inputs.a, high: 0.5}
            next: {v: $w.width}
        outputs: {x: $r.v}
        """), registry=registry())
    assert bind_input_values(graph.checked, {"a": 0.25})["a"] == 0.25
    with pytest.raises(ValidationFailed) as caught:
        bind_input_values(graph.checked, {"a": 0.75})
    [error] = caught.value.errors
    assert error.path.endswith("w.low") and "(`low` is input `a`)" in error.message


def test_a_check_that_raises_is_an_error_not_a_traceback(issues, one):
    error = one(issues("nodes:\n  b: {type: BrokenCheck}\noutputs: {x: $b.value}\n", registry=registry()),
                "invalid_value")
    assert "checking its inputs together failed: KeyError" in error.message
