"""What a graph's inputs mean to a reader of the run's record, read from the ports they feed (core/types.py
`Role`), never from the inputs' names: the PNG's A1111 `parameters` text takes its prompt, seed, steps, model…
from here (exec/png_metadata.py).

A graph input has the role of a node port it feeds directly (a node may change a port's role by its literal
inputs: `Node.port_roles`), or of the input of an included graph it feeds. A prompt encoded into conditioning
that reaches a port marked "negative" is the negative prompt: directly, or through nodes that feed nothing else
(SD3's three negative encodings are joined by an SD3Conditioning node before they reach the transformer step).
"""

from __future__ import annotations

import weakref

from nodegraph.spec.document import Ref
from nodegraph.spec.location_ports import walk

_ROLES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def input_roles(checked) -> dict[str, str]:
    """{role: the graph input that has it}; the first input found (in node order) where two share a role."""
    found = _ROLES.get(checked)
    if found is None:
        found = _ROLES[checked] = _input_roles(checked)
    return found


def _input_roles(checked) -> dict[str, str]:
    nodes = list(walk(checked.nodes))
    roles = {node.id: port_roles(node) for node in nodes}
    negative = _negative_nodes(nodes, roles)
    found: dict[str, str] = {}
    for node in nodes:
        for port, value in node.values.items():
            role = roles[node.id].get(port)
            if role is None or not isinstance(value, Ref) or value.scope != "inputs":
                continue
            if role == "prompt" and node.id in negative:
                role = "negative_prompt"
            found.setdefault(role, value.name)
    return found


def port_roles(node) -> dict[str, str]:
    """{input port: role} of one node: declared by its type, or its included graph's inputs' roles."""
    if node.kind == "graph":
        return {name: role for role, name in input_roles(node.subgraph).items()} if node.subgraph is not None else {}
    if node.kind != "node" or node.node_type is None:
        return {}
    declared = {port: info.role for port, info in node.inputs.items() if getattr(info, "role", None)}
    known = {port: value for port, value in node.values.items() if not isinstance(value, Ref)}
    return {**declared, **node.node_type.cls.port_roles(known)}


def _negative_nodes(nodes, roles) -> set[str]:
    """Ids of the nodes whose outputs are negative conditioning: those feeding a port marked "negative", then,
    back along the data flow, every node all of whose consumers are among them. A node that also feeds anything
    else (a positive encoder whose output a zero-out node turns into the negative) is not one."""
    consumers: dict[str, set[str]] = {}
    negative: set[str] = set()
    for node in nodes:
        for port, value in node.values.items():
            if isinstance(value, Ref) and value.scope == "node":
                consumers.setdefault(value.name, set()).add(node.id)
                if roles[node.id].get(port) == "negative":
                    negative.add(value.name)
    grown = True
    while grown:
        more = {name for name, users in consumers.items() if name not in negative and users <= negative}
        negative |= more
        grown = bool(more)
    return negative
