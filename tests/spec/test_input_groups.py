"""`group:` on a graph input declaration: where a form shows the input (docs/graphs.md#inputs)."""

from nodegraph import load_graph

GRAPH = """
inputs:
  prompt: {type: str, default: a cat}
  clip_skip: {type: int, default: 0, min: 0, group: advanced, description: Skip CLIP layers.}
nodes:
  s: {type: String, value: $inputs.prompt}
  n: {type: Add, a: $inputs.clip_skip, b: 1}
outputs: {s: $s.value, n: $n.value}
"""


def test_a_group_is_accepted_and_kept_on_the_declaration(write):
    graph = load_graph(write("g.yaml", GRAPH))
    assert graph.inputs["clip_skip"].group == "advanced"
    assert graph.inputs["prompt"].group is None
    assert graph.run(clip_skip=2) == {"s": "a cat", "n": 3}


def test_a_group_survives_writing_the_graph_back_as_yaml(write):
    graph = load_graph(write("g.yaml", GRAPH))
    again = load_graph(write("again.yaml", graph.to_yaml()))
    assert again.inputs["clip_skip"].group == "advanced" and again.inputs["prompt"].group is None


def test_a_group_that_is_not_text_is_an_invalid_field(issues, one):
    error = one(issues(GRAPH.replace("group: advanced", "group: [advanced]")), "invalid_field")
    assert error.path == "inputs.clip_skip.group"


def test_the_hint_for_an_unknown_key_lists_group(issues, one):
    error = one(issues(GRAPH.replace("group: advanced", "grup: advanced")), "unknown_field")
    assert "group" in error.hint
