import pytest

from nodegraph import load_graph
from nodegraph.spec.errors import ValidationFailed
from nodegraph.spec.values import bind_input_values

GRAPH = """
inputs:
  steps: {type: int, default: 3, min: 0, max: 10, description: How many.}
  mode: {type: str, default: fast, choices: [fast, slow]}
  wait: {type: float, default: 0.0}
  sizes: {type: "list[int]", default: [1, 2]}
nodes:
  r: {type: Range, stop: $inputs.steps}
  s: {type: Sleep, seconds: $inputs.wait}
  m: {type: String, value: $inputs.mode}
  n: {type: ListLength, values: $inputs.sizes}
outputs: {r: $r.values, s: $s.value, m: $m.value, n: $n.length}
"""


def test_declarations_are_checked(issues):
    found = issues("""
        inputs:
          a: {type: integer}
          b: {type: str, min: 1}
          c: {type: int, min: 5, max: 1}
          d: {type: int, choices: [1, two]}
          e: {type: int, default: 3, colour: red}
          f: {default: 3}
        nodes: {}
        """)
    assert [(e.code, e.path) for e in found if e.is_error] == [
        ("unknown_type", "inputs.a.type"), ("invalid_field", "inputs.b"), ("invalid_field", "inputs.c.min"),
        ("invalid_field", "inputs.d.choices[1]"), ("unknown_field", "inputs.e.colour"), ("missing_field", "inputs.f.type")]


def test_a_default_is_checked_against_the_declaration_and_every_port_it_feeds(issues, one):
    error = one(issues(GRAPH.replace("default: 3, min", "default: 11, min")), "out_of_range")
    assert (error.path, error.line) == ("inputs.steps.default", 2)
    error = one(issues(GRAPH.replace("default: 0.0", "default: -1.0")), "out_of_range")
    assert "nodes.s.seconds" in error.message and "Sleep@1" in error.message


def test_a_graph_input_that_does_not_fit_its_port_is_a_type_mismatch(issues, one):
    error = one(issues(GRAPH.replace("wait: {type: float", "wait: {type: str").replace("default: 0.0", "default: x")),
                "type_mismatch")
    assert "graph input `wait`" in error.message


def test_values_are_checked_against_type_choices_range_and_consumers(write):
    graph = load_graph(write("g.yaml", GRAPH))
    assert bind_input_values(graph.checked, {"steps": 2}) == {"steps": 2, "mode": "fast", "wait": 0.0,
                                                              "sizes": [1, 2]}
    with pytest.raises(ValidationFailed) as caught:
        bind_input_values(graph.checked, {"steps": 20, "mode": "medium", "wait": -2, "sizes": ["a"], "stpes": 1})
    assert sorted(caught.value.codes) == ["invalid_value", "not_in_choices", "out_of_range", "out_of_range",
                                          "unknown_graph_input"]
    unknown = next(e for e in caught.value.errors if e.code == "unknown_graph_input")
    assert "did you mean `steps`?" in unknown.hint


def test_an_int_value_for_a_float_input_becomes_a_float(write):
    graph = load_graph(write("g.yaml", GRAPH))
    assert type(bind_input_values(graph.checked, {"wait": 1})["wait"]) is float


def test_a_required_input_must_be_given_at_run_time(write):
    graph = load_graph(write("g.yaml", "inputs:\n  n: {type: int}\nnodes:\n  r: {type: Range, stop: $inputs.n}\n"
                                       "outputs: {x: $r.values}\n"))
    with pytest.raises(ValidationFailed) as caught:
        graph.run()
    assert caught.value.codes == ["missing_graph_input"]
    assert graph.run(n=2) == {"x": [0, 1]}


def test_a_comma_splitting_a_flow_mapping_gets_a_quoting_hint(issues, one):
    error = one(issues("inputs:\n  n: {type: int, default: 1, description: One run, one image.}\nnodes: {}\n"),
                "unknown_field")
    assert error.path == "inputs.n.one image." and "quote it" in error.hint
