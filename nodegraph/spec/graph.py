"""`Graph`: a validated graph, ready to run from Python or to write back as YAML."""

from __future__ import annotations

import os
from typing import Any, Optional

from nodegraph.core.registry import Registry
from nodegraph.core.types import PortType
from nodegraph.spec.checked import CheckedGraph
from nodegraph.spec.document import NO_DEFAULT, AnyNodeSpec, GraphSpec, InputSpec, Ref, RepeatSpec, escape_literal
from nodegraph.spec.errors import GraphError, ValidationFailed
from nodegraph.spec.yaml_io import FlowDict, dump_yaml


_ENGINE: dict[str, Any] = {}  # "plan", "run": installed by the executor (nodegraph/exec/executor.py)


def install_engine(plan, run) -> None:
    """Called once by the layer above (exec/): `plan(checked, outputs)` builds a plan, `run(graph, inputs,
    options=)` runs one. spec/ imports nothing above it, so `Graph.plan`/`Graph.run` reach the executor this way."""
    _ENGINE.update(plan=plan, run=run)


def _engine(name: str):
    try:
        return _ENGINE[name]
    except KeyError:
        raise RuntimeError("no executor installed: `import nodegraph` (or nodegraph.exec.executor) first") from None


class Graph:
    """A validated graph. Build one with `load_graph`, `loads_graph` or `GraphBuilder.build()`.

    `graph.run(steps=3)` runs it with graph inputs as keyword arguments and returns {output name: value};
    `graph.run(RunOptions(device="cpu"), steps=3)` sets run options too.
    """

    def __init__(self, checked: CheckedGraph, registry: Registry):
        self.checked = checked
        self.registry = registry
        self._plans: dict = {}

    @classmethod
    def from_checked(cls, checked: CheckedGraph, registry: Registry) -> Graph:
        if checked.errors:
            raise ValidationFailed(checked.issues, checked.source.file)
        return cls(checked, registry)

    @property
    def spec(self) -> GraphSpec:
        return self.checked.spec

    @property
    def file(self) -> str:
        return self.checked.source.file

    @property
    def description(self) -> str:
        return self.spec.description

    @property
    def warnings(self) -> list[GraphError]:
        return self.checked.warnings

    @property
    def inputs(self) -> dict[str, InputSpec]:
        return self.spec.inputs

    @property
    def input_types(self) -> dict[str, PortType]:
        return self.checked.input_types

    @property
    def output_types(self) -> dict[str, PortType]:
        return self.checked.output_types

    def plan(self, outputs: Optional[tuple[str, ...]] = None):
        """The execution plan for `outputs` (default: all), built once and reused by every run."""
        key = tuple(outputs) if outputs is not None else tuple(self.spec.outputs)
        if key not in self._plans:
            self._plans[key] = _engine("plan")(self.checked, key)
        return self._plans[key]

    def run(self, options=None, /, **inputs: Any) -> dict[str, Any]:
        return _engine("run")(self, inputs, options=options)

    def to_yaml(self) -> str:
        return dump_yaml(spec_to_data(self.spec))

    def save(self, path: str | os.PathLike) -> None:
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.to_yaml())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Graph) and self.spec == other.spec

    __hash__ = None

    def __repr__(self) -> str:
        return f"<Graph {self.file}: {len(self.spec.nodes)} nodes, outputs {list(self.spec.outputs)}>"


def _value(value: Any) -> Any:
    return str(value) if isinstance(value, Ref) else escape_literal(value)


def _node_data(spec: AnyNodeSpec) -> dict:
    if isinstance(spec, RepeatSpec):
        data: dict[str, Any] = {"type": "repeat", "over": _value(spec.over)}
        if spec.description:
            data["description"] = spec.description
        for key in ("state", "nodes", "next", "collect"):
            part = getattr(spec, key)
            if part:
                data[key] = ({k: _node_data(v) for k, v in part.items()} if key == "nodes"
                             else {k: _value(v) for k, v in part.items()})
        return data
    return {"type": spec.type, **{k: _value(v) for k, v in spec.inputs.items()}}


def spec_to_data(spec: GraphSpec) -> dict:
    """The YAML document for `spec` (references as `$node.port`, literal `$` strings escaped as `$$`)."""
    data: dict[str, Any] = {"nodegraph": spec.nodegraph}
    if spec.description:
        data["description"] = spec.description
    if spec.requires:
        data["requires"] = list(spec.requires)
    if spec.inputs:
        data["inputs"] = {}
        for name, decl in spec.inputs.items():
            fields = FlowDict(type=decl.type)
            if decl.default is not NO_DEFAULT:
                fields["default"] = decl.default
            for key in ("description", "choices", "min", "max", "group"):
                if getattr(decl, key) not in (None, ""):
                    fields[key] = getattr(decl, key)
            data["inputs"][name] = fields
    data["nodes"] = {node_id: _node_data(node) for node_id, node in spec.nodes.items()}
    data["outputs"] = {name: _value(ref) for name, ref in spec.outputs.items()}
    return data
