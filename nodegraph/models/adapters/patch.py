"""Copy-on-write module trees: a model that differs from a cached one in a few layers, sharing everything else.

`replace_modules(root, {"down_blocks.0.attentions.0.proj_in": new_layer})` returns a new root whose modules on
the path to each replaced layer are shallow copies (their own child table, the same parameters); every other
module and every tensor is the original's. The cached model is never written to, so other runs and graphs in the
process keep seeing it as loaded, and dropping the patched tree frees only what the patch allocated.
"""

from __future__ import annotations

import copy

from torch import nn


def replace_modules(root: nn.Module, replacements: dict[str, nn.Module]) -> nn.Module:
    tree: dict = {}
    for path, module in replacements.items():
        node = tree
        *parents, leaf = path.split(".")
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = module
    return _rebuild(root, tree)


def _rebuild(module: nn.Module, tree: dict) -> nn.Module:
    clone = copy.copy(module)  # shares __dict__ values: parameters, buffers, config
    clone._modules = dict(module._modules)  # …but gets its own table of children
    for name, sub in tree.items():
        clone._modules[name] = sub if isinstance(sub, nn.Module) else _rebuild(module._modules[name], sub)
    return clone


def with_weight(layer: nn.Module, weight) -> nn.Module:
    """A copy of a Linear/Conv2d layer that has its own `weight` (bias and settings shared)."""
    clone = copy.copy(layer)
    clone._parameters = dict(layer._parameters)
    clone._parameters["weight"] = nn.Parameter(weight, requires_grad=False)
    return clone
