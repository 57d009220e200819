"""nodegraph: a declarative, node-based composer for diffusion pipelines."""

__version__ = "0.1.0"
