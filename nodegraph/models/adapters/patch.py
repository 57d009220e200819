"""Copy-on-write module trees: a model that differs from a cached one in a few layers, sharing everything else.

`replace_modules(root, {"down_blocks.0.attentions.0.proj_in": new_layer})` returns a new root whose modules on
the path to each replaced layer are shallow copies (their own child table, the same parameters); every other
module and every tensor is the original's. The cached model is never written to, so other runs and graphs in the
process keep seeing it as loaded, and dropping the patched tree frees only what the patch allocated.
"""

from __future__ import annotations

import copy
import sys

from torch import nn


def replace_modules(root: nn.Module, replacements: dict[str, nn.Module]) -> nn.Module:
    _install_output_hooks(root)
    tree: dict = {}
    for path, module in replacements.items():
        node = tree
        *parents, leaf = path.split(".")
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = module
    return _rebuild(root, tree)


def _install_output_hooks(root: nn.Module) -> None:
    """transformers (≥ 5) records `hidden_states` with forward hooks it installs on a model's layers the first time
    the model runs, and marks only that model object as hooked. A copy made before that would install them again
    on the layers it shares with the original, once per copy, and every later copy would see each layer's output
    recorded several times (`hidden_states[-2]` becoming the last layer). Installing them on the original first
    makes every copy inherit both the hooks and the mark."""
    if "transformers.modeling_utils" not in sys.modules:  # then no module is a transformers model (our CLIP is not)
        return
    try:
        from transformers import PreTrainedModel
        from transformers.utils.output_capturing import _CAN_RECORD_REGISTRY, maybe_install_capturing_hooks
    except ImportError:  # an older transformers: outputs are returned by the layers, no hooks
        return
    # Outermost first: installing on a model installs for the models inside it too and marks them all — even those
    # already hooked, so a model whose inner model has already run (CLIPTextModelWithProjection, whose forward
    # runs its CLIPTextModel's) is only marked: its recordable layers are all inside that inner model.
    hooked = "_output_capturing_hooks_installed"
    for module in root.modules():
        if not isinstance(module, PreTrainedModel) or not _CAN_RECORD_REGISTRY.get(module) or getattr(module, hooked,
                                                                                                      False):
            continue
        if any(getattr(inner, hooked, False) for inner in module.modules() if isinstance(inner, PreTrainedModel)):
            setattr(module, hooked, True)
        else:
            maybe_install_capturing_hooks(module)


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
