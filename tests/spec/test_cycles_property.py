"""Property: on a random DAG, one random back-edge is always reported as a cycle naming its nodes."""

import re

import networkx as nx
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from nodegraph import GraphBuilder
from nodegraph.spec.document import Ref
from nodegraph.spec.errors import ValidationFailed


@st.composite
def dags(draw):
    """Node j's inputs `a`, `b` each read an earlier node or are literals."""
    n = draw(st.integers(2, 12))
    inputs = []
    for j in range(n):
        pick = st.one_of(st.none(), st.integers(0, j - 1)) if j else st.none()
        inputs.append((draw(pick), draw(pick)))
    return inputs


def build(inputs):
    b = GraphBuilder()
    for j, pair in enumerate(inputs):
        a, c = (Ref("node", f"n{i}", "value") if i is not None else 1.0 for i in pair)
        b.node(f"n{j}", "Add", a=a, b=c)
    for j in range(len(inputs)):
        b.output(f"o{j}", Ref("node", f"n{j}", "value"))
    return b


def edges(inputs):
    return {(f"n{i}", f"n{j}") for j, pair in enumerate(inputs) for i in pair if i is not None}


@settings(max_examples=60, deadline=None)
@given(dags(), st.data())
def test_a_random_back_edge_is_reported_as_a_cycle_naming_its_nodes(inputs, data):
    dag = nx.DiGraph(edges(inputs))
    candidates = sorted((u, v) for v in dag for u in nx.ancestors(dag, v))
    assume(candidates)
    u, v = data.draw(st.sampled_from(candidates))
    builder = build(inputs)
    builder.spec.nodes[u].inputs["a"] = Ref("node", v, "value")  # v now feeds u: a back-edge
    with pytest.raises(ValidationFailed) as caught:
        builder.build()
    (cycle,) = [e for e in caught.value.errors if e.code == "cycle"]
    ring = re.findall(r"`(n\d+)`", cycle.message)
    assert u in ring and v in ring
    now = {(ref.name, node_id) for node_id, spec in builder.spec.nodes.items()
           for ref in spec.inputs.values() if isinstance(ref, Ref)}
    assert ring[0] == ring[-1] and all((a, b) in now for a, b in zip(ring, ring[1:]))
