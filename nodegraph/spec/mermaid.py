"""`nodegraph show`: a graph as Mermaid flowchart text; a repeat body is drawn as a subgraph."""

from __future__ import annotations

from nodegraph.spec.checked import CheckedGraph, CheckedNode
from nodegraph.spec.document import Ref


def _label(text: str) -> str:
    return '"' + text.replace('"', "#quot;") + '"'


class _Drawer:
    def __init__(self):
        self.lines = ["flowchart LR"]

    def source(self, ref: Ref, owner: str) -> str:
        if ref.scope == "node":
            return f"n_{ref.name}"
        if ref.scope == "inputs":
            return f"in_{ref.name}"
        if ref.scope == "loop":  # item and index share one box
            return f"{owner}__loop_item"
        return f"{owner}__state_{ref.name}"  # of the innermost repeat

    def edge(self, ref: Ref, target: str, label: str, owner: str, indent: str) -> None:
        self.lines.append(f"{indent}{self.source(ref, owner)} -->|{label}| {target}")

    def nodes(self, nodes: dict[str, CheckedNode], owner: str, indent: str) -> None:
        for node in nodes.values():
            if node.kind == "repeat":
                self.repeat(node, indent)
                continue
            self.lines.append(f"{indent}n_{node.id}[{_label(f'{node.id}<br/>{node.label}')}]")
            for port, value in node.spec.inputs.items():
                if isinstance(value, Ref):
                    self.edge(value, f"n_{node.id}", port, owner, indent)

    def repeat(self, node: CheckedNode, indent: str) -> None:
        body, rid = node.body, f"n_{node.id}"
        self.lines.append(f"{indent}subgraph {rid} [{_label(f'{node.id}: repeat')}]")
        inner = indent + "  "
        self.lines.append(f"{inner}direction LR")
        self.lines.append(f"{inner}n_{node.id}__loop_item([{_label('loop.item / index')}])")
        for name in body.state_init:
            self.lines.append(f"{inner}n_{node.id}__state_{name}([{_label(f'state.{name}')}])")
        self.nodes(body.nodes, rid, inner)
        self.lines.append(f"{indent}end")
        if isinstance(body.over, Ref):
            self.edge(body.over, f"n_{node.id}__loop_item", "over", "", indent)
        for name, value in body.state_init.items():
            if isinstance(value, Ref):
                self.edge(value, f"n_{node.id}__state_{name}", "initial", "", indent)
        for name, value in body.next.items():
            if isinstance(value, Ref):
                self.lines.append(f"{indent}{self.source(value, rid)} -.->|next| n_{node.id}__state_{name}")


def to_mermaid(graph: CheckedGraph) -> str:
    d = _Drawer()
    for name, ptype in graph.input_types.items():
        d.lines.append(f"  in_{name}([{_label(f'{name}: {ptype}')}])")
    d.nodes(graph.nodes, "", "  ")
    for name, ref in graph.spec.outputs.items():
        d.lines.append(f"  out_{name}[[{_label(name)}]]")
        d.edge(ref, f"out_{name}", "output", "", "  ")
    return "\n".join(d.lines) + "\n"
