import pytest

from nodegraph import GraphBuilder, loads_graph
from nodegraph.spec.errors import ValidationFailed


def euler_builder():
    b = GraphBuilder("Euler for dx/dt = -x.")
    steps = b.input("steps", int, default=3, min=0, description="iterations")
    h = b.input("h", "float", default=0.1)
    note = b.input("note", str, default="$5 literal", choices=["$5 literal", "x"])
    ts = b.node("ts", "Range", stop=steps)
    loop = b.repeat("euler", over=ts.values, state={"x": 1.0})
    hx = loop.node("hx", "Multiply", a=loop.state.x, b=h)
    step = loop.node("step", "Subtract", a=loop.state.x, b=hx.value)
    loop.next(x=step.value)
    loop.collect(xs=step.value, index=loop.index)
    text = b.node("text", "String", value="$literal, not a reference")
    b.output("x", loop.out.x)
    b.output("xs", loop.out["xs"])
    b.output("text", text.value)
    b.output("note", note)
    return b


def test_the_builder_makes_the_same_graph_as_yaml_and_round_trips():
    graph = euler_builder().build()
    text = graph.to_yaml()
    assert "value: $$literal, not a reference" in text and "over: $ts.values" in text
    again = loads_graph(text)
    assert again == graph and again.spec == graph.spec
    assert again.to_yaml() == text


def test_a_built_graph_runs_with_keyword_inputs():
    out = euler_builder().build().run(steps=4, h=0.5)
    assert out["x"] == pytest.approx(0.5 ** 4)
    assert out["text"] == "$literal, not a reference" and out["note"] == "$5 literal"
    assert out["xs"] == pytest.approx([0.5, 0.25, 0.125, 0.0625]) and len(out) == 4


def test_builder_errors_are_validation_errors_with_paths():
    b = GraphBuilder()
    b.node("a", "Add", a=1)
    b.output("x", b.node("r", "Range", stop=1.5).values)
    with pytest.raises(ValidationFailed) as caught:
        b.build()
    assert [(e.code, e.path, e.line) for e in caught.value.errors] == [
        ("missing_input", "nodes.a", None), ("invalid_value", "nodes.r.stop", None)]


def test_passing_a_node_instead_of_one_of_its_outputs_is_refused():
    b = GraphBuilder()
    a = b.node("a", "Int", value=1)
    with pytest.raises(TypeError, match="a.value"):
        b.node("b", "Add", a=a, b=1)


def test_node_ids_are_unique_per_scope():
    b = GraphBuilder()
    b.node("a", "Int", value=1)
    with pytest.raises(ValueError, match="already used"):
        b.node("a", "Int", value=2)


def test_a_node_class_can_name_its_own_type():
    from nodegraph.nodes.basic import Int

    b = GraphBuilder()
    b.output("v", b.node("a", Int, value=7).value)
    graph = b.build()
    assert graph.spec.nodes["a"].type == "Int@1" and graph.run() == {"v": 7}
