"""Port types, the Node base class, the registry and the builder API."""

from pydantic import Field

from nodegraph.core.context import COMPONENTS, ComponentCache, RunContext
from nodegraph.core.node import InputPort, Node, NodeDefinitionError, NodeType, Ports, node
from nodegraph.core.registry import REGISTRY, Registry
from nodegraph.core.types import PortType

__all__ = ["COMPONENTS", "ComponentCache", "Field", "InputPort", "Node", "NodeDefinitionError", "NodeType",
           "PortType", "Ports", "REGISTRY", "Registry", "RunContext", "node"]
