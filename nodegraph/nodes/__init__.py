"""Built-in node types. Every module in this package is imported by the registry on first use, so a new
node module only needs to exist here.

Node modules must not import torch (or any model code) at module level: validation and `nodegraph nodes`
load every node module and must work without torch. Import it inside `run`.
"""
