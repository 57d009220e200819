"""Planning: from a validated graph to a flat list of steps, once per graph and set of requested outputs.

Only the nodes the requested outputs need are planned, in a deterministic topological order (declaration
order breaks ties). Each value gets a slot; each slot is freed after the last step that reads it, except
results (graph outputs, a body's `next`/`collect`) and values a repeat body reads from outside.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nodegraph.core.node import fast_ports
from nodegraph.exec.repeat import BodyPlan, RepeatStep
from nodegraph.exec.steps import NodeStep, SubgraphStep
from nodegraph.spec.checked import CheckedGraph, CheckedNode
from nodegraph.spec.document import Ref
from nodegraph.spec.errors import GraphError, ValidationFailed


@dataclass(eq=False)
class Plan:
    graph: str
    n_slots: int
    steps: list
    input_slots: dict[str, int]
    output_slots: dict[str, int]
    outputs: tuple[str, ...] = field(default=())
    checked: Any = field(default=None, repr=False)  # the CheckedGraph it was planned from (for caching)

    @property
    def order(self) -> list[str]:
        return [step.node_id for step in self.steps]


class _Slots:
    def __init__(self):
        self.index: dict[Ref, int] = {}

    def __call__(self, ref: Ref) -> int:
        return self.index.setdefault(ref, len(self.index))


def build_plan(checked: CheckedGraph, outputs: tuple[str, ...], prefix: str = "") -> Plan:
    unknown = [name for name in outputs if name not in checked.spec.outputs]
    if unknown:
        raise ValidationFailed([GraphError("unknown_output", f"outputs.{name}", f"the graph has no output `{name}`",
                                           f"its outputs: {', '.join(checked.spec.outputs) or 'none'}",
                                           checked.source.file) for name in unknown], checked.source.file)
    slots = _Slots()
    sinks = [checked.spec.outputs[name] for name in outputs]
    keep = {slots(ref) for ref in sinks}
    steps = _plan_scope(checked.nodes, sinks, slots, keep, prefix)
    input_slots = {name: slots.index[Ref("inputs", name)] for name in checked.spec.inputs
                   if Ref("inputs", name) in slots.index}
    output_slots = {name: slots.index[checked.spec.outputs[name]] for name in outputs}
    return Plan(checked.source.file, len(slots.index), steps, input_slots, output_slots, tuple(outputs), checked)


def _plan_scope(nodes: dict[str, CheckedNode], sinks: list, slots: _Slots, keep: set[int], prefix: str) -> list:
    import networkx as nx

    needed: set[str] = set()
    todo = [ref.name for ref in sinks if isinstance(ref, Ref) and ref.scope == "node" and ref.name in nodes]
    while todo:
        node_id = todo.pop()
        if node_id not in needed:
            needed.add(node_id)
            todo.extend(d for d in nodes[node_id].deps if d in nodes)
    deps = nx.DiGraph()
    deps.add_nodes_from(needed)
    deps.add_edges_from((d, n) for n in needed for d in nodes[n].deps if d in nodes)
    order = list(nx.lexicographical_topological_sort(deps, key=lambda n: nodes[n].order))
    steps = [_make_step(nodes[node_id], slots, prefix) for node_id in order]
    for step, node_id in zip(steps, order):  # store only outputs somebody reads
        node = nodes[node_id]
        if node.kind == "repeat":
            names = [*node.body.state_init, *node.body.collect]
            step.outputs = [(i, slots.index[Ref("node", node_id, n)]) for i, n in enumerate(names)
                            if Ref("node", node_id, n) in slots.index]
        elif node.kind == "graph":
            step.outputs = [(step.plan.output_slots[port], slots.index[Ref("node", node_id, port)])
                            for port in node.outputs if Ref("node", node_id, port) in slots.index]
        else:
            step.outputs = [(port, slots.index[Ref("node", node_id, port)]) for port in node.outputs
                            if Ref("node", node_id, port) in slots.index]
    last_reader: dict[int, int] = {}
    for i, step in enumerate(steps):
        for slot in step.reads:
            last_reader[slot] = i
    for slot, i in last_reader.items():
        if slot not in keep:
            steps[i].free.append(slot)
    return steps


def _make_step(node: CheckedNode, slots: _Slots, prefix: str):
    if node.kind == "repeat":
        return _repeat_step(node, slots, prefix)
    if node.kind == "graph":
        return _subgraph_step(node, slots, prefix)
    info = node.node_type
    literals = {name: port.default for name, port in node.inputs.items() if not port.required}
    refs = []
    for name, value in node.values.items():
        if isinstance(value, Ref):
            refs.append((name, slots(value)))
            literals.pop(name, None)
        else:
            literals[name] = value
    return NodeStep(prefix + node.id, info.label, info.cls().run, fast_ports(info.cls.Inputs), literals, refs,
                    tuple(sorted(node.conversions)))


def _subgraph_step(node: CheckedNode, slots: _Slots, prefix: str) -> SubgraphStep:
    sub = node.subgraph
    plan = build_plan(sub, tuple(sub.spec.outputs), prefix=f"{prefix}{node.id}/")
    literals: list[tuple[int, Any]] = []
    refs: list[tuple[int, int]] = []
    converts = set()
    for name, inner_slot in plan.input_slots.items():
        value = node.values.get(name, sub.defaults.get(name))
        if isinstance(value, Ref):
            refs.append((inner_slot, slots(value)))
            if name in node.conversions:
                converts.add(inner_slot)
        else:
            literals.append((inner_slot, value))
    return SubgraphStep(prefix + node.id, node.label, plan, literals, refs, frozenset(converts))


def _repeat_step(node: CheckedNode, slots: _Slots, prefix: str) -> RepeatStep:
    body = node.body
    inner = _Slots()
    sinks = [v for v in body.next.values() if isinstance(v, Ref)] + list(body.collect.values())
    keep = {inner(ref) for ref in sinks} | {inner(ref) for ref in body.outer_refs}
    plan = BodyPlan()
    plan.state_slots = [inner(Ref("state", name)) for name in body.state_init]
    plan.item_slot, plan.index_slot = inner(Ref("loop", "item")), inner(Ref("loop", "index"))
    plan.steps = _plan_scope(body.nodes, sinks, inner, keep, prefix)
    plan.next = [(inner.index[v], None, name in body.next_conversions) if isinstance(v, Ref) else (None, v, False)
                 for name, v in ((n, body.next[n]) for n in body.state_init)]
    plan.collect = [inner.index[ref] for ref in body.collect.values()]
    plan.outer = [(slots(ref), inner.index[ref]) for ref in sorted(body.outer_refs, key=str)]
    plan.n_slots = len(inner.index)
    over_slot = slots(body.over) if isinstance(body.over, Ref) else None
    state_init = [(slots(v), None) if isinstance(v, Ref) else (None, v) for v in body.state_init.values()]
    return RepeatStep(prefix + node.id, plan, over_slot, body.over, state_init)
