"""Which values of a checked graph name something outside it: the ones given to ports typed `ModelSource` or
`FilePath` (core/types.py), read from the types alone, never from port or node names.

The node-output cache stats exactly these (exec/cache.py: a file named here may change between runs); included
graphs are followed (an include's port is a location when its graph hands the input to one) and repeat bodies
walked.
"""

from __future__ import annotations

import weakref
from typing import Any

from nodegraph.spec.document import Ref

_INPUTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def location_inputs(checked) -> frozenset[str]:
    """Names of the graph inputs that reach a location port directly or through included graphs."""
    found = _INPUTS.get(checked)
    if found is None:
        names = set()
        for node in walk(checked.nodes):
            for port, value in node.values.items():
                if isinstance(value, Ref) and value.scope == "inputs" and is_location_port(node, port):
                    names.add(value.name)
        found = _INPUTS[checked] = frozenset(names)
    return found


def is_location_port(node, port: str) -> bool:
    """Whether `port` of `node` takes a model source or a file path (an include's: whether its graph passes that
    input to one)."""
    if node.kind == "graph":
        return node.subgraph is not None and port in location_inputs(node.subgraph)
    declared = node.inputs.get(port)
    return declared is not None and getattr(declared, "location", None) is not None


def location_literals(node) -> list[str]:
    """Every string given literally to a location port of `node` or of a node inside its included graph or
    repeat body, with the included graph's defaults of its location inputs."""
    found = [text for port, value in node.values.items()
             if not isinstance(value, Ref) and is_location_port(node, port) for text in strings(value)]
    if node.kind == "graph" and node.subgraph is not None:
        located = location_inputs(node.subgraph)
        found += [text for name, value in node.subgraph.defaults.items() if name in located
                  for text in strings(value)]
        for inner in node.subgraph.nodes.values():
            found += location_literals(inner)
    elif node.kind == "repeat" and node.body is not None:
        for inner in node.body.nodes.values():
            found += location_literals(inner)
    return found


def walk(nodes: dict):
    """The nodes of one graph level, repeat bodies included (not included graphs: they have their own inputs)."""
    for node in nodes.values():
        yield node
        if node.kind == "repeat" and node.body is not None:
            yield from walk(node.body.nodes)


def strings(value: Any):
    """The strings in a value (itself, or inside lists, tuples and dicts)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from strings(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
