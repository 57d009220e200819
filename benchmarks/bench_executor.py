"""Executor overhead: `.venv/bin/python benchmarks/bench_executor.py`

1. A chain of nodes run by the executor vs. the same `run` functions called in a hand-written loop; the
   difference per node is the executor's overhead (goal: <= 20 µs per node execution).
2. A 1,000-iteration `repeat` over a 5-node no-op body.
"""

from __future__ import annotations

import os
import sys
import time
from types import SimpleNamespace

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from nodegraph import GraphBuilder, RunOptions  # noqa: E402
from nodegraph.core import Node, Ports, Registry, RunContext, node  # noqa: E402
from nodegraph.nodes.basic import Add  # noqa: E402

CHAIN = 500
ITERATIONS, BODY = 1000, 5


@node("Noop", register=False)
class Noop(Node):
    """Passes x through."""

    class Inputs(Ports):
        x: float

    class Outputs(Ports):
        x: float

    def run(self, i, ctx):
        return {"x": i.x}


def best(fn, repeat: int = 7) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def chain_graph():
    b = GraphBuilder()
    ref = 0.0
    for k in range(CHAIN):
        ref = b.node(f"n{k}", "Add", a=ref, b=1.0).value
    b.output("x", ref)
    return b.build()


def hand_written():
    add, ctx, x = Add(), RunContext(), 0.0
    for _ in range(CHAIN):
        x = add.run(SimpleNamespace(a=x, b=1.0), ctx)["value"]
    return x


def repeat_graph():
    registry = Registry(plugins=False)
    registry.add(Noop)
    b = GraphBuilder(registry=registry)
    steps = b.node("ts", "Range", stop=ITERATIONS)
    loop = b.repeat("loop_", over=steps.values, state={"x": 0.0})
    ref = loop.state.x
    for k in range(BODY):
        ref = loop.node(f"b{k}", "Noop", x=ref).x
    loop.next(x=ref)
    b.output("x", loop.out.x)
    return b.build()


def main() -> None:
    graph = chain_graph()
    assert graph.run() == {"x": float(CHAIN)} and hand_written() == float(CHAIN)
    executor = best(graph.run) / CHAIN * 1e6
    baseline = best(hand_written) / CHAIN * 1e6
    listened = best(lambda: graph.run(RunOptions(hooks=[lambda event: None]))) / CHAIN * 1e6
    print(f"chain of {CHAIN} Add nodes")
    print(f"  executor               {executor:6.2f} µs per node")
    print(f"  hand-written loop      {baseline:6.2f} µs per node")
    print(f"  executor overhead      {executor - baseline:6.2f} µs per node (goal <= 20)")
    print(f"  with one no-op hook    {listened:6.2f} µs per node (events built and sent)")

    loop = repeat_graph()
    assert loop.run() == {"x": 0.0}
    total = best(loop.run, repeat=5)
    print(f"repeat: {ITERATIONS} iterations x {BODY}-node no-op body")
    print(f"  total                  {total * 1e3:6.2f} ms")
    print(f"  per body node          {total / (ITERATIONS * BODY) * 1e6:6.2f} µs")
    print(f"  per iteration          {total / ITERATIONS * 1e6:6.2f} µs")


if __name__ == "__main__":
    main()
