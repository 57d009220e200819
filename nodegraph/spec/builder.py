"""Building graphs in Python. The builder produces the same `GraphSpec` a YAML file parses to, so a built
graph validates, runs and serialises exactly like a loaded one:

    b = GraphBuilder()
    steps = b.input("steps", int, default=3, min=1)
    n = b.node("n", "Range", stop=steps)
    loop = b.repeat("loop", over=n.values, state={"x": 1.0})
    half = loop.node("half", "Multiply", a=loop.state.x, b=0.5)
    loop.next(x=half.value)
    b.output("x", loop.out.x)
    graph = b.build()            # validated Graph; graph.run(steps=5), graph.to_yaml()

In Python a `str` is always a literal; references are the objects returned by the builder.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any, Optional, Union

from nodegraph.core.registry import REGISTRY, Registry
from nodegraph.core.types import port_type_of
from nodegraph.spec.document import NO_DEFAULT, GraphSpec, InputSpec, NodeSpec, Ref, RepeatSpec


class _Refs:
    """`handle.port` / `handle["port"]` -> a reference to that output (or state) of one node."""

    def __init__(self, scope: str, name: str):
        object.__setattr__(self, "_scope", scope)
        object.__setattr__(self, "_name", name)

    def _ref(self, port: str) -> Ref:
        if self._scope == "node":
            return Ref("node", self._name, port)
        return Ref(self._scope, port)

    def __getattr__(self, port: str) -> Ref:
        if port.startswith("_"):
            raise AttributeError(port)
        return self._ref(port)

    def __getitem__(self, port: str) -> Ref:
        return self._ref(port)


class NodeHandle(_Refs):
    """A node added to a builder; its attributes are references to its outputs (`add.value`)."""

    def __init__(self, node_id: str):
        super().__init__("node", node_id)

    @property
    def _node_id(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"<node {self._name}>"


def _value(value: Any) -> Any:
    if isinstance(value, _Refs):
        raise TypeError(f"{value!r} is a node, not a value: pass one of its outputs, e.g. `node.value`")
    return value


def _type_name(t: Any) -> str:
    return t if isinstance(t, str) else str(port_type_of(t)[0])


class _Scope:
    def __init__(self, nodes: dict):
        self._nodes = nodes

    def node(self, node_id: str, node_type: Union[str, type], /, **inputs: Any) -> NodeHandle:
        """Add a node; `node_type` is a registered name (`"Add"`, `"Add@1"`), a node class or an include path."""
        if not isinstance(node_type, str):
            node_type = node_type.node_type.label
        self._add(node_id, NodeSpec(type=node_type, inputs={k: _value(v) for k, v in inputs.items()}))
        return NodeHandle(node_id)

    def repeat(self, node_id: str, /, *, over: Any, state: Optional[dict[str, Any]] = None,
               description: str = "") -> RepeatBuilder:
        """Add a `repeat` node; build its body on the returned RepeatBuilder."""
        spec = RepeatSpec(over=_value(over), state={k: _value(v) for k, v in (state or {}).items()},
                          description=description)
        self._add(node_id, spec)
        return RepeatBuilder(node_id, spec)

    def _add(self, node_id: str, spec: Any) -> None:
        if node_id in self._nodes:
            raise ValueError(f"node id `{node_id}` is already used in this scope")
        self._nodes[node_id] = spec


class RepeatBuilder(_Scope, NodeHandle):
    """The body of a repeat: `.item`, `.index`, `.state.<name>` refs; `.node()`, `.next()`, `.collect()`;
    `.out.<name>` refers to the repeat's outputs (final state or collected list) from outside."""

    def __init__(self, node_id: str, spec: RepeatSpec):
        _Scope.__init__(self, spec.nodes)
        NodeHandle.__init__(self, node_id)
        object.__setattr__(self, "_spec", spec)
        object.__setattr__(self, "item", Ref("loop", "item"))
        object.__setattr__(self, "index", Ref("loop", "index"))
        object.__setattr__(self, "state", _Refs("state", node_id))
        object.__setattr__(self, "out", NodeHandle(node_id))

    def next(self, **values: Any) -> None:
        """Each state value for the next iteration."""
        self._spec.next.update({k: _value(v) for k, v in values.items()})

    def collect(self, **refs: Ref) -> None:
        """Values gathered into one list per name, one element per iteration."""
        self._spec.collect.update({k: _value(v) for k, v in refs.items()})


class GraphBuilder(_Scope):
    def __init__(self, description: str = "", *, base_dir: Optional[Union[str, os.PathLike]] = None,
                 registry: Optional[Registry] = None, name: str = "<builder>"):
        self._spec = GraphSpec(description=description)
        super().__init__(self._spec.nodes)
        self._base_dir = pathlib.Path(base_dir or os.getcwd()).resolve()
        self._registry = registry or REGISTRY
        self._name = name

    def input(self, name: str, type: Any, *, default: Any = NO_DEFAULT, description: str = "",
              choices: Optional[list] = None, min: Optional[float] = None, max: Optional[float] = None) -> Ref:
        """Declare a graph input (`type` as a name like "list[int]" or a Python/port type); returns `$inputs.name`."""
        self._spec.inputs[name] = InputSpec(type=_type_name(type), default=default, description=description,
                                            choices=choices, min=min, max=max)
        return Ref("inputs", name)

    def output(self, name: str, ref: Ref) -> None:
        self._spec.outputs[name] = _value(ref)

    @property
    def spec(self) -> GraphSpec:
        return self._spec

    def build(self):
        """Validate and return a Graph; raise ValidationFailed listing every problem."""
        from nodegraph.spec.checked import Source
        from nodegraph.spec.graph import Graph
        from nodegraph.spec.loader import check_spec

        spec = self._spec.model_copy(deep=True)
        return Graph.from_checked(check_spec(spec, Source(self._name, None, self._base_dir), self._registry),
                                  self._registry)
