"""A graph file used as a node type: `type: ./step.yaml`."""

import pytest

from nodegraph import load_graph
from nodegraph.spec.errors import ValidationFailed

STEP = """
inputs:
  x: {type: float}
  h: {type: float, default: 0.5, min: 0}
nodes:
  hx: {type: Multiply, a: $inputs.x, b: $inputs.h}
  next: {type: Subtract, a: $inputs.x, b: $hx.value}
outputs: {x: $next.value, count: $n.length}
"""


def test_an_included_graph_runs_as_a_node_with_its_inputs_and_outputs_as_ports(write):
    write("parts/step.yaml", STEP.replace(", count: $n.length", ""))
    main = write("main.yaml", """
        nodes:
          start: {type: Float, value: 8.0}
          one: {type: ./parts/step.yaml, x: $start.value}
          two: {type: ./parts/step.yaml, x: $one.x, h: 0.25}
        outputs: {x: $two.x}
        """)
    graph = load_graph(main)
    assert graph.output_types["x"].name == "float"
    assert graph.run() == {"x": 3.0}


def test_port_types_come_from_the_declared_inputs_and_the_output_nodes(issues, write):
    write("step.yaml", STEP.replace(", count: $n.length", ""))
    found = issues("""
        nodes:
          s: {type: String, value: hi}
          one: {type: ./step.yaml, x: $s.value}
          r: {type: Range, stop: $one.x}
        outputs: {x: $r.values}
        """, name="main.yaml")
    assert [(e.code, e.path) for e in found] == [("type_mismatch", "nodes.one.x"), ("type_mismatch", "nodes.r.stop")]
    assert "takes float" in found[0].message and "`$one.x` is float" in found[1].message


def test_literals_for_an_included_graph_are_checked_against_its_declaration(issues, write, one):
    write("step.yaml", STEP.replace(", count: $n.length", ""))
    error = one(issues("nodes:\n  one: {type: ./step.yaml, x: 1.0, h: -1.0}\noutputs: {x: $one.x}\n",
                       name="main.yaml"), "out_of_range")
    assert error.path == "nodes.one.h" and error.file.endswith("main.yaml")
    assert one(issues("nodes:\n  one: {type: ./step.yaml}\noutputs: {x: $one.x}\n", name="main.yaml"),
               "missing_input").message.count("`x`") == 1


def test_errors_inside_an_included_file_point_at_that_file(write):
    write("step.yaml", STEP)  # `$n.length`: no node n
    main = write("main.yaml", "nodes:\n  one: {type: ./step.yaml, x: 1.0}\noutputs: {x: $one.x}\n")
    with pytest.raises(ValidationFailed) as caught:
        load_graph(main)
    (error,) = caught.value.errors
    assert error.code == "dangling_output" and error.file.endswith("step.yaml") and error.line == 7


def test_include_cycles_are_errors(write):
    write("a.yaml", "nodes:\n  b: {type: ./b.yaml}\noutputs: {}\n")
    write("b.yaml", "nodes:\n  a: {type: ./a.yaml}\noutputs: {}\n")
    with pytest.raises(ValidationFailed) as caught:
        load_graph(write("main.yaml", "nodes:\n  a: {type: ./a.yaml}\noutputs: {}\n"))
    (error,) = caught.value.errors
    assert error.code == "include_cycle" and error.file.endswith("b.yaml") and error.line == 2
    assert "a.yaml → b.yaml → a.yaml" in error.message


def test_a_missing_included_file(issues, one):
    error = one(issues("nodes:\n  one: {type: ./nope.yaml}\noutputs: {}\n"), "file_not_found")
    assert (error.path, error.line) == ("nodes.one.type", 2)


def test_a_missing_graph_file(tmp_path):
    with pytest.raises(ValidationFailed) as caught:
        load_graph(tmp_path / "nope.yaml")
    assert caught.value.codes == ["file_not_found"]
