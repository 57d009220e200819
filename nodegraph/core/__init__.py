"""Port types, the Node base class, the registry, the run context and mode (the builder API is spec/builder.py)."""

from pydantic import Field

from nodegraph.core.context import COMPONENTS, ComponentCache, RunContext
from nodegraph.core.mode import RunMode
from nodegraph.core.node import InputPort, Node, NodeDefinitionError, NodeType, Ports, node
from nodegraph.core.registry import REGISTRY, Registry
from nodegraph.core.types import PortType

__all__ = ["COMPONENTS", "ComponentCache", "Field", "InputPort", "Node", "NodeDefinitionError", "NodeType",
           "PortType", "Ports", "REGISTRY", "Registry", "RunContext", "RunMode", "node"]
