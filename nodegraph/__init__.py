"""nodegraph: a declarative, node-based composer for diffusion pipelines."""

__version__ = "0.1.0"

from nodegraph.core import COMPONENTS, REGISTRY, Field, Node, Ports, Registry, RunContext, RunMode, node
from nodegraph.spec.builder import GraphBuilder
from nodegraph.exec.executor import RunOptions, run_graph
from nodegraph.exec.hooks import CancelToken, ProgressHook, RunCancelledError
from nodegraph.exec.steps import NodeExecutionError
from nodegraph.spec.errors import GraphError, ValidationFailed
from nodegraph.spec.graph import Graph
from nodegraph.spec.loader import load_graph, loads_graph

from nodegraph.hub import graphs as _hub_graphs  # noqa: F401  registers hf:// addresses with spec/, Hub fields of PNG recipes

__all__ = ["COMPONENTS", "CancelToken", "Field", "Graph", "GraphBuilder", "GraphError", "Node",
           "NodeExecutionError", "Ports", "ProgressHook", "REGISTRY", "Registry", "RunCancelledError",
           "RunContext", "RunMode", "RunOptions", "ValidationFailed", "__version__", "load_graph", "loads_graph", "node",
           "run_graph"]
