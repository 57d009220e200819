"""Inputs that are wrong only together — a step range whose start is not below its end — refused before
anything runs, from the values known then: literals, port defaults, and graph-input values (their defaults
when a graph is validated, the given values when a run binds them). Values computed by other nodes are not
known before running and are not checked here. A node type takes part by defining `Node.check_inputs`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator, Optional

from nodegraph.spec.document import Ref
from nodegraph.spec.errors import Reporter

if TYPE_CHECKING:
    from nodegraph.spec.checked import CheckedGraph, CheckedNode


def check_together(graph: CheckedGraph, r: Reporter, values: Optional[dict[str, Any]] = None) -> None:
    """Report each node whose known inputs its `check_inputs` refuses, at the offending input in the file.
    `values`: the graph-input values of a run (None: the declared defaults)."""
    inputs = graph.defaults if values is None else values
    for node in _nodes(graph.nodes.values()):
        known, via = _known_inputs(node, inputs)
        try:
            problem = node.node_type.cls.check_inputs(known)
        except Exception as exc:  # a plugin's check must not turn validation into a traceback
            r.error("invalid_value", node.path, f"`{node.id}` ({node.label}): checking its inputs together failed: "
                    f"{type(exc).__name__}: {exc}", "check the values given to this node", at_key=True)
            continue
        if problem is None:
            continue
        ports, message, hint = problem
        origins = ", ".join(f"`{port}` is input `{via[port]}`" for port in ports if port in via)
        r.error("out_of_range", node.path + (ports[0],), f"`{node.id}` ({node.label}): {message}"
                f"{f' ({origins})' if origins else ''}", hint)


def _nodes(nodes) -> Iterator[CheckedNode]:
    """Every node with a `check_inputs` of its own, repeat bodies included."""
    from nodegraph.core.node import Node

    for node in nodes:
        if node.body is not None:
            yield from _nodes(node.body.nodes.values())
        elif node.kind == "node" and node.node_type.cls.check_inputs.__func__ is not Node.check_inputs.__func__:
            yield node


def _known_inputs(node: CheckedNode, inputs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """(port → value known before running, port → graph input it came from)."""
    known, via = {}, {}
    for name, port in node.inputs.items():
        value = node.values.get(name, port.default if not port.required else None)
        if isinstance(value, Ref):
            if value.scope != "inputs" or value.name not in inputs:
                continue
            value, via[name] = inputs[value.name], value.name
        if name in node.values or not port.required:
            known[name] = value
    return known, via
