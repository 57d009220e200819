import gc
import subprocess
import sys
import weakref
from typing import Any

import pytest

from nodegraph import (NodeExecutionError, RunOptions, ValidationFailed, load_graph, run_graph)
from nodegraph.core import Node, Ports, Registry, node
from nodegraph.exec.events import NodeStarted


class Blob:
    """A value that can be watched with a weakref."""


MADE: list = []  # weak references to every Blob made


@node("MakeBlob", register=False)
class MakeBlob(Node):
    """Makes a Blob."""

    class Outputs(Ports):
        blob: Any

    def run(self, i, ctx):
        blob = Blob()
        MADE.append(weakref.ref(blob))
        return self.Outputs(blob=blob)


@node("Pass", register=False)
class Pass(Node):
    """Passes its input through."""

    class Inputs(Ports):
        x: Any
        after: Any = None

    class Outputs(Ports):
        x: Any

    def run(self, i, ctx):
        return {"x": i.x}


@node("Drop", register=False)
class Drop(Node):
    """Consumes a value and returns 1."""

    class Inputs(Ports):
        x: Any

    class Outputs(Ports):
        done: int

    def run(self, i, ctx):
        return {"done": 1}


@node("TypeName", register=False)
class TypeName(Node):
    """The Python type name of a float input."""

    class Inputs(Ports):
        x: float

    class Outputs(Ports):
        name: str

    def run(self, i, ctx):
        return {"name": type(i.x).__name__}


@node("NoOutput", register=False)
class NoOutput(Node):
    """Forgets to return its output."""

    class Outputs(Ports):
        x: int

    def run(self, i, ctx):
        return {}


REG = Registry(plugins=False)
for cls in (MakeBlob, Pass, Drop, TypeName, NoOutput):
    REG.add(cls)


def started(recorder):
    return [e.node_id for e in recorder.of(NodeStarted)]


def test_runs_only_what_the_requested_outputs_need(graph, recorder):
    g = graph("""
        nodes:
          a: {type: Int, value: 1}
          b: {type: Add, a: $a.value, b: 1}
          c: {type: Add, a: 10, b: 1}
        outputs: {b: $b.value, c: $c.value}
        """)
    assert g.run(RunOptions(hooks=[recorder])) == {"b": 2.0, "c": 11.0}
    recorder.clear()
    assert run_graph(g, outputs=["b"], hooks=[recorder]) == {"b": 2.0}
    assert started(recorder) == ["a", "b"]
    with pytest.raises(ValidationFailed) as caught:
        run_graph(g, outputs=["nope"])
    assert caught.value.codes == ["unknown_output"]


def test_values_pass_by_reference(graph):
    g = graph("""
        nodes:
          m: {type: MakeBlob}
          p: {type: Pass, x: $m.blob}
        outputs: {made: $m.blob, passed: $p.x}
        """, registry=REG)
    out = g.run()
    assert out["made"] is out["passed"] and isinstance(out["made"], Blob)


def test_an_intermediate_is_freed_once_its_last_consumer_has_run(graph):
    g = graph("""
        nodes:
          m: {type: MakeBlob}
          p: {type: Pass, x: $m.blob}
          drop: {type: Drop, x: $p.x}
          late: {type: Pass, x: 1, after: $drop.done}
        outputs: {x: $late.x}
        """, registry=REG)
    alive = {}
    MADE.clear()

    def hook(event):
        if isinstance(event, NodeStarted):
            gc.collect()
            alive[event.node_id] = bool(MADE) and MADE[-1]() is not None

    assert g.run(RunOptions(hooks=[hook])) == {"x": 1}
    assert alive == {"m": False, "p": True, "drop": True, "late": False}


def test_an_int_feeding_a_float_port_arrives_as_a_float(graph):
    g = graph("nodes:\n  i: {type: Int, value: 2}\n  t: {type: TypeName, x: $i.value}\noutputs: {n: $t.name}\n",
              registry=REG)
    assert g.run() == {"n": "float"}


def test_a_node_that_raises_is_reported_with_its_id_and_type(graph):
    g = graph("""
        nodes:
          zero: {type: Float, value: 0.0}
          div: {type: Divide, a: 1, b: $zero.value}
        outputs: {x: $div.value}
        """)
    with pytest.raises(NodeExecutionError) as caught:
        g.run()
    error = caught.value
    assert (error.node_id, error.node_type) == ("div", "Divide@1")
    assert isinstance(error.cause, ZeroDivisionError)
    assert str(error).startswith("node `div` (Divide@1) failed: ZeroDivisionError: float division by zero")
    assert "basic.py" in str(error)


def test_a_node_that_returns_too_little_is_reported(graph):
    g = graph("nodes:\n  n: {type: NoOutput}\noutputs: {x: $n.x}\n", registry=REG)
    with pytest.raises(NodeExecutionError, match="no value for output `x`"):
        g.run()


def test_run_graph_accepts_a_path_and_keyword_inputs(tmp_path):
    path = tmp_path / "g.yaml"
    path.write_text("inputs:\n  n: {type: int, default: 2}\nnodes:\n  r: {type: Range, stop: $inputs.n}\n"
                    "outputs: {x: $r.values}\n")
    assert run_graph(path, {"n": 3}) == {"x": [0, 1, 2]}
    assert load_graph(path).run(n=1) == {"x": [0]}


def test_the_plan_is_built_once_and_reused(graph, monkeypatch):
    import nodegraph.exec.plan as plan_module

    calls = []
    original = plan_module.build_plan
    monkeypatch.setattr(plan_module, "build_plan", lambda *a, **k: calls.append(1) or original(*a, **k))
    g = graph("nodes:\n  a: {type: Int, value: 1}\noutputs: {x: $a.value}\n")
    for _ in range(3):
        g.run()
    assert len(calls) == 1 and g.plan() is g.plan()


def test_no_pydantic_validation_runs_per_node_execution(graph):
    from pydantic import field_validator

    calls = []

    @node("Counted", register=False)
    class Counted(Node):
        """Counts validations of its input."""

        class Inputs(Ports):
            x: int

            @field_validator("x")
            @classmethod
            def count(cls, value):
                calls.append(value)
                return value

        class Outputs(Ports):
            x: int

        def run(self, i, ctx):
            return {"x": i.x}

    reg = Registry(plugins=False)
    reg.add(Counted)
    g = graph("nodes:\n  c: {type: Counted, x: 5}\noutputs: {x: $c.x}\n", registry=reg)
    for _ in range(3):
        assert g.run() == {"x": 5}
    assert calls == []


def test_device_and_dtype_are_chosen_and_overridable():
    import torch

    from nodegraph.core.context import DeviceError, RunContext, resolve_dtype

    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert RunContext().device.type == expected and RunContext().dtype == torch.float32
    assert RunContext(device="cpu", dtype="bf16").dtype == torch.bfloat16
    assert resolve_dtype("fp16") == torch.float16 and resolve_dtype(torch.float64) == torch.float64
    with pytest.raises(DeviceError, match="fp32, fp16 or bf16"):
        run_graph(_tiny(), dtype="fp8")
    with pytest.raises(DeviceError, match="not a torch device"):
        run_graph(_tiny(), device="toaster")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="not available"):
            run_graph(_tiny(), device="cuda")
    image = run_graph(_tiny(), device="cpu", dtype="fp16")["image"]
    assert image.dtype == torch.float16 and image.device.type == "cpu"


def _tiny():
    from nodegraph import loads_graph

    return loads_graph("nodes:\n  i: {type: SolidImage, width: 2, height: 2}\noutputs: {image: $i.image}\n")


def test_running_plain_python_nodes_never_imports_torch():
    script = ("import sys\nfrom nodegraph import loads_graph\n"
              "g = loads_graph('nodes:\\n  a: {type: Add, a: 1, b: 2}\\noutputs: {x: $a.value}\\n')\n"
              "assert g.run() == {'x': 3.0}\nprint('torch' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "False", result.stderr
