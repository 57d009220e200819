"""The result of validation: every node resolved to its type and ports, every value bound and type-checked.

The planner works only from a CheckedGraph without errors, so it can trust every reference in it.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass, field
from typing import Any, Optional

from nodegraph.core.node import InputPort, NodeType
from nodegraph.core.types import PortType
from nodegraph.spec.document import AnyNodeSpec, GraphSpec, Ref
from nodegraph.spec.errors import GraphError, Path
from nodegraph.spec.yaml_io import Marks


@dataclass(eq=False)
class Source:
    """Where a graph came from: display name, line:col marks (None when built in Python), include base.

    `root`: the folder local includes must stay inside; `hub`: the HubFile (repo, commit) of a graph read
    from an hf:// address, whose includes come from the same repo at the same commit.
    """

    file: str
    marks: Optional[Marks] = None
    base_dir: pathlib.Path = field(default_factory=pathlib.Path.cwd)
    path: Optional[pathlib.Path] = None
    root: Optional[pathlib.Path] = None
    hub: Any = None


@dataclass(eq=False)
class CheckedBody:
    """The body of a `repeat` node."""

    nodes: dict[str, CheckedNode] = field(default_factory=dict)
    state_types: dict[str, PortType] = field(default_factory=dict)
    item_type: Optional[PortType] = None
    over: Any = None
    state_init: dict[str, Any] = field(default_factory=dict)
    next: dict[str, Any] = field(default_factory=dict)
    collect: dict[str, Ref] = field(default_factory=dict)
    next_conversions: set[str] = field(default_factory=set)
    outer_refs: set[Ref] = field(default_factory=set)  # refs resolved outside this body, read once per run


@dataclass(eq=False)
class CheckedNode:
    id: str
    spec: AnyNodeSpec
    kind: str  # "node" | "graph" (an included file) | "repeat" | "unknown" (type did not resolve)
    label: str  # what events and messages call it: `Add@1`, `./step.yaml`, `repeat`
    path: Path
    order: int
    node_type: Optional[NodeType] = None
    subgraph: Optional[CheckedGraph] = None
    body: Optional[CheckedBody] = None
    inputs: dict[str, InputPort] = field(default_factory=dict)
    outputs: dict[str, PortType] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)  # given inputs: Ref or checked literal
    conversions: set[str] = field(default_factory=set)  # inputs whose Ref carries an int into a float port
    deps: set[str] = field(default_factory=set)  # ids, in the same scope, whose outputs this node reads


@dataclass(eq=False)
class CheckedGraph:
    spec: GraphSpec
    source: Source
    nodes: dict[str, CheckedNode] = field(default_factory=dict)
    input_types: dict[str, PortType] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)
    output_types: dict[str, PortType] = field(default_factory=dict)
    consumers: dict[str, list] = field(default_factory=dict)  # graph input -> [values.Consumer]
    issues: list[GraphError] = field(default_factory=list)

    @property
    def errors(self) -> list[GraphError]:
        return [i for i in self.issues if i.is_error]

    @property
    def warnings(self) -> list[GraphError]:
        return [i for i in self.issues if not i.is_error]
