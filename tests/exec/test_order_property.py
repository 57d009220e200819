"""Property: on a random DAG, execution order respects every edge and each node runs once."""

from hypothesis import given, settings
from hypothesis import strategies as st

from nodegraph import GraphBuilder
from nodegraph.exec.events import NodeStarted
from nodegraph.spec.document import Ref


@st.composite
def dags(draw):
    n = draw(st.integers(1, 15))
    inputs = []
    for j in range(n):
        pick = st.one_of(st.none(), st.integers(0, j - 1)) if j else st.none()
        inputs.append((draw(pick), draw(pick)))
    order = draw(st.permutations(range(n)))  # declaration order need not be topological
    return inputs, order


@settings(max_examples=60, deadline=None)
@given(dags())
def test_execution_order_respects_every_edge(case):
    inputs, order = case
    b = GraphBuilder()
    for j in order:
        a, c = (Ref("node", f"n{i}", "value") if i is not None else 1.0 for i in inputs[j])
        b.node(f"n{j}", "Add", a=a, b=c)
        b.output(f"o{j}", Ref("node", f"n{j}", "value"))
    started = []
    result = b.build().run(_options(started))
    assert sorted(started) == sorted(f"n{j}" for j in range(len(inputs)))
    position = {node_id: k for k, node_id in enumerate(started)}
    for j, pair in enumerate(inputs):
        for i in pair:
            if i is not None:
                assert position[f"n{i}"] < position[f"n{j}"]
    expected = {}
    for j, pair in enumerate(inputs):  # inputs only read earlier nodes, so index order is topological
        expected[j] = sum(expected[i] if i is not None else 1.0 for i in pair)
        assert result[f"o{j}"] == expected[j]


def _options(started):
    from nodegraph import RunOptions

    return RunOptions(hooks=[lambda e: started.append(e.node_id) if isinstance(e, NodeStarted) else None])
